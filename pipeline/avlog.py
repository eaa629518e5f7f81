"""FFmpeg's messages as ``logging`` records, so they join the service's log stream.

FFmpeg prints to file descriptor 2: libav through its default log callback
(``[libx264 @ 0x...] message``) and some wrapped libraries on their own (x264 writes
``x264 [error]: ...`` with ``fprintf``). Raw lines in a JSON stream break it, so
``capture_ffmpeg_messages`` puts a pipe in place of descriptor 2 and a thread turns each
line into a record of the ``libav`` logger; Python's own ``sys.stderr`` moves to a copy
of the real descriptor, so the process's log lines go where they went before.

PyAV could hand libav's messages to ``logging`` itself (``av.logging.set_level``), but its
callback takes the GIL from FFmpeg's codec threads and can deadlock
(https://github.com/PyAV-Org/PyAV/issues/751); FFmpeg's default callback, reading from a
pipe, cannot. Call it once per process, before logging is configured.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading

log = logging.getLogger("libav")

# x264's own prefix names a level; libav's default callback does not (its lines come at
# the threshold set below or above it, so they are warnings).
X264_LINE = re.compile(r"^x264 \[(?P<level>\w+)\]: (?P<text>.*)$")
LIBAV_LINE = re.compile(r"^\[(?P<component>[\w.-]+) @ 0x[0-9a-f]+\] (?P<text>.*)$")
LEVELS = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO}


def classify(line: str) -> tuple[str, int, str]:
    """An FFmpeg line as (logger name, level, text)."""
    found = X264_LINE.match(line)
    if found:
        level = LEVELS.get(found["level"], logging.DEBUG)
        return "libav.x264", level, found["text"]
    found = LIBAV_LINE.match(line)
    if found:
        return f"libav.{found['component']}", logging.WARNING, found["text"]
    return "libav", logging.WARNING, line


def capture_ffmpeg_messages(level: int = logging.WARNING) -> None:
    """FFmpeg's messages at ``level`` and above become records of the ``libav`` logger."""
    import av.logging

    av.logging.restore_default_callback()
    av.logging.set_libav_level(av.logging.INFO if level <= logging.DEBUG else av.logging.WARNING)
    sys.stderr.flush()
    real = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)
    sys.stderr = open(real, "w", buffering=1, errors="replace", closefd=True)  # noqa: SIM115
    threading.Thread(target=_forward, args=(read,), name="ffmpeg-log", daemon=True).start()


def _forward(read: int) -> None:
    with open(read, errors="replace", closefd=True) as lines:
        for raw in lines:
            line = raw.rstrip()
            if line:
                name, level, text = classify(line)
                logging.getLogger(name).log(level, text)
