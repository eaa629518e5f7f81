"""Every error the consumer raises, one tree per layer, in one module.

Callers catch a branch, not a list (as dramatiq's ``errors.py`` lays them out)::

    WhispError                 anything the service itself raises
      StorageError             the object store failed: worth trying again
        PreconditionFailed     a conditional write found the object changed (HTTP 412)
        ObjectTooLarge         an object is bigger than the caller accepts
        InvalidKey             a key that cannot name an object of this store
      SourceError              the event source
        SourceUnavailable      the queue cannot be read now (429, 5xx, network): back off
      LeaseError               the take's lease
        LeaseHeld              someone holds it (another consumer, or this one's other task)
        LeaseLost              it was lost while the work went on: stop the work

    pipeline.errors.TakeError  what is wrong with a take (the pipeline's tree), and the
      BadMarker                consumer's own take errors beside the pipeline's:
      WorkerCrashed            permanent unless ``retryable`` says otherwise

A take error ends in the take's status record; the others decide what happens to the
message (retry, acknowledge) and never describe the take.

A full disk is in neither tree: the OS raises it as an ``OSError`` (PyAV's
``av.error.OSError`` too), here (a chunk's download) or in a worker process (the encode,
the mux), whose exception arrives here as it was raised. ``disk_full`` tells it apart.
"""

from __future__ import annotations

import errno

from pipeline.errors import TakeError

# A write refused for want of room: no space left (ENOSPC), a quota (EDQUOT), a file-size
# limit (EFBIG, RLIMIT_FSIZE). No network error carries these numbers.
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def disk_full(error: BaseException) -> bool:
    """Whether ``error`` is a local write refused for want of room: this machine's passing
    fault, never the take's (a take that does not fit now fits once space is freed)."""
    return isinstance(error, OSError) and error.errno in DISK_FULL


class WhispError(Exception):
    """Base of the consumer's own errors (storage, source, lease)."""


class StorageError(WhispError):
    """The store failed (network, 5xx, throttling): worth trying again."""


class PreconditionFailed(StorageError):
    """A conditional write found the object changed (HTTP 412)."""


class ObjectTooLarge(StorageError):
    """An object is over the size the caller accepts (``get_bytes(max_bytes=...)``)."""

    def __init__(self, key: str, limit: int) -> None:
        super().__init__(f"{key} is over {limit} bytes")
        self.key = key
        self.limit = limit


class InvalidKey(StorageError):
    """A key that cannot name an object here (a local key that leaves the folder)."""


class SourceError(WhispError):
    """The event source failed."""


class SourceUnavailable(SourceError):
    """The queue cannot be read right now (429, 5xx, network): back off and try again."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LeaseError(WhispError):
    """The take's lease."""


class LeaseHeld(LeaseError):
    """Someone holds the take's lease: another consumer, or another task of this one."""

    def __init__(self, owner: str, seconds_left: float) -> None:
        super().__init__(f"lease held by {owner} for {seconds_left:.0f} s more")
        self.owner = owner
        self.seconds_left = seconds_left


class LeaseLost(LeaseError):
    """The lease was lost while the work went on (taken over, or not renewed in time)."""


class BadMarker(TakeError):
    """The marker cannot be read (not JSON, a wrong type, too large): permanent."""

    kind = "bad_marker"


class WorkerCrashed(TakeError):
    """The worker process died while making the take (a codec crash, memory)."""

    kind = "worker_crashed"
