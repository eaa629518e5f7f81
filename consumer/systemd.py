"""systemd's notification protocol (sd_notify(3)), in the few lines it takes.

Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``: a Unix datagram socket, a path or,
when it starts with ``@``, a name in the abstract namespace. Each datagram holds
newline-separated assignments: ``READY=1`` (start-up is over), ``STATUS=...`` (a line for
``systemctl status``), ``WATCHDOG=1`` (alive; due every ``$WATCHDOG_USEC`` microseconds,
and for the process ``$WATCHDOG_PID`` names, when set), ``STOPPING=1``. Outside systemd
there is no socket and every call does nothing.
"""

from __future__ import annotations

import os
import socket


def notify(*assignments: str) -> bool:
    """Send ``KEY=VALUE`` assignments in one datagram; False when nobody listens.

    Never blocks (it is called from the event loop): a full socket drops the message,
    as ``sd_notify`` would report and systemd's own clients ignore.
    """
    address = os.environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        return False  # unset, or a vsock address, which this does not speak
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.setblocking(False)
        try:
            sock.sendto("\n".join(assignments).encode(), address)
        except OSError:
            return False
    return True


def watchdog_interval() -> float | None:
    """How often to send ``WATCHDOG=1`` (half of ``WatchdogSec``), or None when off."""
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2_000_000 if usec > 0 else None
