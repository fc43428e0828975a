"""Real headless Chromium (Debian's `chromium` and `chromium-driver`, driven by Selenium) against the API's pages.

The browser is cut off from the internet (every host name but 127.0.0.1 fails to resolve), as on a city's closed
operations network: a page that needs a CDN fails here. Without Chromium these tests skip, unless
CITYLOOP_TEST_REQUIRE_BROWSER=1 (CI) makes that a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"


def executables() -> tuple[str | None, str | None]:
    browser = os.environ.get("CITYLOOP_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get("CITYLOOP_CHROMEDRIVER") or shutil.which("chromedriver")
    return browser, driver


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    browser, driver = executables()
    if browser and driver:
        return browser, driver
    why = "Chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver)"
    if os.environ.get("CITYLOOP_TEST_REQUIRE_BROWSER") == "1":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture
def browser(chromium: tuple[str, str]) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = chromium
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--no-first-run", "--disable-extensions", OFFLINE):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Writer:
    """The API's Kafka writer, kept in memory: these tests look at pages, not at the pipeline."""

    def __init__(self) -> None:
        self.written: list[tuple[str, str, dict[str, Any]]] = []

    async def write(self, topic: str, key: str, record: dict[str, Any]) -> None:
        self.written.append((topic, key, record))


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """An ASGI app under uvicorn on a free loopback port, in a thread; its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the API did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def api_url(tmp_path: Path) -> Iterator[str]:
    """The API app with an in-memory Redis and writer: for pages that need no pipeline."""
    import fakeredis

    from dispatch import load_city_pack
    from dispatch.demo_city import write_demo_city
    from streams.api import create_api
    from streams.settings import load_settings

    pack = load_city_pack(write_demo_city(tmp_path / "city"))
    app = create_api(load_settings(), pack, redis_client=fakeredis.FakeAsyncRedis(), writer=Writer())
    with serving(app) as url:
        yield url
