"""The crew app's task map, in headless Chromium on a phone-sized window (360 x 640), on an in-memory stack.

Opening a task's details draws a small map: the city's areas, the task's point with a text label, centred on it. The
page still fits 360 px; the city is asked for once; a redrawn list keeps the same map working and a closed task's map
is removed; the keyboard passes through the map; a city's tile server is drawn and allowed by the page's CSP.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import fakeredis
import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.conftest import Writer, serving
from tests.browser.test_board_tiles import Tiles, tile_server  # noqa: F401 - the fixture is used below

# two tasks of roads-west, ~1.1 km apart in the demo city
PLACES = [(51.99, 5.06), (52.0, 5.06)]


async def _tasks(server: fakeredis.FakeServer, pack, namespace: str) -> tuple[str, list[str]]:
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
    tasks, changes = [], []
    for n, (lat, lon) in enumerate(PLACES):
        incident = stable_id("inc", "crew-map", str(n))
        record = event("dispatched", incident, "engine", now, task_id=task_id_for(incident), unit_id="roads-west",
                       attempt=1, category="pothole", lat=lat, lon=lon, address=None, origin="report",
                       source_id=f"report:m{n}", rule="test")  # fmt: skip
        e = LifecycleEvent.from_record(record)
        changes.append(Change(None, apply_event(None, e, policy).order, (e.event_id,)))
        tasks.append(task_id_for(incident))
    await RedisOrderStore(client, namespace, calendar).save(changes)
    token = await ApiStore(client, namespace).issue_token("roads-west", "van 7", now)
    return token, tasks


def crew_app(tmp_path: Path, **settings):
    from dispatch import load_city_pack
    from dispatch.demo_city import write_demo_city
    from streams.api import create_api
    from streams.settings import load_settings

    pack = load_city_pack(write_demo_city(tmp_path / "city"))
    config = load_settings(**settings)
    server = fakeredis.FakeServer()
    token, tasks = asyncio.run(_tasks(server, pack, config.redis_namespace))
    app = create_api(config, pack, redis_client=fakeredis.FakeAsyncRedis(server=server), writer=Writer())
    return app, token, tasks


def card(task_id: str) -> str:
    return f'li.task[data-task="{task_id}"]'


def open_details(browser, task_id: str) -> None:
    browser.find_element(By.CSS_SELECTOR, f"{card(task_id)} details.more summary").click()
    WebDriverWait(browser, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f"{card(task_id)} .task-map path.leaflet-interactive")
    )


def test_a_tasks_details_show_its_map_on_a_phone(browser, tmp_path):
    app, token, (first, second) = crew_app(tmp_path)
    browser.set_window_size(360, 640)
    with serving(app) as base:
        assert httpx.get(f"{base}/units/me/city", timeout=10).status_code == 401, "a unit's token is needed"
        browser.get(f"{base}/crew#token={token}")
        WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "li.task")) == 2)
        assert not browser.find_elements(By.CSS_SELECTOR, ".leaflet-container"), "no map before a task is opened"
        assert browser.execute_script("return typeof window.L") == "undefined", "nor its library"

        open_details(browser, first)
        box = browser.find_element(By.CSS_SELECTOR, f"{card(first)} .task-map")
        areas = box.find_elements(By.CSS_SELECTOR, "path.leaflet-interactive")
        assert len(areas) >= 2, "the city's areas are drawn"
        label = box.find_element(By.CSS_SELECTOR, ".task-pin-label")
        assert label.text == "task: pothole" and label.is_displayed(), "the point says what it is, not by colour alone"
        # centred on the task: its pin sits in the middle of the map, where the task's point is
        where = browser.execute_script(
            """const [box, pin] = arguments, b = box.getBoundingClientRect(), p = pin.getBoundingClientRect();
               const shown = CityLoopCrew.state.maps.get(arguments[2]);
               const at = shown.map.latLngToContainerPoint([arguments[3], arguments[4]]);
               return {dx: p.left + p.width / 2 - (b.left + b.width / 2),
                       dy: p.top + p.height / 2 - (b.top + b.height / 2),
                       ax: at.x - b.width / 2, ay: at.y - b.height / 2, height: b.height, width: b.width,
                       zoom: shown.map.getZoom()};""",
            box, box.find_element(By.CSS_SELECTOR, ".task-pin"), first, *PLACES[0],
        )  # fmt: skip
        assert abs(where["dx"]) <= 2 and abs(where["dy"]) <= 2, where
        assert abs(where["ax"]) <= 1.5 and abs(where["ay"]) <= 1.5, where  # the box may be a fraction of a px wide
        assert where["height"] == 200 and where["width"] > 280 and where["zoom"] == 16, where
        geo = browser.find_element(By.CSS_SELECTOR, f"{card(first)} a.geo")
        assert geo.is_displayed() and geo.get_attribute("href").startswith("geo:51.99,5.06")
        assert browser.execute_script("return document.documentElement.scrollWidth") <= 360

        # redrawn (as on every live event): the same map, moved into the new card, still working
        browser.execute_script("CityLoopCrew.state.maps.get(arguments[0]).map.marked = true", first)
        browser.execute_script("CityLoopCrew.render(); CityLoopCrew.render()")
        assert browser.execute_script("return CityLoopCrew.state.maps.get(arguments[0]).map.marked", first) is True
        assert len(browser.find_elements(By.CSS_SELECTOR, ".leaflet-container")) == 1
        browser.find_element(By.CSS_SELECTOR, f"{card(first)} .task-map .leaflet-control-zoom-in").click()
        WebDriverWait(browser, 10).until(
            lambda d: d.execute_script("return CityLoopCrew.state.maps.get(arguments[0]).map.getZoom()", first) == 17
        )

        # the keyboard goes into the map and out of it again
        browser.execute_script(
            "arguments[0].focus()", browser.find_element(By.CSS_SELECTOR, f"{card(first)} .task-map")
        )
        inside = "return Boolean(document.activeElement.closest('.task-map'))"
        browser.execute_script("CityLoopCrew.render()")
        assert browser.execute_script(inside), "a redraw keeps the keyboard on the map"
        for _ in range(5):
            browser.switch_to.active_element.send_keys(Keys.TAB)
            if not browser.execute_script(inside):
                break
        assert not browser.execute_script(inside), "Tab leaves the map"

        # a second task's map; closing the first removes its map
        open_details(browser, second)
        assert browser.execute_script("return CityLoopCrew.state.maps.size") == 2
        browser.find_element(By.CSS_SELECTOR, f"{card(first)} details.more summary").click()
        WebDriverWait(browser, 10).until(lambda d: d.execute_script("return CityLoopCrew.state.maps.size") == 1)
        assert len(browser.find_elements(By.CSS_SELECTOR, ".leaflet-container")) == 1
        assert not browser.find_elements(By.CSS_SELECTOR, f"{card(first)} .task-map")
        open_details(browser, first)  # opened again: a new map, the city not asked for again
        asked = browser.execute_script(
            "return performance.getEntriesByType('resource').filter((e) => e.name.endsWith('/units/me/city')).length"
        )
        assert asked == 1, "the city is fetched once per page load"
        assert browser.execute_script("return document.documentElement.scrollWidth") <= 360
        assert browser.execute_script("return document.querySelectorAll('img.leaflet-tile').length") == 0, "no tiles"
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors

        # closed two frames after its zoom button is tapped: the map goes without an error (an animated zoom still
        # under way when Leaflet removes its map ends 250 ms later on panes that are gone)
        browser.execute_async_script(
            """const [selector, done] = arguments, box = document.querySelector(selector + ' .task-map');
               box.querySelector('.leaflet-control-zoom-in').click();
               const close = () => { document.querySelector(selector + ' details.more summary').click(); done(); };
               requestAnimationFrame(() => requestAnimationFrame(close)); // an animated zoom starts in the first""",
            card(first),
        )
        WebDriverWait(browser, 10).until(lambda d: d.execute_script("return CityLoopCrew.state.maps.size") == 1)
        time.sleep(1)  # past Leaflet's own end of a zoom (250 ms)
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
        assert not browser.find_elements(By.CSS_SELECTOR, f"{card(first)} .task-map")


def test_a_citys_tile_server_is_drawn_under_the_task(browser, tmp_path, tile_server):  # noqa: F811
    app, token, (first, _) = crew_app(tmp_path, map_tiles=f"{tile_server}/{{z}}/{{x}}/{{y}}.png",
                                      map_attribution="Tiles: survey office")  # fmt: skip
    browser.set_window_size(360, 640)
    with serving(app) as base:
        csp = httpx.get(f"{base}/crew", timeout=10).headers["content-security-policy"]
        assert f"img-src 'self' data: {tile_server};" in csp
        browser.get(f"{base}/crew#token={token}")
        WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, card(first)))
        open_details(browser, first)
        WebDriverWait(browser, 30).until(
            lambda d: d.execute_script("return document.querySelectorAll('img.leaflet-tile-loaded').length") > 0
        )
        assert Tiles.asked and all(path.startswith("/16/") for path in Tiles.asked), Tiles.asked
        assert browser.find_element(By.CSS_SELECTOR, ".leaflet-control-attribution").text == "Tiles: survey office"
        assert browser.execute_script("return document.documentElement.scrollWidth") <= 360
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
