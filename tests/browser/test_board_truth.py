"""What the board says about time must hold without the worker's help: an order whose deadline has passed reads
overdue even when no SLA timer has told the board (a timer down, or its event still on its way); the map can always
go back to the whole city after zooming onto an incident."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fakeredis
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.conftest import Writer, serving


async def _fill(server: fakeredis.FakeServer, pack, namespace: str) -> tuple[str, list[str]]:
    from feedback import LifecycleEvent
    from feedback import apply as apply_event
    from feedback.store import Change, RedisOrderStore
    from streams.api.store import ApiStore
    from streams.citypolicy import calendar_of, policy_for
    from streams.ids import stable_id, task_id_for
    from streams.outcomes import event
    from streams.settings import load_settings

    client = fakeredis.FakeAsyncRedis(server=server)
    calendar = calendar_of(pack)
    policy = policy_for(pack, load_settings(), calendar)
    now = datetime.now(UTC)
    ids, changes = [], []
    for n, age in enumerate((timedelta(days=10), timedelta(0))):  # one long overdue, one just in
        incident = stable_id("inc", "truth", str(n))
        record = event("dispatched", incident, "engine", now - age, task_id=task_id_for(incident), unit_id="roads-west",
                       attempt=1, category="pothole", lat=51.99 + n * 0.01, lon=5.06, address=None, origin="report",
                       source_id=f"report:t{n}", rule="test")  # fmt: skip
        e = LifecycleEvent.from_record(record)
        changes.append(Change(None, apply_event(None, e, policy).order, (e.event_id,)))
        ids.append(incident)
    await RedisOrderStore(client, namespace, calendar).save(changes)
    token = await ApiStore(client, namespace).issue_token("ops-centre", "test", now)
    return token, ids


def test_a_passed_deadline_reads_overdue_without_the_timer_and_the_map_goes_back_to_the_whole_city(
    browser, tmp_path: Path
):
    from dispatch import load_city_pack
    from dispatch.demo_city import write_demo_city
    from streams.api import create_api
    from streams.settings import load_settings

    pack = load_city_pack(write_demo_city(tmp_path / "city"))
    settings = load_settings()
    server = fakeredis.FakeServer()
    token, (late, fresh) = asyncio.run(_fill(server, pack, settings.redis_namespace))
    app = create_api(settings, pack, redis_client=fakeredis.FakeAsyncRedis(server=server), writer=Writer())
    with serving(app) as base:
        browser.get(f"{base}/board#token={token}")
        rows = WebDriverWait(browser, 30).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#list button[data-incident]")
        )
        texts = {r.get_attribute("data-incident"): r.text for r in rows}
        assert "overdue" in texts[late] and "late" in texts[late], texts[late]
        assert "on time" in texts[fresh], texts[fresh]
        zoom = "return CityLoopBoard.state.map.getZoom()"
        whole = browser.execute_script(zoom)
        browser.execute_script("CityLoopBoard.state.map.setView([51.99, 5.06], 18)")  # as a user zooms in
        assert browser.execute_script(zoom) == 18 != whole
        browser.find_element(By.ID, "whole-city").click()
        WebDriverWait(browser, 10).until(lambda d: d.execute_script(zoom) == whole)
