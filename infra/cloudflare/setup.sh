#!/usr/bin/env bash
# Cloudflare set-up for whisp, with wrangler: the queue R2 notifies, its dead-letter
# queue, the HTTP pull consumer whisp reads it with, and the bucket's notification rules
# for markers and first chunks. Run it once per bucket (wrangler login, or
# CLOUDFLARE_API_TOKEN set).
#
#   BUCKET=recordings-bucket infra/cloudflare/setup.sh
#   DRY_RUN=1 BUCKET=recordings-bucket infra/cloudflare/setup.sh    # print, run nothing
#
# Everything else has a default; set any of these to change it:
#   QUEUE=whisp-events DEAD_LETTER=whisp-dead PREFIX=recordings/ MARKER=done.json
#   FIRST_CHUNKS="_0.webm _1.webm _0.mkv _1.mkv"   (empty: takes are not followed by events)
#   BATCH_SIZE=10 MESSAGE_RETRIES=5 VISIBILITY_TIMEOUT_SECS=900 RETRY_DELAY_SECS=30
#   WRANGLER="npx --yes wrangler"   (default: wrangler on the PATH)
# The visibility timeout must cover the longest take (a pull consumer cannot extend it):
# keep CF_VISIBILITY_TIMEOUT_MS in whisp's settings equal to it, in milliseconds.
set -euo pipefail

BUCKET="${BUCKET:?set BUCKET to the R2 bucket the recordings go to}"
QUEUE="${QUEUE:-whisp-events}"
DEAD_LETTER="${DEAD_LETTER:-whisp-dead}"
PREFIX="${PREFIX:-recordings/}"
MARKER="${MARKER:-done.json}"
FIRST_CHUNKS="${FIRST_CHUNKS-_0.webm _1.webm _0.mkv _1.mkv}"
BATCH_SIZE="${BATCH_SIZE:-10}"
MESSAGE_RETRIES="${MESSAGE_RETRIES:-5}"
VISIBILITY_TIMEOUT_SECS="${VISIBILITY_TIMEOUT_SECS:-900}"
RETRY_DELAY_SECS="${RETRY_DELAY_SECS:-30}"
read -r -a WRANGLER_CMD <<< "${WRANGLER:-wrangler}"

permissions() {
    cat <<TEXT
API tokens (Cloudflare dashboard, My Profile > API Tokens, and R2 > Manage API tokens):
  whisp's CF_API_TOKEN: an account token with Queues Read and Queues Write
      (pulling a message changes it, so read alone is not enough).
  whisp's S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY: an R2 token with Object Read and
      Write on ${BUCKET} (it reads chunks, writes outputs, status and lease objects).
  This script (wrangler): Queues Read and Write, R2 Read and Write (Workers R2 Storage
      Edit) on the account.
TEXT
}

run() {
    echo "+ wrangler $*"
    if [[ "${DRY_RUN:-0}" != 1 ]]; then
        "${WRANGLER_CMD[@]}" "$@"
    fi
}

exists() {
    [[ "${DRY_RUN:-0}" != 1 ]] && "${WRANGLER_CMD[@]}" queues info "$1" > /dev/null 2>&1
}

permissions
echo

for name in "$DEAD_LETTER" "$QUEUE"; do
    if exists "$name"; then
        echo "queue ${name} exists"
    else
        run queues create "$name"
    fi
done

# whisp pulls over HTTP: a queue has one consumer, so remove a Worker consumer first.
run queues consumer http add "$QUEUE" \
    --batch-size "$BATCH_SIZE" \
    --message-retries "$MESSAGE_RETRIES" \
    --dead-letter-queue "$DEAD_LETTER" \
    --visibility-timeout-secs "$VISIBILITY_TIMEOUT_SECS" \
    --retry-delay-secs "$RETRY_DELAY_SECS"

# Markers are the events that end a take; the sweep covers a lost one.
run r2 bucket notification create "$BUCKET" \
    --event-types object-create \
    --queue "$QUEUE" \
    --prefix "$PREFIX" \
    --suffix "$MARKER"

# A take's first chunks start a follower (FOLLOW_TAKES): one message or two per take, not
# one per chunk. R2 refuses overlapping rules: disjoint suffixes, one rule each.
for suffix in $FIRST_CHUNKS; do
    run r2 bucket notification create "$BUCKET" \
        --event-types object-create \
        --queue "$QUEUE" \
        --prefix "$PREFIX" \
        --suffix "$suffix"
done

echo
run queues info "$QUEUE"
cat <<TEXT

Now set in whisp's settings (infra/whisp.env.example):
  SOURCE=cloudflare  S3_BUCKET_NAME=${BUCKET}  CF_QUEUE_ID=<the queue's id above, 32 hex>
  CF_VISIBILITY_TIMEOUT_MS=$((VISIBILITY_TIMEOUT_SECS * 1000))  CF_BATCH_SIZE=${BATCH_SIZE}
  ACCOUNT_ID, CF_API_TOKEN, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY
then check it all with: whisp doctor
TEXT
