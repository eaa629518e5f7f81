"""FFmpeg's messages as ``logging`` records, so they join the service's log stream.

FFmpeg prints to file descriptor 2: libav through its default log callback
(``[libx264 @ 0x...] message``) and some wrapped libraries on their own (x264 writes
``x264 [error]: ...`` with ``fprintf``). Raw lines in a JSON stream break it, so
``capture_ffmpeg_messages`` puts a pipe in place of descriptor 2 and a thread turns each
line into a record of the ``libav`` logger (anything else written there, say by
onnxruntime, of the ``stderr`` logger); Python's own ``sys.stderr`` moves to a copy of the
real descriptor, so the process's log lines go where they went before.

Levels: x264 names its own. libav's lines do not, and its "errors" are often what whisp
does on purpose (reading a chunk that is a piece of a stream: "File ended prematurely"),
so they are details at INFO: when media really is broken, the take's own error says so.

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
        return f"libav.{found['component']}", logging.INFO, found["text"]
    return "stderr", logging.WARNING, line


def capture_ffmpeg_messages(level: int = logging.WARNING) -> None:
    """FFmpeg's messages become log records: libav's errors, its warnings too when
    ``level`` is DEBUG."""
    import av.logging

    av.logging.restore_default_callback()
    av.logging.set_libav_level(av.logging.WARNING if level <= logging.DEBUG else av.logging.ERROR)
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
