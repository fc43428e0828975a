"""Redis retries in one layer: the listed calls of a store wait out an outage, the others fail to their caller."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from streams.state import INCIDENT_CALLS, ORDER_CALLS, UNIT_CALLS, Retrying


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def load(self, ids: list[str]) -> dict[str, int]:
        self.calls += 1
        if self.calls <= self.failures:
            raise RedisConnectionError("Redis is restarting")
        return dict.fromkeys(ids, 1)

    async def save(self, changes: list[str]) -> None:
        self.calls += 1
        raise RedisConnectionError("Redis is restarting")


def test_a_listed_call_is_retried_until_redis_answers_and_an_unlisted_one_fails_at_once():
    store = Flaky(failures=2)
    retrying = Retrying(store, {"load": "orders_load"})
    assert asyncio.run(retrying.load(["a"])) == {"a": 1} and store.calls == 3
    store.calls = 0
    with pytest.raises(RedisConnectionError):
        asyncio.run(retrying.save(["a"]))
    assert store.calls == 1, "a compare-and-set is not repeated behind its caller's back"


def test_only_calls_safe_to_repeat_are_listed():
    assert "save" not in ORDER_CALLS, "RedisOrderStore.save is a compare-and-set: its batch is retried whole"
    for calls in (INCIDENT_CALLS, ORDER_CALLS, UNIT_CALLS):
        assert all(label.replace("_", "").isalpha() for label in calls.values())
