"""WorkOrder.evolve is dataclasses.replace, faster: same result, same refusal of unknown fields."""

from dataclasses import fields, replace
from datetime import UTC, datetime

import pytest

from feedback.orders import State, WorkOrder


def test_evolve_equals_replace_for_every_field_and_leaves_the_original_alone():
    now = datetime(2026, 11, 30, tzinfo=UTC)
    order = WorkOrder("inc-1", State.DISPATCHED, "u", "t-1", 1, "pothole", now, now)
    for f in fields(WorkOrder):
        value = ("x",) if f.name in ("rejections", "history") else f"new-{f.name}"
        assert order.evolve(**{f.name: value}) == replace(order, **{f.name: value})
    assert order.evolve(attempt=2).attempt == 2 and order.attempt == 1
    with pytest.raises(TypeError, match="no field nope"):
        order.evolve(nope=1)
