"""The one retry policy: delays grow with attempts, stop at their cap, and vary a little."""

from __future__ import annotations

import pytest

from consumer import retry
from consumer.retry import compute_backoff


def test_backoff_doubles_per_attempt_up_to_its_cap() -> None:
    delays = [compute_backoff(n, base=1.0, jitter=0.0, max_backoff=10.0) for n in range(1, 7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert compute_backoff(10_000, base=1.0, jitter=0.0, max_backoff=60.0) == 60.0


def test_jitter_takes_at_most_its_fraction_away() -> None:
    delays = {compute_backoff(3, base=1.0, jitter=0.5, max_backoff=100.0) for _ in range(200)}
    assert all(2.0 <= d <= 4.0 for d in delays)
    assert len(delays) > 100  # consumers that failed together do not come back together


@pytest.mark.parametrize(
    ("left", "low", "high"),
    [(0.1, 1.0, 1.6), (1.0, 1.0, 2.3), (3.0, 3.0, 5.0), (12.0, 4.0, 5.0), (600, 120, 150)],
)
def test_chunk_wait_looks_again_in_time_and_last_just_past_the_deadline(
    left: float, low: float, high: float
) -> None:
    """Never sooner than a queue can delay (a second), a quarter of what is left while
    much is, and, when less than the shortest wait is left, once more just past it."""
    assert all(low <= retry.chunk_wait_delay(left) <= high for _ in range(100))


def test_lease_wait_comes_back_after_the_lease_ends_within_bounds() -> None:
    assert all(30.0 <= retry.lease_wait_delay(30.0) <= 30.0 / 0.8 for _ in range(50))
    assert retry.lease_wait_delay(0.1) >= retry.LEASE_WAIT_MIN
    assert retry.lease_wait_delay(1e6) <= retry.LEASE_WAIT_MAX / (1 - retry.JITTER)


def test_consumers_started_together_sweep_at_different_times() -> None:
    delays = {retry.first_sweep_delay(300.0) for _ in range(100)}
    assert all(0 <= d <= 60 for d in delays) and len(delays) > 50


def test_take_retries_grow_and_unexpected_errors_wait_longer() -> None:
    first = retry.take_retry_delay(1, 10.0)
    assert 8.0 <= first <= 10.0
    assert 32.0 <= retry.take_retry_delay(3, 10.0) <= 40.0
    assert retry.take_retry_delay(1, 10.0, unexpected=True) >= 24.0
    assert retry.take_retry_delay(50, 10.0) <= retry.TAKE_RETRY_MAX
