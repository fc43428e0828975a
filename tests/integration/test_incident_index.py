"""The open-incident index in real Redis: who merges with whom, idempotently."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from classifiers.merge import merge_tokens
from classifiers.store import RedisIncidentIndex, Sighting

pytestmark = pytest.mark.integration

LAT, LON = 52.0, 5.1
M_LAT = 1 / 111_320  # one metre north, in degrees


def sighting(sid: str, *, north_m: float = 0.0, ts: float = 10_000.0, text: str = "street flooded",
             category: str = "flooding", family: str | None = None, radius: float = 150.0,
             window: float = 3 * 3600.0) -> Sighting:  # fmt: skip
    return Sighting(sid, f"inc-{sid}", category, family or category, LAT + north_m * M_LAT, LON, ts, radius, window,
                    merge_tokens(text))  # fmt: skip


def run(namespace: str, redis_url: str, *batches: list[Sighting]):  # type: ignore[no-untyped-def]
    async def scenario():  # type: ignore[no-untyped-def]
        client = aioredis.Redis.from_url(redis_url)
        index = RedisIncidentIndex(client, namespace, ttl_s=600, grace_s=600)
        results = [await index.merge_or_open(batch) for batch in batches]
        await client.aclose()
        return [[(d.incident_id, d.opened) for d in batch] for batch in results]

    return asyncio.run(scenario())


def test_repeat_reports_within_radius_and_window_join_the_first(namespace, redis_url):
    """Reports 50 m and 140 m away, an hour later, join; 200 m away opens its own incident."""
    result = run(namespace, redis_url, [
        sighting("a"), sighting("b", north_m=50, ts=13_600), sighting("c", north_m=140), sighting("d", north_m=-200),
    ])  # fmt: skip
    assert result == [[("inc-a", True), ("inc-a", False), ("inc-a", False), ("inc-d", True)]]


def test_outside_the_window_opens_a_new_incident(namespace, redis_url):
    """A sighting more than the window after the last one starts a new incident."""
    result = run(namespace, redis_url, [sighting("a"), sighting("b", ts=10_000 + 3 * 3600 + 1)])
    assert result == [[("inc-a", True), ("inc-b", True)]]


def test_the_window_slides_with_each_sighting(namespace, redis_url):
    """Each join moves the incident's last sighting: 2 h + 2 h still joins."""
    result = run(namespace, redis_url, [sighting("a"), sighting("b", ts=17_200), sighting("c", ts=24_400)])
    assert result == [[("inc-a", True), ("inc-a", False), ("inc-a", False)]]


def test_other_families_never_merge(namespace, redis_url):
    result = run(namespace, redis_url, [sighting("a"), sighting("b", category="noise", text="loud music")])
    assert result == [[("inc-a", True), ("inc-b", True)]]


def test_a_shared_family_merges_across_categories(namespace, redis_url):
    """A sensor's flooding alarm and a resident's blocked-drain report in one 'water' family merge."""
    result = run(namespace, redis_url, [
        sighting("sensor:wl-1:1", family="water"),
        sighting("report:r1", category="blocked_drain", family="water", north_m=30, text="drain blocked"),
    ])  # fmt: skip
    assert result == [[("inc-sensor:wl-1:1", True), ("inc-sensor:wl-1:1", False)]]


def test_similar_words_break_a_distance_tie(namespace, redis_url):
    """Two open incidents equally near: the one described in the same words wins."""
    result = run(
        namespace,
        redis_url,
        [sighting("far-words", north_m=-60, text="tree fell on the road", radius=100),
         sighting("same-words", north_m=60, text="water main burst, road flooded", radius=100)],
        [sighting("new", text="burst water main flooded the road", radius=500)],
    )  # fmt: skip
    assert result[0] == [("inc-far-words", True), ("inc-same-words", True)]
    assert result[1] == [("inc-same-words", False)]


def test_a_redelivered_sighting_gets_the_same_answer_and_changes_nothing(namespace, redis_url):
    """Idempotent per source id: replays return the first decision; the count does not grow."""

    async def scenario():  # type: ignore[no-untyped-def]
        client = aioredis.Redis.from_url(redis_url)
        index = RedisIncidentIndex(client, namespace, ttl_s=600)
        first = await index.merge_or_open([sighting("a"), sighting("b", north_m=10)])
        again = await index.merge_or_open([sighting("a"), sighting("b", north_m=10)])
        sources = await index.source_ids("inc-a")
        await client.aclose()
        return first, again, sources

    first, again, sources = asyncio.run(scenario())
    assert [(d.incident_id, d.opened) for d in again] == [(d.incident_id, d.opened) for d in first]
    assert again[1].sources == 2 and sources == ["a", "b"]


def test_a_closed_incident_takes_no_more_reports(namespace, redis_url):
    async def scenario():  # type: ignore[no-untyped-def]
        client = aioredis.Redis.from_url(redis_url)
        index = RedisIncidentIndex(client, namespace, ttl_s=600)
        await index.merge_or_open([sighting("a")])
        closed = await index.close("inc-a")
        after = await index.merge_or_open([sighting("b", north_m=5)])
        await client.aclose()
        return closed, after

    closed, after = asyncio.run(scenario())
    assert closed is True
    assert (after[0].incident_id, after[0].opened) == ("inc-b", True)


def test_old_incidents_leave_the_index_as_event_time_moves_on(namespace, redis_url, redis_client):
    """Expiry follows the family's watermark (event time), so replaying old data behaves like live data."""
    run(namespace, redis_url, [sighting("old", ts=0.0)], [sighting("far", north_m=5000, ts=100_000.0)])
    members = {m.decode() for m in redis_client.zrange(f"{namespace}:open:flooding", 0, -1)}
    assert members == {"inc-far"}
