"""The take's local work folders under WORK_DIR, and the removal of those of attempts that
were interrupted (a consumer killed, a drain that ran out, a lease lost): 4-8 MB each, and
nothing else ever removes them (issue 11, item 7).

A work folder is named ``{owner}-{8 hex}``, and a consumer's owner name is
``{host}-{pid}-{6 hex}``: the name says which process made the folder. A folder is stale,
and removed, when

- its process is gone: made on this host by a pid that is not running;
- its pid was reused: made by this very process's pid, by another owner, before this
  process started (a container restarted is pid 1 again, under the same host name);
- nobody has touched it for ``STALE_AFTER`` seconds (a folder of another host, on a
  shared or kept volume, whose process cannot be asked).

Folders of takes running on this machine (a live pid of this host) are kept, and so is
anything whose name is not a work folder's: whisp removes only what it made.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
import uuid
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

NAME = re.compile(r"^(?P<owner>(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{6})-[0-9a-f]{8}$")
STALE_AFTER = 24 * 3600.0
PROCESS_STARTED = time.time()  # close enough: this module is imported at start-up


def owner_name() -> str:
    """A consumer's owner name (leases, status records, work folders): host, pid, token."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def new_folder(work_dir: Path, owner: str) -> Path:
    """A fresh work folder of ``owner`` (not made yet)."""
    return work_dir / f"{owner}-{uuid.uuid4().hex[:8]}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    except (OverflowError, OSError):
        return False
    return True


def _touched(folder: Path) -> float:
    """The last time anything in the folder (or under it) changed."""
    newest = folder.stat().st_mtime
    for path in folder.rglob("*"):
        try:
            newest = max(newest, path.stat().st_mtime)
        except OSError:
            continue
    return newest


def stale(folder: Path, owner: str, now: float) -> bool:
    """Whether the work folder is an interrupted attempt's (see the module), never this
    consumer's (``owner``) nor a live process's on this host."""
    found = NAME.match(folder.name)
    if found is None or not folder.is_dir() or folder.is_symlink():
        return False
    if found["owner"] == owner:
        return False
    here = found["host"] == socket.gethostname()
    pid = int(found["pid"])
    touched = _touched(folder)
    if here and not _alive(pid):
        return True
    if here and pid == os.getpid() and touched < PROCESS_STARTED:
        return True
    return now - touched > STALE_AFTER


def remove_stale(work_dir: Path, owner: str, now: float | None = None) -> list[str]:
    """Remove the stale work folders under ``work_dir``; the names of those removed. Blocks
    (a tree removal): run it in a thread from the event loop."""
    now = time.time() if now is None else now
    removed: list[str] = []
    try:
        folders = sorted(work_dir.iterdir())
    except OSError:
        return removed  # no work folder yet: nothing to clean
    for folder in folders:
        try:
            if not stale(folder, owner, now):
                continue
            shutil.rmtree(folder)
        except OSError as e:
            log.warning("stale work folder not removed", folder=folder.name, error=str(e))
            continue
        removed.append(folder.name)
    if removed:
        log.info("stale work folders removed", count=len(removed), folders=removed[:20])
    return removed


def remove(folder: Path) -> None:
    """Remove one work folder (an attempt whose lease was lost: its files are no use)."""
    shutil.rmtree(folder, ignore_errors=True)
