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
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from dispatch import load_city_pack
from streams.api import create_api
from streams.ids import report_incident
from tests.browser.conftest import browser, chromium, serving  # noqa: F401 - fixtures used below
from tests.integration.api_helpers import OPEN311_KEY, api_settings, demo_pack, issue_token, send_unsure_report

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]


def wait(driver, seconds: float) -> WebDriverWait:
    """WebDriverWait that looks again when the list was redrawn under it (a live page redraws often)."""
    return WebDriverWait(driver, seconds, ignored_exceptions=(StaleElementReferenceException,))


def row(driver, incident_id: str):
    return driver.find_elements(By.CSS_SELECTOR, f'#list button[data-incident="{incident_id}"]')


def click_row(driver, incident_id: str) -> None:
    """Click the incident's row, looking again if the list was redrawn between finding it and clicking."""

    def clicked(d) -> bool:
        rows = row(d, incident_id)
        if rows:
            rows[0].click()
        return bool(rows)

    wait(driver, 20).until(clicked)


def row_text(driver, incident_id: str) -> str:
    """The incident's row as read in one look ("" when it is not listed): the list may be redrawn between two."""
    rows = row(driver, incident_id)
    return rows[0].text if rows else ""


def log_in(driver, base: str, token: str) -> None:
    driver.get(f"{base}/board")
    field = wait(driver, 20).until(expected_conditions.visibility_of_element_located((By.ID, "token")))
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
        error = wait(browser, 20).until(lambda d: d.find_element(By.ID, "login-error").text or None)
        assert error == "this token is not the ops centre's"
        assert browser.find_element(By.ID, "board").get_attribute("hidden") is not None
        browser.get_log("browser")  # the refused token's 403 is expected: the checks below start after it

        first = post(base, 1)
        log_in(browser, base, ops_token)
        wait(browser, 30).until(lambda d: row(d, first))  # an incident opened before the board loaded
        assert browser.execute_script("return performance.getEntriesByName('board-first-render').length") == 1
        assert len(browser.find_elements(By.CSS_SELECTOR, "#map path.leaflet-interactive")) >= 2, "the city's areas"

        posted = time.monotonic()
        second = post(base, 2, code="graffiti", lat=51.985, lon=5.07)
        wait(browser, 30).until(lambda d: row(d, second))  # pushed over the feed, no reload
        print(f"report -> on the board: {time.monotonic() - posted:.2f} s")
        label = row_text(browser, second)
        assert "Graffiti" in label and "on time" in label

        odd = post(base, 3, code="litter", lat=51.98, lon=5.05)  # Open311 with a code: dispatched at once
        wait(browser, 30).until(lambda d: row(d, odd))
        click_row(browser, odd)  # the incident panel: its clocks, its timeline, the ops actions
        wait(browser, 20).until(lambda d: "dispatched" in d.find_element(By.ID, "panel-history").text)
        assert "acknowledge" in browser.find_element(By.ID, "panel-clocks").text
        form = browser.find_element(By.ID, "panel-action")
        Select(form.find_element(By.NAME, "action")).select_by_value("cancel")
        form.find_element(By.NAME, "reason").send_keys("cleared by a passer-by")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait(browser, 30).until(lambda d: d.find_element(By.ID, "panel-result").text == "cancel: cancelled")
        wait(browser, 30).until(lambda d: not row(d, odd))  # a finished order leaves the board live

        send_unsure_report(bootstrap, namespace)
        waiting = report_incident("odd-1")
        wait(browser, 30).until(lambda d: row(d, waiting))
        assert "waiting for triage" in row_text(browser, waiting)
        click_row(browser, waiting)
        choices = wait(browser, 20).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#panel-triage button[data-decide]")
        )
        assert 1 <= len(choices) <= 3, "the model's top three, one click each"
        chosen = choices[0].get_attribute("data-decide")
        choices[0].click()
        wait(browser, 30).until(lambda d: (text := row_text(d, waiting)) and "waiting for triage" not in text)
        ops = {"Authorization": f"Bearer {ops_token}"}
        decided = httpx.get(f"{base}/ops/incidents/{waiting}", headers=ops, timeout=10).json()["order"]
        assert decided["category"] == chosen

        browser.find_element(By.ID, "panel-close").click()
        count = browser.find_element(By.ID, "count").text
        assert count.startswith("3 of 3 open incidents"), count
        browser.find_element(By.ID, "q").send_keys("graffiti")
        wait(browser, 10).until(lambda d: d.find_element(By.ID, "count").text.startswith("1 of 3"))
        assert row(browser, second) and not row(browser, first)
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
        assert browser.find_element(By.ID, "login").is_displayed() is False
        if os.environ.get("CITYLOOP_WRITE_SCREENSHOTS") == "1":
            search = browser.find_element(By.ID, "q")
            search.send_keys(Keys.CONTROL, "a")
            search.send_keys(Keys.DELETE)
            wait(browser, 10).until(lambda d: d.find_element(By.ID, "count").text.startswith("3 of 3"))
            browser.find_element(By.ID, "whole-city").click()  # choosing an incident zoomed the map onto it
            browser.save_screenshot(str(ROOT / "docs" / "board.png"))
