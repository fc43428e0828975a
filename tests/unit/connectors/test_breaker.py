"""The circuit breaker and the back-off: when a connector may try again. Time is a parameter."""

from __future__ import annotations

import pytest

from streams.connectors.breaker import CircuitBreaker, State, backoff_s


def test_the_breaker_opens_after_n_failures_in_a_row_and_not_before():
    breaker = CircuitBreaker(failures=3, cooldown_s=30)
    for t in (0, 1):
        breaker.failed(t)
        assert breaker.allows(t)
    breaker.failed(2)
    assert breaker.state is State.OPEN and not breaker.allows(3)
    assert breaker.wait_s(12) == pytest.approx(20)


def test_a_success_between_failures_starts_the_count_again():
    breaker = CircuitBreaker(failures=2, cooldown_s=30)
    breaker.failed(0)
    breaker.succeeded()
    breaker.failed(1)
    assert breaker.allows(1)


def test_after_the_cooldown_one_attempt_goes_through_and_decides():
    """Half-open: a failure opens it for another full cooldown, a success closes it."""
    breaker = CircuitBreaker(failures=1, cooldown_s=30)
    breaker.failed(0)
    assert not breaker.allows(29.9)
    assert breaker.allows(30) and breaker.state is State.HALF_OPEN
    breaker.failed(30)
    assert breaker.state is State.OPEN and not breaker.allows(59) and breaker.allows(60)
    breaker.succeeded()
    assert breaker.state is State.CLOSED and breaker.wait_s(60) == 0


@pytest.mark.parametrize(
    ("attempts", "wait"),
    [(0, 0), (1, 1), (2, 2), (3, 4), (4, 8), (9, 256), (10, 300), (500, 300)],
)
def test_back_off_doubles_from_initial_up_to_its_cap(attempts, wait):
    assert backoff_s(attempts, initial_s=1, max_s=300) == wait
