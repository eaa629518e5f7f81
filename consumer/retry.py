"""One retry policy: every delay the consumer waits is computed here, from named constants.

One function, ``compute_backoff``, grows a delay with the number of attempts (as
dramatiq's ``common.compute_backoff``), caps it and takes a random part of it away
(jitter), so that many consumers that failed together do not all come back together.
The named helpers below say which delay each caller wants; none does arithmetic of its own.
"""

from __future__ import annotations

import random

# An empty queue is polled again after IDLE_POLL_BASE s, doubling up to POLL_INTERVAL_SECONDS.
IDLE_POLL_BASE = 0.05
# An unreachable queue (429 without Retry-After, 5xx, network): 1 s doubling up to a minute.
SOURCE_ERROR_BASE = 1.0
SOURCE_ERROR_MAX = 60.0
# A take that failed for a passing reason: RETRY_DELAY_SECONDS doubling per delivery attempt,
# at most an hour; an unexpected error (a bug, most likely) waits this many times longer.
TAKE_RETRY_MAX = 3600.0
UNEXPECTED_ERROR_FACTOR = 3.0
# A take whose lease another consumer holds: until that lease may be free, within bounds.
LEASE_WAIT_MIN = 5.0
LEASE_WAIT_MAX = 300.0
# Chunks still arriving: look again after a quarter of the time left, at least this often;
# the last look comes just after the deadline, and no look sooner than a queue can delay.
CHUNK_WAIT_MIN = 5.0
SHORTEST_DELAY = 1.0
# A queue that refuses us (403 token, 404 queue): nothing works until it is fixed.
SOURCE_REFUSED_WAIT = 30.0
# The completion webhook: 1 s doubling between attempts; a receiver's Retry-After (429)
# is waited for, but never longer than this.
WEBHOOK_BASE = 1.0
WEBHOOK_RETRY_AFTER_MAX = 60.0
# The part of a delay that is random: a 10 s delay becomes 8 to 10 s.
JITTER = 0.2


def compute_backoff(
    attempts: int,
    *,
    base: float,
    factor: float = 2.0,
    jitter: float = JITTER,
    max_backoff: float,
) -> float:
    """The delay before attempt ``attempts + 1``: ``base`` times ``factor`` for each attempt
    after the first, at most ``max_backoff``, less up to ``jitter`` (a fraction) of itself."""
    exponent = min(max(0, attempts - 1), 64)
    delay = min(max_backoff, base * factor**exponent)
    return float(delay * (1.0 - jitter * random.random()))


def jittered(seconds: float, jitter: float = JITTER) -> float:
    """A fixed interval (the sweep's) with up to ``jitter`` of it taken away at random."""
    return compute_backoff(1, base=seconds, jitter=jitter, max_backoff=seconds)


def first_sweep_delay(interval: float) -> float:
    """Before a consumer's first sweep: up to ``JITTER`` of the interval, at random, so that
    consumers started together (a deploy) do not all list the bucket at once."""
    return interval - jittered(interval)


def idle_poll_delay(empty_polls: int, max_delay: float) -> float:
    """After ``empty_polls`` empty answers in a row: the wait before polling again."""
    return compute_backoff(empty_polls, base=IDLE_POLL_BASE, max_backoff=max_delay)


def source_error_delay(failures: int) -> float:
    """After ``failures`` failed calls in a row to the queue: the wait before the next one."""
    return compute_backoff(failures, base=SOURCE_ERROR_BASE, max_backoff=SOURCE_ERROR_MAX)


def take_retry_delay(attempts: int, base: float, *, unexpected: bool = False) -> float:
    """A take that failed for a passing reason on its ``attempts``-th delivery."""
    if unexpected:
        base *= UNEXPECTED_ERROR_FACTOR
    return compute_backoff(attempts, base=base, max_backoff=TAKE_RETRY_MAX)


def lease_wait_delay(seconds_left: float) -> float:
    """A take whose lease is held elsewhere for ``seconds_left`` more: when to look again."""
    wait = min(max(seconds_left, LEASE_WAIT_MIN), LEASE_WAIT_MAX) / (1.0 - JITTER)
    return compute_backoff(1, base=wait, max_backoff=wait)  # never before the lease ends


def chunk_wait_delay(seconds_left: float) -> float:
    """A take still missing chunks, ``seconds_left`` before it gives up: when to look again
    (jitter only shortens a wait, so the last one overshoots the deadline by a second)."""
    last = seconds_left + SHORTEST_DELAY / (1.0 - JITTER)
    wait = max(SHORTEST_DELAY / (1.0 - JITTER), min(last, max(CHUNK_WAIT_MIN, seconds_left / 4)))
    return compute_backoff(1, base=wait, max_backoff=wait)


def webhook_delay(
    attempt: int, base: float = WEBHOOK_BASE, retry_after: float | None = None
) -> float:
    """Between the ``attempt``-th failed POST of the completion notice and the next: the
    backoff, or the receiver's ``Retry-After`` where it asks for longer (within reason)."""
    delay = compute_backoff(attempt, base=base, max_backoff=base * 2**8)
    if retry_after is not None:
        delay = max(delay, min(retry_after, WEBHOOK_RETRY_AFTER_MAX))
    return delay
