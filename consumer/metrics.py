"""Prometheus metrics, served on ``METRICS_PORT`` when it is set (``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

TAKES = Counter("whisp_takes", "Takes handled, by outcome", ["state"])
MESSAGES = Counter("whisp_messages", "Queue messages settled, by how", ["settled"])
RUNNING = Gauge("whisp_takes_running", "Takes being processed now")
TAKE_SECONDS = Histogram(
    "whisp_take_seconds",
    "Time from a take's job starting to its outcome",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600, float("inf")),
)


def serve(port: int | None) -> None:
    """Start the metrics endpoint (a daemon thread) when a port is configured."""
    if port:
        start_http_server(port, addr="0.0.0.0")  # noqa: S104 - scraped from outside
