"""Each SLA stage of a task ends met or breached, once: what the lifecycle counts per unit and department."""

from __future__ import annotations

from datetime import timedelta

from dispatch import load_city_pack
from dispatch.demo_city import write_demo_city
from feedback import apply
from streams.citypolicy import sla_owner
from streams.lifecycle import sla_outcomes
from tests.unit.feedback.test_lifecycle import CAL_POLICY, T0, U, dispatched, ev


def at(minutes: float):
    return T0 + timedelta(minutes=minutes)


def steps(*events):
    """(order before, order after, event type) for each event, applied in turn."""
    order, out = None, []
    for event in events:
        after = apply(order, event, CAL_POLICY).order
        out.append(sla_outcomes(order, after, event.type))
        order = after
    return out


def escalate(stage: str, minutes: float, due):
    return ev("escalate", "timer", at(minutes), stage=stage, due=due.isoformat())


def test_an_ack_in_time_then_a_resolve_in_time_then_a_verification_are_three_stages_met():
    decided = steps(dispatched(), ev("ack", U, at(5)), ev("start", U, at(6)), ev("resolve", U, at(60), note="done"),
                    ev("verify", "ops:ops-centre", at(90)))  # fmt: skip
    assert decided == [[], [("acknowledge", "met")], [], [("resolve", "met")], [("verify", "met")]]


def test_a_breached_stage_is_counted_breached_once_and_never_met_afterwards():
    order = apply(None, dispatched(), CAL_POLICY).order
    red = order.deadline("acknowledge", CAL_POLICY.calendar)
    breached = apply(order, escalate("acknowledge", 240, red), CAL_POLICY).order
    assert sla_outcomes(order, breached, "escalate") == [("acknowledge", "breached")]
    late = apply(breached, ev("ack", U, at(250)), CAL_POLICY).order
    assert sla_outcomes(breached, late, "ack") == []
    again = apply(late, escalate("acknowledge", 260, red), CAL_POLICY)  # a moved deadline: ignored
    assert again.ignored and sla_outcomes(late, again.order, "escalate") == []


def test_a_rejection_stops_the_acknowledge_clock_without_meeting_it():
    rejected = steps(dispatched(), ev("reject", U, at(3), reason_code="outside_remit", reason="not ours"))
    assert rejected[1] == []


def test_the_owner_labels_come_from_the_pack(tmp_path):
    pack = load_city_pack(write_demo_city(tmp_path / "city"))
    team = next(u for u in pack.spec.units if u.kind == "field_team" and u.department)
    department = next(u for u in pack.spec.units if u.kind == "department")
    assert sla_owner(pack, team.id) == (team.department, team.id)
    assert sla_owner(pack, department.id) == (department.id, department.id)
    assert sla_owner(pack, "a-unit-of-another-pack") == ("other", "other")
    assert sla_owner(pack, None) == ("other", "other")
