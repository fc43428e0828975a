"""Polled status as lifecycle events: the steps an order needs to get where the system says, written as the
callback route writes them, with stable ids; and a poller that shares its connector's breaker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from feedback import FeedbackError, LifecycleEvent, Policy, SlaSpec, State, WorkOrder, apply
from streams.connectors.base import PollFailed, StatusUpdate
from streams.connectors.breaker import CircuitBreaker
from streams.connectors.poller import Poller
from streams.connectors.status import catch_up

POLICY = Policy(
    calendar=None,
    slas={"pothole": SlaSpec("4h", "72h", "24h", "calendar")},
    fallback_unit="ops-centre",
    max_rejections=2,
    sensor_quiet=timedelta(minutes=30),
    sensor_reopen=timedelta(hours=6),
)
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
UNIT, TASK, INCIDENT = "roads-west", "tsk-abc-1", "inc-abc"


def order_in(state: State) -> WorkOrder:
    u = f"unit:{UNIT}"
    opening = {"attempt": 1, "category": "pothole", "origin": "report", "source_id": "report:r1"}
    events = [LifecycleEvent("e0", "dispatched", INCIDENT, "engine", T0, TASK, UNIT, opening)]
    steps = {
        State.ACKNOWLEDGED: ["ack"],
        State.IN_PROGRESS: ["ack", "start"],
        State.RESOLVED: ["ack", "start", "resolve"],
        State.WAITING: ["ack", "start", "wait"],
    }.get(state, [])
    fields = {"resolve": {"note": "done"}, "wait": {"reason": "parts"}}
    events += [
        LifecycleEvent(f"e{i + 1}", k, INCIDENT, u, T0, TASK, UNIT, fields.get(k, {})) for i, k in enumerate(steps)
    ]
    order = None
    for event in events:
        order = apply(order, event, POLICY).order
    assert order is not None and order.state is state
    return order


@pytest.mark.parametrize(
    ("state", "target", "steps"),
    [
        (State.DISPATCHED, "resolve", ["ack", "start", "resolve"]),
        (State.ACKNOWLEDGED, "resolve", ["start", "resolve"]),
        (State.IN_PROGRESS, "resolve", ["resolve"]),
        (State.WAITING, "resolve", ["resume", "resolve"]),
        (State.RESOLVED, "resolve", []),
        (State.DISPATCHED, "ack", ["ack"]),
        (State.IN_PROGRESS, "ack", []),
        (State.ACKNOWLEDGED, "reject", ["reject"]),
    ],
)
def test_a_status_becomes_the_steps_that_bring_the_order_there(state, target, steps):
    fields = {"reason_code": "other", "reason": "not ours"} if target == "reject" else {"note": "seen there"}
    records = catch_up(UNIT, order_in(state), target, "open311:r1", fields, NOW, POLICY)
    assert [r["type"] for r in records] == steps
    for record in records:
        assert (record["actor"], record["by"], record["unit_id"], record["task_id"]) == (
            f"unit:{UNIT}", f"connector:{UNIT}", UNIT, TASK)  # fmt: skip
    if records:
        assert {k: records[-1][k] for k in fields} == fields, "the system's note goes on the last step"
        assert all("note" not in r for r in records[:-1])


def test_the_same_status_found_twice_makes_the_same_event_ids():
    first = catch_up(UNIT, order_in(State.DISPATCHED), "resolve", "open311:r1", {"note": "x"}, NOW, POLICY)
    again = catch_up(UNIT, order_in(State.DISPATCHED), "resolve", "open311:r1", {"note": "x"}, NOW, POLICY)
    assert [r["event_id"] for r in first] == [r["event_id"] for r in again]
    assert len({r["event_id"] for r in first}) == 3


def test_a_resolve_found_before_the_worker_applied_the_earlier_ack_repeats_that_acks_id():
    """The poller reads the order as the worker left it: the ack it wrote a second ago may not be applied yet."""
    (ack,) = catch_up(UNIT, order_in(State.DISPATCHED), "ack", "open311:r1", {"note": "taken"}, NOW, POLICY)
    chain = catch_up(UNIT, order_in(State.DISPATCHED), "resolve", "open311:r1", {"note": "x"}, NOW, POLICY)
    assert chain[0]["type"] == "ack" and chain[0]["event_id"] == ack["event_id"]


def test_a_status_the_table_does_not_allow_is_refused():
    with pytest.raises(FeedbackError, match="reject is not allowed"):
        catch_up(UNIT, order_in(State.IN_PROGRESS), "reject", "k", {"reason_code": "other", "reason": "no"}, NOW,
                 POLICY)  # fmt: skip


class Orders:
    def __init__(self, *orders: WorkOrder) -> None:
        self.orders = {o.incident_id: o for o in orders}

    async def load(self, ids: list[str]) -> dict[str, WorkOrder | None]:
        return {i: self.orders.get(i) for i in ids}


class System:
    name = "fake"

    def __init__(self, *rounds: list[StatusUpdate] | PollFailed) -> None:
        self.rounds = list(rounds)
        self.polls = 0
        self.settled: list[tuple[str, bool]] = []

    async def poll(self) -> list[StatusUpdate]:
        self.polls += 1
        found = self.rounds.pop(0) if self.rounds else []
        if isinstance(found, PollFailed):
            raise found
        return found

    async def settle(self, update: StatusUpdate, finished: bool = False) -> None:
        self.settled.append((update.key, finished))

    async def send(self, delivery: Any) -> Any:
        raise AssertionError("not sent here")

    async def close(self) -> None:
        pass


def poller_for(system: System, orders: Orders, breaker: CircuitBreaker | None = None) -> tuple[Poller, list]:
    written: list[tuple[str, str, dict]] = []

    async def write(topic: str, key: str, record: dict) -> None:
        written.append((topic, key, record))

    breaker = breaker or CircuitBreaker(2, 30)
    return Poller(UNIT, system, 1.0, breaker, orders, POLICY, write, "p.feedback", clock=lambda: 1000.0), written


RESOLVED = StatusUpdate(TASK, "resolve", "open311:r1", {"note": "Patched"}, "r1")


def test_the_poller_writes_the_events_to_the_feedback_topic_keyed_by_incident_then_settles():
    system = System([RESOLVED])
    poller, written = poller_for(system, Orders(order_in(State.DISPATCHED)))
    assert asyncio.run(poller.step()) == 1
    assert [(t, k, r["type"]) for t, k, r in written] == [("p.feedback", INCIDENT, "ack"),
                                                         ("p.feedback", INCIDENT, "start"),
                                                         ("p.feedback", INCIDENT, "resolve")]  # fmt: skip
    assert written[-1][2]["note"] == "Patched"
    assert system.settled == [("open311:r1", False)]


def test_a_status_for_a_task_no_longer_the_units_writes_nothing_and_is_dropped():
    moved = order_in(State.DISPATCHED).evolve(task_id="tsk-abc-2")
    system = System([RESOLVED])
    poller, written = poller_for(system, Orders(moved))
    asyncio.run(poller.step())
    assert written == [] and system.settled == [("open311:r1", True)]


def test_failed_polls_trip_the_breaker_shared_with_the_courier_and_an_open_breaker_polls_nothing():
    breaker = CircuitBreaker(2, 30)
    system = System(PollFailed("http_5xx", "502"), PollFailed("network", "refused"), [RESOLVED])
    poller, written = poller_for(system, Orders(order_in(State.DISPATCHED)), breaker)
    asyncio.run(poller.step())
    asyncio.run(poller.step())
    assert breaker.is_open
    asyncio.run(poller.step())
    assert system.polls == 2 and written == []
