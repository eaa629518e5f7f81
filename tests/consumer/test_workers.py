"""A worker process ends with the service that started it."""

from __future__ import annotations

import subprocess
import sys
import time


def test_a_worker_whose_service_is_gone_exits_at_once() -> None:
    """The service's pid comes from the service: a worker that starts after the service
    was killed (SIGKILL while it was still importing) exits instead of waiting on init."""
    code = (
        "import time\n"
        "from consumer.workers import init_worker\n"
        "init_worker(2**22 + 1, {'level': 'INFO', 'fmt': 'json', 'secrets': []})\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == 1 and time.monotonic() - started < 20
