"""structlog set-up: JSON lines (or a console view) carrying meeting, take, user and stage.

One stream for everything: structlog's own lines, the standard library's ``logging``
(aiobotocore, aiohttp, faster-whisper) and, in the worker processes, FFmpeg's messages
(``pipeline.avlog`` turns them into ``logging`` records) are rendered by the same
processors. JSON by default off a terminal, a console view on one; in JSON, tracebacks
are structured data (``exception``: a list of frames), never loose lines.

Secrets are removed before anything is rendered: every value that holds one of the
service's secrets is masked, whatever the level.
"""

from __future__ import annotations

import logging
import sys
import urllib.parse
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

from consumer.keys import TakeRef, valid_id

# Libraries that say too much at INFO (a line per HTTP request): they log from WARNING.
NOISY = ("botocore", "aiobotocore", "urllib3", "s3transfer", "aiohttp.access", "watchfiles")
TAKE_FIELDS = ("meeting_id", "take", "user_id")

# Fields every line of this process carries (a worker process: the take it works on).
# A plain dict, not a context variable: FFmpeg's lines arrive on another thread.
_process_fields: dict[str, Any] = {}
# The last ``configure`` call's arguments, for the worker processes to do the same.
_config: dict[str, Any] = {"level": "INFO", "fmt": "json", "secrets": []}


MASK = "***"


class RedactSecrets:
    """A processor that masks the given secret values wherever they appear, as given or
    URL-encoded (a query string, a form body an error may echo). The same masking serves
    every other output (``mask``): doctor's lines, the CLI's errors, status records."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms = set()
        for secret in secrets:
            if len(secret) >= 4:
                forms |= {
                    secret,
                    urllib.parse.quote(secret, safe=""),
                    urllib.parse.quote_plus(secret),
                }
        # Longest first: a secret that holds another is masked whole.
        self.secrets = sorted(forms, key=len, reverse=True)

    def clean(self, value: Any) -> Any:
        """``value`` (text, or dicts, lists and tuples of it, keys too) with secrets masked."""
        if isinstance(value, str):
            for secret in self.secrets:
                value = value.replace(secret, MASK)
            return value
        if isinstance(value, dict):
            return {self.clean(k): self.clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.clean(v) for v in value]
        return value

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if not self.secrets:
            return event
        return {k: self.clean(v) for k, v in event.items()}


def mask(value: Any, secrets: Iterable[str] | None = None) -> Any:
    """``value`` with every secret masked: those given, else those ``configure`` was given
    (the service's). For what does not go through the log: printed lines, status records."""
    return RedactSecrets(_config["secrets"] if secrets is None else secrets).clean(value)


def merge_process_fields(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in _process_fields.items():
        event.setdefault(key, value)
    return event


def bind_process(**fields: Any) -> None:
    """Fields for every line this process writes from now on, whatever the thread."""
    _process_fields.update(fields)


def process_field(name: str) -> Any:
    return _process_fields.get(name)


def clear_process() -> None:
    _process_fields.clear()


def take_fields(ref: TakeRef) -> dict[str, str]:
    """The fields that name a take on a log line."""
    return {"meeting_id": ref.meeting_id, "take": ref.take, "user_id": ref.user_id}


def key_fields(key: str, recordings: str) -> dict[str, str]:
    """As much of a take's fields as a key outside the layout still holds (valid ids only)."""
    head = recordings.strip("/") + "/"
    if not key.startswith(head):
        return {}
    parts = key[len(head) :].split("/")[: len(TAKE_FIELDS)]
    found: dict[str, str] = {}
    for name, part in zip(TAKE_FIELDS, parts, strict=False):
        if not valid_id(part):
            break
        found[name] = part
    return found


def resolve_format(fmt: str | None) -> str:
    """LOG_FORMAT, or when unset: a console view on a terminal, JSON lines otherwise."""
    if fmt:
        return fmt
    return "console" if sys.stderr.isatty() else "json"


def worker_config() -> dict[str, Any]:
    """What a worker process passes to ``configure`` to log as this process does."""
    return dict(_config)


def configure(level: str = "INFO", fmt: str | None = None, secrets: Iterable[str] = ()) -> None:
    fmt = resolve_format(fmt)
    secrets = list(secrets)
    _config.update(level=level, fmt=fmt, secrets=secrets)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        merge_process_fields,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    rendering: list[Any]
    if fmt == "json":
        rendering = [
            structlog.processors.ExceptionRenderer(
                # Locals stay out: they are large and may hold what a line must not show.
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            RedactSecrets(secrets),
            structlog.processors.JSONRenderer(),
        ]
    else:
        rendering = [
            RedactSecrets(secrets),
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
        ]
    structlog.configure(
        processors=[*shared, *rendering],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in NOISY:
        logging.getLogger(name).setLevel(max(logging.WARNING, getattr(logging, level)))
    logging.captureWarnings(True)
