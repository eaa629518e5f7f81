"""Prometheus metrics, served on ``METRICS_PORT`` beside the health endpoints
(``consumer.health``). Only the service's main process counts: the worker processes'
timings come back with each take's result.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram, Info

from consumer import __version__

LONG = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600, float("inf"))

TAKES = Counter("whisp_takes", "Takes that reached a final outcome (done, failed)", ["outcome"])
RETRIES = Counter(
    "whisp_take_retries",
    "Take runs to be tried again: chunks still arriving, a lease held elsewhere, a passing "
    "error, the set-up at fault",
)
SKIPS = Counter(
    "whisp_take_skips", "Take runs with nothing to do (done already with the same input)"
)
TAKE_SECONDS = Histogram(
    "whisp_take_seconds",
    "Time from a take's job starting to its outcome",
    ["outcome"],
    buckets=LONG,
)
STAGE_SECONDS = Histogram(
    "whisp_stage_seconds",
    "Time in each stage of a take: checking, downloading, processing (encode, transcribe, "
    "mux inside it), uploading",
    ["stage"],
    buckets=(0.1, 0.5, *LONG),
)
RTF = Histogram(
    "whisp_transcription_rtf",
    "Transcription real-time factor: seconds spent per second of audio",
    buckets=(0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5, float("inf")),
)
MESSAGES = Counter("whisp_messages", "Queue messages settled, by how", ["settled"])
SETTLE_FAILURES = Counter(
    "whisp_settle_failures",
    "Messages the queue did not acknowledge or retry when asked (each one logged with the "
    "queue's reason); they come back when their visibility runs out",
    ["source"],
)
RUNNING = Gauge("whisp_takes_running", "Takes being processed now")
FOLLOWING = Gauge(
    "whisp_takes_following", "Takes followed while they are recorded (each holds a worker)"
)
PULLS = Counter("whisp_pulls", "Pulls that the event source answered")
SOURCE_ERRORS = Counter(
    "whisp_source_errors", "Pulls that failed (unreachable, throttled, refused)"
)
LAST_PULL = Gauge("whisp_last_pull_timestamp_seconds", "When a pull last succeeded (Unix time)")
BACKLOG = Gauge(
    "whisp_queue_backlog", "Messages in the queue, as its API last reported", ["source"]
)
BUILD = Info("whisp_build", "The running version")
BUILD.info({"version": __version__, "python": platform.python_version()})

# The worker's own stages, timed in the worker and sent back with the result.
PIPELINE_STAGES = ("encode", "transcribe", "mux")


def record_take(state: str, seconds: float) -> None:
    """A take run's outcome: final ones, retries and skips are counted apart."""
    if state in ("done", "failed"):
        TAKES.labels(state).inc()
    elif state == "skipped":
        SKIPS.inc()
    else:
        RETRIES.inc()
    TAKE_SECONDS.labels(state).observe(seconds)


def record_pipeline(timings: Mapping[str, float], duration: float) -> None:
    """The worker's stage times for one take, and transcription's real-time factor."""
    for stage in PIPELINE_STAGES:
        if stage in timings:
            STAGE_SECONDS.labels(stage).observe(timings[stage])
    # "heard": transcription's own time, most of it beside the encoding ("transcribe" is
    # what was left of it when the encoding ended).
    heard = timings.get("heard", timings.get("transcribe"))
    if heard is not None and duration > 0:
        RTF.observe(heard / duration)


def record_pull(ok: bool, source: str, backlog: int | None = None) -> None:
    """A pull's outcome; the backlog only where the source's API reports one."""
    if not ok:
        SOURCE_ERRORS.inc()
        return
    PULLS.inc()
    LAST_PULL.set(time.time())
    if backlog is not None:
        BACKLOG.labels(source).set(backlog)


class StageClock:
    """Times a take's job stages as its status moves from one to the next."""

    def __init__(self) -> None:
        self.stage: str | None = None
        self.since = time.monotonic()

    def enter(self, stage: str) -> bool:
        """Note the stage the take's status names; True when a new stage starts. The
        worker's progress (``processing: encode``) is part of ``processing``."""
        if stage == self.stage or stage.startswith("processing:"):
            return False
        now = time.monotonic()
        if self.stage is not None:
            STAGE_SECONDS.labels(self.stage).observe(now - self.since)
        self.stage, self.since = stage, now
        return True
