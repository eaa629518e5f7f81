"""What a message says happened, in this consumer's terms: which takes ended (their
markers were written) and which were being recorded (their chunks were), in this bucket's
layout. Everything else is ignored: events of another bucket and keys outside the layout
are logged (a misrouted notification, a hostile key), never turned into a take.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from consumer import logs
from consumer.keys import KeyLayout, TakeRef
from consumer.sources import Message

log = structlog.get_logger(__name__)


@dataclass
class Heard:
    ended: list[TakeRef] = field(default_factory=list)  # markers written
    recording: list[TakeRef] = field(default_factory=list)  # chunks written


def heard(message: Message, keys: KeyLayout, bucket: str | None) -> Heard:
    """The takes the message's events are about (each once, in order)."""
    found = Heard()
    for event in message.events:
        if event.bucket is not None and bucket is not None and event.bucket != bucket:
            log.warning("event of another bucket ignored", bucket=event.bucket[:100])
            continue
        if keys.split(event.key) is None:
            if event.key.startswith(keys.root):
                log.warning(
                    "key outside the layout ignored",
                    key=event.key[:300],
                    **logs.key_fields(event.key, keys.recordings),
                )
            continue
        if not event.created:
            continue
        if (ref := keys.marker_take(event.key)) is not None and ref not in found.ended:
            found.ended.append(ref)
        elif (ref := keys.chunk_take(event.key)) is not None and ref not in found.recording:
            found.recording.append(ref)
    return found
