"""Logs: one stream for structlog, the standard library and FFmpeg, JSON off a terminal.

Each test configures logging in a fresh interpreter (configuration is process-wide) and
reads what it wrote to its stderr.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from consumer.keys import TakeRef
from consumer.logs import key_fields, take_fields
from pipeline.avlog import classify


def run(code: str, **env: str) -> list[dict[str, Any]]:
    """Run ``code`` with logs configured as JSON; every stderr line must be JSON."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stderr.splitlines()]


def test_stdlib_logging_joins_the_json_stream_with_the_take() -> None:
    lines = run(
        """
        import logging, structlog
        from consumer import logs
        logs.configure("INFO", "json", ["s3cr3t-value"])
        structlog.contextvars.bind_contextvars(meeting_id="m", take="1", user_id="u", stage="x")
        logging.getLogger("faster_whisper").info("from stdlib with s3cr3t-value")
        logging.getLogger("botocore").info("too chatty: not shown")
        logging.getLogger("botocore").warning("shown")
        structlog.get_logger().debug("below the level: not shown")
        """
    )
    assert [line["event"] for line in lines] == ["from stdlib with ***", "shown"]
    assert lines[0]["logger"] == "faster_whisper" and lines[0]["level"] == "info"
    assert {k: lines[0][k] for k in ("meeting_id", "take", "user_id", "stage")} == {
        "meeting_id": "m",
        "take": "1",
        "user_id": "u",
        "stage": "x",
    }


def test_tracebacks_are_structured_data_in_json() -> None:
    lines = run(
        """
        import logging, structlog
        from consumer import logs
        logs.configure("INFO", "json")
        for logger in (structlog.get_logger(), logging.getLogger("lib")):
            try:
                {}["missing"]
            except KeyError:
                logger.exception("it broke")
        """
    )
    assert len(lines) == 2
    for line in lines:
        (error,) = line["exception"]
        assert error["exc_type"] == "KeyError" and error["frames"][-1]["lineno"] == 7


def test_ffmpeg_messages_become_log_lines_of_the_take() -> None:
    """x264 prints its own errors on descriptor 2; they arrive as JSON, with the take."""
    lines = run(
        """
        import time
        from consumer import logs
        from pipeline.avlog import capture_ffmpeg_messages
        from pipeline.checks import EncoderUnavailable, check_encoder
        capture_ffmpeg_messages()
        logs.configure("INFO", "json")
        logs.bind_process(meeting_id="m", take="1", user_id="u", stage="encode")
        try:
            check_encoder("nosuch")
        except EncoderUnavailable:
            pass
        time.sleep(0.5)  # the forwarding thread
        """
    )
    x264 = [line for line in lines if line.get("logger") == "libav.x264"]
    assert x264 and x264[0]["event"] == "invalid preset 'nosuch'"
    assert x264[0]["level"] == "error" and x264[0]["meeting_id"] == "m"
    assert x264[0]["stage"] == "encode"


def test_a_terminal_gets_the_console_view_by_default() -> None:
    main, secondary = pty.openpty()
    code = "from consumer import logs; import structlog\n"
    code += "logs.configure('INFO', None); structlog.get_logger().info('hello', n=1)"
    env = {k: v for k, v in os.environ.items() if k != "LOG_FORMAT"}
    proc = subprocess.run(
        [sys.executable, "-c", code], stderr=secondary, env=env, timeout=60, check=True
    )
    os.close(secondary)
    shown = os.read(main, 4096).decode(errors="replace")
    os.close(main)
    assert proc.returncode == 0
    assert "hello" in shown and not shown.lstrip().startswith("{")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("x264 [error]: invalid preset 'x'", ("libav.x264", 40, "invalid preset 'x'")),
        ("x264 [info]: profile High", ("libav.x264", 20, "profile High")),
        ("[vp8 @ 0x55d0c0] Discarding interframe", ("libav.vp8", 20, "Discarding interframe")),
        ("[W:onnxruntime:, x] a warning", ("stderr", 30, "[W:onnxruntime:, x] a warning")),
    ],
)
def test_ffmpeg_lines_are_named_and_levelled(line: str, expected: tuple[str, int, str]) -> None:
    assert classify(line) == expected


def test_ignored_keys_carry_the_ids_they_hold() -> None:
    assert key_fields("recordings/m1/1/u/v/done.json", "recordings") == {
        "meeting_id": "m1",
        "take": "1",
        "user_id": "u",
    }
    assert key_fields("recordings/m1/../done.json", "recordings") == {"meeting_id": "m1"}
    assert key_fields("elsewhere/m/1/u/done.json", "recordings") == {}
    assert take_fields(TakeRef("m", "2", "u")) == {"meeting_id": "m", "take": "2", "user_id": "u"}
