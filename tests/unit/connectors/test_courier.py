"""A connector's courier on an in-memory Redis: order, retries, dead letters, the breaker, idempotent queueing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import fakeredis
import pytest

from dispatch.connectors import WebhookConnector
from streams.connectors.base import Delivery, Kind, Result, Verdict
from streams.connectors.courier import Courier
from streams.connectors.intake import Message, route
from streams.connectors.outbox import Outbox
from streams.connectors.webhook import classify

SPEC = WebhookConnector.model_validate({"type": "webhook", "url": "https://x.example/", "secret_env": "S",
                                        "retry": {"max_attempts": 3, "initial": "1s", "max": "4s"},
                                        "breaker": {"failures": 2, "cooldown": "30s"}})  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class System:
    """A department's system that answers each attempt with the next scripted verdict (then DELIVERED)."""

    name = "fake"

    def __init__(self, *script: Verdict) -> None:
        self.script = list(script)
        self.got: list[str] = []

    async def send(self, delivery: Delivery) -> Result:
        self.got.append(delivery.key)
        verdict = self.script.pop(0) if self.script else Verdict.DELIVERED
        code = {"delivered": "delivered", "retry": "http_5xx", "refused": "http_4xx"}[verdict.value]
        return Result(verdict, code, f"said {code}")

    async def poll(self) -> list[Any]:
        return []

    async def settle(self, update: Any, finished: bool = False) -> None:
        pass

    async def close(self) -> None:
        pass


def delivery(key: str, offset: int = 0) -> Delivery:
    record = json.dumps({"task_id": key, "incident_id": "inc-1", "unit_id": "crew"})
    return Delivery("crew", Kind.TASK, key, record, ("p.tasks", 0, offset), "inc-1", 1000.0)


async def courier_with(system: System, *deliveries: Delivery) -> tuple[Courier, Outbox, list, Clock]:
    outbox = Outbox(fakeredis.FakeAsyncRedis(), "ns", dedup_ttl_s=3600, holder_ttl_s=3600)
    await outbox.put(list(deliveries))
    letters: list[tuple[str, str, dict]] = []

    async def write(topic: str, key: str, record: dict) -> None:
        letters.append((topic, key, record))

    clock = Clock()
    return Courier("crew", system, SPEC, outbox, write, "p.deadletter", "me", clock=clock), outbox, letters, clock


def test_deliveries_go_out_in_order_and_leave_the_queue():
    async def scenario() -> tuple[list[str], int]:
        system = System()
        courier, outbox, _, _ = await courier_with(system, delivery("a"), delivery("b", 1))
        for _ in range(3):
            await courier.step()
        return system.got, await outbox.pending("crew")

    assert asyncio.run(scenario()) == (["a", "b"], 0)


def test_a_failed_attempt_waits_its_back_off_then_the_same_record_is_tried_again():
    async def scenario() -> list[str]:
        system = System(Verdict.RETRY)
        courier, _, _, clock = await courier_with(system, delivery("a"), delivery("b", 1))
        await courier.step()  # fails
        await courier.step()  # within the back-off: nothing sent
        clock.now += 1.0
        await courier.step()
        await courier.step()
        return system.got

    assert asyncio.run(scenario()) == ["a", "a", "b"]


def test_after_max_attempts_the_record_is_dead_lettered_with_the_last_error_and_the_next_goes_out():
    async def scenario() -> tuple[list[str], list]:
        system = System(Verdict.RETRY, Verdict.RETRY, Verdict.RETRY)
        courier, _, letters, clock = await courier_with(system, delivery("a", 7), delivery("b", 8))
        for _ in range(8):
            await courier.step()
            clock.now += 31  # past every back-off and the breaker's cooldown
        return system.got, letters

    got, letters = asyncio.run(scenario())
    assert got == ["a", "a", "a", "b"]
    ((topic, key, letter),) = letters
    assert topic == "p.deadletter" and key == "p.tasks:0:7:connector:crew" == letter["deadletter_id"]
    assert (letter["stage"], letter["reason_code"]) == ("connector", "delivery_failed")
    assert "3 attempts" in letter["reason"] and "http_5xx" in letter["reason"]
    assert json.loads(letter["original"])["task_id"] == "a" and letter["offset"] == 7


def test_a_4xx_is_dead_lettered_at_once_and_does_not_trip_the_breaker():
    async def scenario() -> tuple[list[str], list, bool]:
        system = System(Verdict.REFUSED)
        courier, _, letters, _ = await courier_with(system, delivery("a"), delivery("b", 1))
        await courier.step()
        await courier.step()
        return system.got, [r["reason_code"] for _, _, r in letters], courier.breaker.is_open

    assert asyncio.run(scenario()) == (["a", "b"], ["delivery_refused"], False)


def test_an_open_breaker_sends_nothing_until_its_cooldown_ends():
    async def scenario() -> list[int]:
        system = System(Verdict.RETRY, Verdict.RETRY)
        courier, _, _, clock = await courier_with(system, delivery("a"))
        sent = []
        for advance in (0, 2, 5, 10, 14, 1):  # two failures open it at t=1002; closed again at t=1032
            clock.now += advance
            await courier.step()
            sent.append(len(system.got))
        return sent

    assert asyncio.run(scenario()) == [1, 2, 2, 2, 2, 3]


def test_a_redelivered_record_is_queued_once():
    """The intake may read a batch twice (a crash before its commit): the queue takes each key once."""

    async def scenario() -> tuple[int, int, int]:
        outbox = Outbox(fakeredis.FakeAsyncRedis(), "ns", dedup_ttl_s=3600, holder_ttl_s=3600)
        first = await outbox.put([delivery("a"), delivery("b", 1)])
        again = await outbox.put([delivery("a"), delivery("b", 1)])
        return first, again, await outbox.pending("crew")

    assert asyncio.run(scenario()) == (2, 0, 2)


def test_events_go_to_the_unit_they_name_and_to_the_connected_unit_holding_the_incident():
    """A reassignment away from a connected unit is told to it too; units without a connector get nothing."""
    task = {"task_id": "tsk-1-1", "incident_id": "inc-1", "unit_id": "crew"}
    assign = {"event_id": "evt-2", "type": "assign", "incident_id": "inc-1", "unit_id": "other"}
    later = {"event_id": "evt-3", "type": "ack", "incident_id": "inc-1", "unit_id": "other"}
    messages = [Message("p.tasks", 0, 0, b"inc-1", json.dumps(task).encode()),
                Message("p.feedback", 0, 0, b"inc-1", json.dumps(assign).encode()),
                Message("p.feedback", 0, 1, b"inc-1", json.dumps(later).encode()),
                Message("p.feedback", 0, 2, b"inc-1", b"not json")]  # fmt: skip
    deliveries, holds = route(messages, tasks_topic="p.tasks", sends={"crew": frozenset({"tasks", "events"})},
                              holders={}, now=0.0)  # fmt: skip
    assert [(d.unit_id, d.kind, d.key) for d in deliveries] == [("crew", Kind.TASK, "tsk-1-1"),
                                                                 ("crew", Kind.EVENT, "evt-2")]  # fmt: skip
    assert holds == {"inc-1": None}


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(200, Verdict.DELIVERED), (204, Verdict.DELIVERED), (500, Verdict.RETRY), (503, Verdict.RETRY),
     (429, Verdict.RETRY), (408, Verdict.RETRY), (400, Verdict.REFUSED), (401, Verdict.REFUSED),
     (404, Verdict.REFUSED), (422, Verdict.REFUSED), (301, Verdict.REFUSED)],
)  # fmt: skip
def test_a_webhook_answer_is_delivered_worth_a_retry_or_a_refusal(status, verdict):
    """5xx and 429 are retried; other 4xx (and a redirect, which is not followed) are refused at once."""
    assert classify(status)[0] is verdict
