"""The ops centre's board in headless Chromium with thousands of open incidents: time to first render, cost per update.

Fills Redis (an embedded one unless ``--redis`` answers) with ``--incidents`` open work orders spread over the demo
city, serves the API on a free port (no broker: the board reads Redis only), opens ``/board`` in Debian's Chromium
(through Selenium and chromium-driver; every host but 127.0.0.1 unresolvable), logs in with an ops-centre token and
reads the page's own performance measures:

* ``board-load``: from the login to the first render (the city's layers, every incident's marker, the list);
* ``board-update``: applying one change from the live feed (the marker and the item; the list is redrawn at most
  once a frame, measured separately as ``board-list``).

Then ``--updates`` orders are acknowledged (each change goes out on the feed) and the updates' measures are read.
``--runs`` page loads; medians and ranges.

    python -m bench.board_browser --incidents 5000 --updates 500 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.common import redis_server

BATCH = 500


async def fill(redis_url: str, namespace: str, pack: Any, count: int) -> list[Any]:
    """``count`` dispatched orders, written by the order store as the worker writes them; returns them."""
    from dispatch.demo_city import CATEGORIES, bounds
    from feedback import LifecycleEvent
    from feedback import apply as apply_event
    from feedback.store import Change, RedisOrderStore
    from streams.citypolicy import calendar_of, policy_for
    from streams.ids import stable_id, task_id_for
    from streams.outcomes import event
    from streams.settings import load_settings

    calendar = calendar_of(pack)
    policy = policy_for(pack, load_settings(), calendar)
    client = aioredis.Redis.from_url(redis_url)
    store = RedisOrderStore(client, namespace, calendar)
    rng = random.Random(7)
    min_lon, min_lat, max_lon, max_lat = bounds()
    now = datetime.now(UTC)
    orders = []
    try:
        for start in range(0, count, BATCH):
            changes = []
            for i in range(start, min(count, start + BATCH)):
                incident = stable_id("inc", "bench-board", str(i))
                category = CATEGORIES[i % len(CATEGORIES)]["code"]
                at = now - timedelta(minutes=rng.uniform(0, 600))
                record = event("dispatched", incident, "engine", at, task_id=task_id_for(incident),
                               unit_id="roads-west", attempt=1, category=category, lat=rng.uniform(min_lat, max_lat),
                               lon=rng.uniform(min_lon, max_lon), address=None, origin="report",
                               source_id=f"report:b{i}", rule="bench")  # fmt: skip
                lifecycle_event = LifecycleEvent.from_record(record)
                order = apply_event(None, lifecycle_event, policy).order
                changes.append(Change(None, order, (lifecycle_event.event_id,)))
                orders.append(order)
            await store.save(changes)
        return orders
    finally:
        await client.aclose()


async def acknowledge(redis_url: str, namespace: str, pack: Any, orders: list[Any]) -> None:
    """Each order acknowledged by its unit: one change each on the board's feed."""
    from feedback import LifecycleEvent
    from feedback import apply as apply_event
    from feedback.store import Change, RedisOrderStore
    from streams.citypolicy import calendar_of, policy_for
    from streams.outcomes import event
    from streams.settings import load_settings

    calendar = calendar_of(pack)
    policy = policy_for(pack, load_settings(), calendar)
    client = aioredis.Redis.from_url(redis_url)
    store = RedisOrderStore(client, namespace, calendar)
    try:
        loaded = await store.load([o.incident_id for o in orders])  # as stored, with their versions
        for order in (loaded[o.incident_id] for o in orders):  # one at a time, as units act
            record = event("ack", order.incident_id, f"unit:{order.unit_id}", datetime.now(UTC), task_id=order.task_id,
                           unit_id=order.unit_id, key=uuid.uuid4().hex)  # fmt: skip
            lifecycle_event = LifecycleEvent.from_record(record)
            after = apply_event(order, lifecycle_event, policy).order
            await store.save([Change(order, after, (lifecycle_event.event_id,))])
            await asyncio.sleep(0.002)
    finally:
        await client.aclose()


def measures(driver: Any, name: str) -> list[float]:
    return driver.execute_script(f"return performance.getEntriesByName('{name}').map(e => e.duration)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from dispatch import load_city_pack
    from dispatch.demo_city import write_demo_city
    from streams.api import create_api
    from streams.api.store import ApiStore
    from streams.settings import load_settings
    from tests.browser.conftest import OFFLINE, Writer, executables, serving

    binary, driver_path = executables()
    if not (binary and driver_path):
        sys.exit("Chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    pack = load_city_pack(write_demo_city(Path(tempfile.mkdtemp(prefix="cityloop-board-city-")) / "city"))
    loads, updates, lists, figures = [], [], [], {}
    with redis_server(args.redis) as url:
        namespace = f"benchboard{uuid.uuid4().hex[:6]}"
        settings = load_settings(redis_url=url, topic_prefix=namespace)
        started = time.perf_counter()
        orders = asyncio.run(fill(url, settings.redis_namespace, pack, args.incidents))
        print(f"{len(orders):,} open orders written in {time.perf_counter() - started:.1f} s", flush=True)
        token = asyncio.run(_token(url, settings.redis_namespace, pack.spec.fallback_unit, ApiStore))
        app = create_api(settings, pack, redis_client=aioredis.Redis.from_url(url), writer=Writer())
        with serving(app) as base:
            for attempt in range(args.runs):
                options = webdriver.ChromeOptions()
                options.binary_location = binary
                for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                 "--window-size=1280,900", OFFLINE):  # fmt: skip
                    options.add_argument(argument)
                driver = webdriver.Chrome(service=Service(driver_path), options=options)
                try:
                    driver.get(f"{base}/board")
                    driver.find_element(By.ID, "token").send_keys(token)
                    driver.find_element(By.CSS_SELECTOR, "#login button").click()
                    WebDriverWait(driver, 120).until(lambda d: measures(d, "board-load"))
                    loads.append(measures(driver, "board-load")[0])
                    shown = driver.find_element(By.ID, "count").text
                    if attempt == 0:
                        batch = orders[: args.updates]
                        asyncio.run(acknowledge(url, settings.redis_namespace, pack, batch))
                        wanted = len(batch)
                        WebDriverWait(driver, 120).until(lambda d, n=wanted: len(measures(d, "board-update")) >= n)
                        updates = measures(driver, "board-update")
                        lists = measures(driver, "board-list")[1:]  # the first is the initial render's
                        figures["shown"] = shown
                finally:
                    driver.quit()
    figures.update(
        incidents=args.incidents,
        load_ms=_summary(loads),
        update_ms=_summary(updates),
        list_redraw_ms=_summary(lists),
        updates=len(updates),
        list_redraws=len(lists),
    )
    return figures


async def _token(url: str, namespace: str, unit: str, store: Any) -> str:
    client = aioredis.Redis.from_url(url)
    try:
        return str(await store(client, namespace).issue_token(unit, "bench", datetime.now(UTC)))
    finally:
        await client.aclose()


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {"median": round(statistics.median(ordered), 2), "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
            "min": round(ordered[0], 2), "max": round(ordered[-1], 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--incidents", type=int, default=5000, help="open orders on the board [5000]")
    parser.add_argument("--updates", type=int, default=500, help="changes pushed to the first page [500]")
    parser.add_argument("--runs", type=int, default=3, help="page loads [3]")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis to use if it answers")
    parser.add_argument("--json", dest="json_out", help="also write the figures to this file")
    args = parser.parse_args()
    figures = run(args)
    print(json.dumps(figures, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
