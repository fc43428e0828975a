"""From an Open311 POST to the incident on the ops centre's board, in headless Chromium, on a live stack.

Starts Tansu (unless ``--kafka`` names a broker), Redis (an embedded one unless ``--redis`` answers), one
``cityloop worker`` on the demo city and the API on free ports; opens ``/board`` in Debian's Chromium (Selenium and
chromium-driver; every host but 127.0.0.1 unresolvable) with an ops-centre token; then posts ``--reports`` reports
through Open311, one every ``--interval`` seconds, and for each measures:

* ``total``: from just before the POST to its row in the board's list (the page polled every few milliseconds);
* ``pipeline``: from the POST to the worker's dispatch decision (the order's ``created_at``, stamped by the worker on
  the same machine's clock): the API's write to Kafka, the worker's fetch, classification, merge and dispatch;
* ``board``: the rest, from the decision to the row on the screen: the dispatch sent and read back by the worker's
  lifecycle, the order saved (and put on the board's feed), the feed to the page, the page's redraw.

    python -m bench.board_latency --reports 30 --interval 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import broker, free_port, redis_server

ROOT = Path(__file__).resolve().parents[1]
PRESENT = "return document.querySelector(arguments[0]) !== null"


def grid(count: int, bounds: tuple[float, float, float, float]) -> list[tuple[float, float]]:
    """``count`` points spread over the city's box, far enough apart that no report merges into another's incident."""
    min_lon, min_lat, max_lon, max_lat = bounds
    side = max(1, int(count**0.5 + 0.999))
    step_lat, step_lon = (max_lat - min_lat) / (side + 1), (max_lon - min_lon) / (side + 1)
    points = [(min_lat + step_lat * (i + 1), min_lon + step_lon * (j + 1)) for i in range(side) for j in range(side)]
    return points[:count]


def start_worker(bootstrap: str, redis_url: str, prefix: str, city: Path, workdir: Path) -> tuple[Any, int, Path]:
    port = free_port()
    env = {**os.environ, "CITYLOOP_KAFKA_BOOTSTRAP": bootstrap, "CITYLOOP_REDIS_URL": redis_url,
           "CITYLOOP_TOPIC_PREFIX": prefix, "CITYLOOP_WEB_PORT": str(port), "CITYLOOP_DATA_DIR": str(workdir),
           "CITYLOOP_CITY": str(city)}  # fmt: skip
    log = workdir / "worker.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker", "--loglevel", "warning"], cwd=ROOT,
                                   env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    return process, port, log


def wait_ready(process: Any, port: int, log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the worker exited with {process.returncode}; its log {log} ends:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if json.loads(response.read()).get("status") == "ready":
                    return
        except (OSError, ValueError, urllib.error.HTTPError):
            pass
        time.sleep(0.25)
    sys.exit(f"the worker was not ready within {timeout:g} s (log: {log})")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from selenium.webdriver.support.ui import WebDriverWait

    from dispatch import load_city_pack
    from dispatch.demo_city import bounds, write_demo_city
    from streams.api import create_api
    from streams.api.store import ApiStore
    from streams.ids import report_incident
    from streams.settings import load_settings
    from tests.browser.conftest import serving
    from tests.integration.api_helpers import OPEN311_KEY

    workdir = Path(tempfile.mkdtemp(prefix="cityloop-board-latency-"))
    city = write_demo_city(workdir / "city")
    pack = load_city_pack(city)
    points = grid(args.reports, bounds())
    total, pipeline, board = [], [], []
    with broker(args.kafka) as bootstrap, redis_server(args.redis) as redis_url:
        prefix = f"benchlat{uuid.uuid4().hex[:6]}"
        process, port, log = start_worker(bootstrap, redis_url, prefix, city, workdir)
        try:
            wait_ready(process, port, log)
            settings = load_settings(kafka_bootstrap=bootstrap, redis_url=redis_url, topic_prefix=prefix,
                                     city=str(city), open311_api_keys=OPEN311_KEY)  # fmt: skip
            token = asyncio.run(_token(redis_url, settings.redis_namespace, ApiStore))
            with serving(create_api(settings, pack)) as base, _chromium() as driver:
                driver.get(f"{base}/board#token={token}")
                WebDriverWait(driver, 60).until(
                    lambda d: d.execute_script("return performance.getEntriesByName('board-load').length")
                )
                ops = {"Authorization": f"Bearer {token}"}
                for n, (lat, lon) in enumerate(points):
                    time.sleep(args.interval)
                    form = {"api_key": OPEN311_KEY, "service_code": "pothole", "lat": str(lat), "long": str(lon),
                            "description": f"latency probe {n}"}  # fmt: skip
                    posted = time.time()
                    answer = httpx.post(f"{base}/open311/v2/requests.json", data=form, timeout=10)
                    answer.raise_for_status()
                    incident = report_incident(answer.json()[0]["service_request_id"])
                    selector = f'#list button[data-incident="{incident}"]'
                    WebDriverWait(driver, 30, poll_frequency=0.005).until(
                        lambda d, s=selector: d.execute_script(PRESENT, s)
                    )
                    shown = time.time()
                    order = httpx.get(f"{base}/ops/incidents/{incident}", headers=ops, timeout=10).json()["order"]
                    created = datetime.fromisoformat(order["created_at"].replace("Z", "+00:00")).timestamp()
                    total.append((shown - posted) * 1000)
                    pipeline.append((created - posted) * 1000)
                    board.append((shown - created) * 1000)
                    print(f"  report {n + 1}: {total[-1]:.0f} ms (pipeline {pipeline[-1]:.0f}, board {board[-1]:.0f})",
                          flush=True)  # fmt: skip
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    return {"reports": args.reports, "interval_s": args.interval, "total_ms": _summary(total),
            "pipeline_ms": _summary(pipeline), "board_ms": _summary(board)}  # fmt: skip


class _chromium:
    def __enter__(self) -> Any:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        from tests.browser.conftest import OFFLINE, executables

        binary, driver_path = executables()
        if not (binary and driver_path):
            sys.exit("Chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver)")
        options = webdriver.ChromeOptions()
        options.binary_location = binary
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", OFFLINE):  # fmt: skip
            options.add_argument(argument)
        self.driver = webdriver.Chrome(service=Service(driver_path), options=options)
        return self.driver

    def __exit__(self, *exc: object) -> None:
        self.driver.quit()


async def _token(url: str, namespace: str, store: Any) -> str:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        return str(
            await store(client, namespace).issue_token("ops-centre", "latency bench", datetime.now().astimezone())
        )
    finally:
        await client.aclose()


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"median": 0.0, "p95": 0.0, "min": 0.0, "max": 0.0}
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {
        "median": round(statistics.median(ordered), 1),
        "p95": round(p95, 1),
        "min": round(ordered[0], 1),
        "max": round(ordered[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--reports", type=int, default=30, help="reports to post, one at a time [30]")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between reports [1]")
    parser.add_argument("--kafka", help="a broker to use (default: a Tansu started for the run)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis to use if it answers [%(default)s]")
    args = parser.parse_args()
    if args.reports < 1 or args.interval < 0:
        parser.error("--reports must be at least 1 and --interval not negative")
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
