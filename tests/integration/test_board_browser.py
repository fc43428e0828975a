"""The ops centre's board in real headless Chromium, on a live stack (broker, Redis, a worker, the API).

Reports posted through Open311 appear on the board without a reload; a triage decision turns the waiting item into
its order; a unit's token is refused. With CITYLOOP_WRITE_SCREENSHOTS=1 it writes the README's screenshot,
docs/board.png.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from dispatch import load_city_pack
from streams.api import create_api
from streams.ids import report_incident
from tests.browser.conftest import browser, chromium, serving  # noqa: F401 - fixtures used below
from tests.integration.api_helpers import OPEN311_KEY, api_settings, demo_pack, issue_token

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]


def row(driver, incident_id: str):
    return driver.find_elements(By.CSS_SELECTOR, f'#list button[data-incident="{incident_id}"]')


def log_in(driver, base: str, token: str) -> None:
    driver.get(f"{base}/board")
    field = WebDriverWait(driver, 20).until(expected_conditions.visibility_of_element_located((By.ID, "token")))
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()


def post(base: str, report: int, code: str = "pothole", lat: float = 51.99, lon: float = 5.06) -> str:
    form = {"api_key": OPEN311_KEY, "service_code": code, "lat": str(lat), "long": str(lon),
            "description": f"report {report} for the board"}  # fmt: skip
    answer = httpx.post(f"{base}/open311/v2/requests.json", data=form, timeout=10)
    assert answer.status_code == 201, answer.text
    return report_incident(answer.json()[0]["service_request_id"])


def test_the_board_shows_new_incidents_live_and_refuses_a_units_token(
    browser,  # noqa: F811 - the fixture imported above
    workers,
    bootstrap,
    redis_url,
    namespace,
    tmp_path,
):
    city = demo_pack(tmp_path / "city")
    workers.start(CITYLOOP_CITY=str(city), CITYLOOP_TRIAGE_THRESHOLD="0.99")
    settings = api_settings(bootstrap, redis_url, namespace, city)
    ops_token = issue_token(redis_url, namespace, "ops-centre", holder="ana")
    unit_token = issue_token(redis_url, namespace, "roads-west")
    with serving(create_api(settings, load_city_pack(settings.city))) as base:
        log_in(browser, base, unit_token)
        error = WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "login-error").text or None)
        assert error == "this token is not the ops centre's"
        assert browser.find_element(By.ID, "board").get_attribute("hidden") is not None
        browser.get_log("browser")  # the refused token's 403 is expected: the checks below start after it

        first = post(base, 1)
        log_in(browser, base, ops_token)
        WebDriverWait(browser, 30).until(lambda d: row(d, first))  # an incident opened before the board loaded
        assert browser.execute_script("return performance.getEntriesByName('board-first-render').length") == 1
        assert len(browser.find_elements(By.CSS_SELECTOR, "#map path.leaflet-interactive")) >= 2, "the city's areas"

        posted = time.monotonic()
        second = post(base, 2, code="graffiti", lat=51.985, lon=5.07)
        WebDriverWait(browser, 30).until(lambda d: row(d, second))  # pushed over the feed, no reload
        print(f"report -> on the board: {time.monotonic() - posted:.2f} s")
        label = row(browser, second)[0].text
        assert "Graffiti" in label and "on time" in label

        odd = post(base, 3, code="litter", lat=51.98, lon=5.05)  # Open311 with a code: dispatched at once
        WebDriverWait(browser, 30).until(lambda d: row(d, odd))
        ops = {"Authorization": f"Bearer {ops_token}"}
        cancelled = httpx.post(f"{base}/ops/orders/{odd}/cancel", headers=ops, json={"reason": "cleared"}, timeout=10)
        assert cancelled.status_code == 200
        WebDriverWait(browser, 30).until(lambda d: not row(d, odd))  # a finished order leaves the board live

        count = browser.find_element(By.ID, "count").text
        assert count.startswith("2 of 2 open incidents"), count
        browser.find_element(By.ID, "q").send_keys("graffiti")
        WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "count").text.startswith("1 of 2"))
        assert row(browser, second) and not row(browser, first)
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
        assert browser.find_element(By.ID, "login").is_displayed() is False
        if os.environ.get("CITYLOOP_WRITE_SCREENSHOTS") == "1":
            search = browser.find_element(By.ID, "q")
            search.send_keys(Keys.CONTROL, "a")
            search.send_keys(Keys.DELETE)
            WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "count").text.startswith("2 of 2"))
            browser.save_screenshot(str(ROOT / "docs" / "board.png"))
