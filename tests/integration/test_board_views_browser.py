"""The board's SLA and sensors views in real headless Chromium, on a live stack (broker, Redis, a worker, the API).

Orders of two field teams of one department (one of them overdue on a 3 s acknowledge SLA), an alarm of the water
board and a report waiting for triage: the SLA view counts each unit and department by state, worst first, live, and
a department's row lists only its incidents. The sensors view shows a sensor's newest reading and opens its alarm's
incident. The views are reached from the keyboard.
"""

from __future__ import annotations

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from dispatch import load_city_pack
from streams.api import create_api
from streams.ids import report_incident
from tests.browser.conftest import browser, chromium, serving  # noqa: F401 - fixtures used below
from tests.integration.api_helpers import api_settings, issue_token, send_readings, send_unsure_report
from tests.integration.loop import short_sla_city
from tests.integration.test_board_browser import log_in, post, row, row_text, wait

pytestmark = [pytest.mark.integration]


def counts(driver, table: str, unit_id: str) -> tuple[str, ...] | None:
    """(name, overdue, at risk, on time, open) of a row of an SLA table, as the page shows them."""
    rows = driver.find_elements(By.CSS_SELECTOR, f'#{table} tbody tr[data-id="{unit_id}"]')
    if not rows:
        return None
    return tuple(cell.text for cell in rows[0].find_elements(By.CSS_SELECTOR, "th, td"))


def order_of(driver, table: str) -> list[str]:
    return [r.get_attribute("data-id") for r in driver.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr")]


def test_the_sla_view_counts_units_and_departments_and_the_sensors_view_shows_readings_and_alarms(
    browser,  # noqa: F811 - the fixture imported above
    workers,
    bootstrap,
    redis_url,
    namespace,
    tmp_path,
):
    city = short_sla_city(tmp_path / "city", {"litter": ("0.05m", "1h", "1h")})
    workers.start(CITYLOOP_CITY=str(city), CITYLOOP_TRIAGE_THRESHOLD="0.99")
    settings = api_settings(bootstrap, redis_url, namespace, city)
    ops_token = issue_token(redis_url, namespace, "ops-centre", holder="ana")
    ops = {"Authorization": f"Bearer {ops_token}"}
    with serving(create_api(settings, load_city_pack(settings.city))) as base:
        pothole = post(base, 1)  # roads-west, of public-works: on time
        litter = post(base, 2, code="litter", lat=51.985, lon=5.05)  # cleansing-south, of public-works: red in 3 s
        send_unsure_report(bootstrap, namespace)
        send_readings(bootstrap, namespace, ("gauge-a", "noise_level", 60.0, 51.97, 5.04, 120),
                      ("gauge-b", "water_level", 12.0, 51.99, 5.06, 120),
                      ("gauge-b", "water_level", 41.5, 51.99, 5.06, 60))  # fmt: skip
        log_in(browser, base, ops_token)
        wait(browser, 30).until(lambda d: row(d, pothole) and row(d, litter) and row(d, report_incident("odd-1")))
        wait(browser, 30).until(lambda d: "overdue" in row_text(d, litter))
        wait(browser, 30).until(lambda d: d.find_element(By.ID, "count").text.startswith("4 of 4"))  # and the alarm

        sla_tab = browser.find_element(By.ID, "tab-sla")
        sla_tab.click()
        assert sla_tab.get_attribute("aria-selected") == "true"
        assert browser.find_element(By.ID, "view-incidents").is_displayed() is False
        wait(browser, 10).until(lambda d: counts(d, "sla-units", "cleansing-south"))
        assert counts(browser, "sla-units", "cleansing-south") == ("Cleansing team South", "1", "0", "0", "1")
        assert counts(browser, "sla-units", "roads-west") == ("Roads crew West", "0", "0", "1", "1")
        assert counts(browser, "sla-departments", "public-works") == ("Public Works Department", "1", "0", "1", "2")
        assert counts(browser, "sla-departments", "water-board") == ("Water Board", "0", "0", "1", "1")
        assert order_of(browser, "sla-departments") == ["public-works", "water-board"], "worst first"
        assert order_of(browser, "sla-units")[0] == "cleansing-south"
        label = browser.find_element(By.CSS_SELECTOR, '#sla-units tr[data-id="cleansing-south"] td[data-level="red"]')
        assert label.get_attribute("aria-label") == "1 overdue", "the state is said in words, not by colour alone"
        assert browser.find_element(By.ID, "sla-triage").text.startswith("1 report waits for triage")

        sla_tab.send_keys(Keys.ARROW_RIGHT)  # the tabs from the keyboard: to the sensors
        sensors_tab = browser.find_element(By.ID, "tab-sensors")
        assert sensors_tab.get_attribute("aria-selected") == "true"
        assert browser.switch_to.active_element == sensors_tab
        gauge = wait(browser, 20).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, '#sensors tr[data-sensor="gauge-b"] button[data-incident]')
        )
        alarm = httpx.get(f"{base}/ops/sensors", headers=ops, timeout=10).json()["sensors"][0]
        assert alarm["sensor_id"] == "gauge-b" and alarm["open_alarms"]
        assert gauge[0].get_attribute("data-incident") == alarm["open_alarms"][0]
        reading = browser.find_element(By.CSS_SELECTOR, '#sensors tr[data-sensor="gauge-b"]').text
        assert "41.5 cm" in reading and "water level" in reading and "out of range" in reading
        quiet = browser.find_element(By.CSS_SELECTOR, '#sensors tr[data-sensor="gauge-a"]').text
        assert "60 dBA" in quiet and "none" in quiet
        rows = browser.find_elements(By.CSS_SELECTOR, "#sensors tbody tr")
        assert [r.get_attribute("data-sensor") for r in rows] == ["gauge-b", "gauge-a"], "open alarms first"
        gauge[0].click()  # the alarm's incident in the panel
        wait(browser, 20).until(lambda d: "Flooding" in d.find_element(By.ID, "panel-title").text)
        browser.find_element(By.ID, "panel-close").click()

        browser.find_element(By.ID, "tab-sla").click()
        browser.find_element(By.CSS_SELECTOR, '#sla-departments tr[data-id="public-works"] th button').click()
        assert browser.find_element(By.ID, "tab-incidents").get_attribute("aria-selected") == "true"
        assert browser.find_element(By.ID, "f-department").get_attribute("value") == "public-works"
        wait(browser, 10).until(lambda d: d.find_element(By.ID, "count").text.startswith("2 of 4"))
        assert row(browser, pothole) and row(browser, litter) and not row(browser, report_incident("odd-1"))
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
