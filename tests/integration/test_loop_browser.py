"""The whole loop across the two faces, in one headless Chromium with two tabs, on a live stack.

The ops centre decides a waiting report on the board with one click; the chosen unit's crew app, open in the
other tab since before the decision, shows the task without a reload; the crew acknowledges, starts and resolves
it; the board, never reloaded, shows the incident resolved by that unit, and its panel says why the unit got it.
"""

from __future__ import annotations

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions

from dispatch import Dispatcher, load_city_pack
from streams.api import create_api
from streams.ids import report_incident, task_id_for
from tests.browser.conftest import browser, chromium, serving  # noqa: F401 - fixtures used below
from tests.integration.api_helpers import api_settings, demo_pack, issue_token, send_unsure_report
from tests.integration.test_board_browser import click_row, log_in, row, row_text, wait

pytestmark = [pytest.mark.integration]


def task_card(driver, task_id: str):
    return driver.find_elements(By.CSS_SELECTOR, f'li.task[data-task="{task_id}"]')


def crew_press(driver, task_id: str, action: str) -> None:
    def ready(d):
        cards = task_card(d, task_id)
        buttons = cards[0].find_elements(By.CSS_SELECTOR, f'[data-action="{action}"]') if cards else []
        return buttons[0] if buttons and buttons[0].is_enabled() else None

    wait(driver, 30).until(ready).click()


def test_a_triage_decision_reaches_the_crew_live_and_the_crews_resolve_reaches_the_board(
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
    pack = load_city_pack(settings.city)
    ops_token = issue_token(redis_url, namespace, "ops-centre", holder="ana")
    with serving(create_api(settings, pack)) as base:
        board = browser.current_window_handle
        log_in(browser, base, ops_token)
        report = send_unsure_report(bootstrap, namespace)
        waiting = report_incident(report["report_id"])
        wait(browser, 30).until(lambda d: row(d, waiting))
        click_row(browser, waiting)
        choices = wait(browser, 20).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#panel-triage button[data-decide]")
        )
        category = choices[0].get_attribute("data-decide")
        unit = Dispatcher(pack).assign(category, report["lat"], report["lon"]).unit_id  # whose crew should hear

        browser.switch_to.new_window("tab")  # that unit's crew app, open before the decision
        crew = browser.current_window_handle
        browser.get(f"{base}/crew")
        wait(browser, 20).until(expected_conditions.visibility_of_element_located((By.ID, "token")))
        browser.find_element(By.ID, "token").send_keys(issue_token(redis_url, namespace, unit, holder="van 3"))
        browser.find_element(By.CSS_SELECTOR, "#login button").click()
        wait(browser, 20).until(lambda d: d.find_element(By.ID, "status").text == "live")
        task_id = task_id_for(waiting)
        assert not task_card(browser, task_id)

        browser.switch_to.window(board)
        choices[0].click()  # one click: the report becomes an order of that category
        wait(browser, 30).until(lambda d: (text := row_text(d, waiting)) and "waiting for triage" not in text)

        browser.switch_to.window(crew)
        wait(browser, 30).until(lambda d: task_card(d, task_id))  # pushed to the crew, no reload
        task_card(browser, task_id)[0].find_element(By.CSS_SELECTOR, "details.more summary").click()
        wait(browser, 20).until(lambda d: report["text"] in task_card(d, task_id)[0].text)  # sent to Kafka, not Open311
        for action in ("ack", "start"):
            crew_press(browser, task_id, action)
        crew_press(browser, task_id, "resolve")
        form = task_card(browser, task_id)[0].find_element(By.CSS_SELECTOR, "form.resolve")
        form.find_element(By.NAME, "note").send_keys("paint removed")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait(browser, 30).until(lambda d: not task_card(d, task_id))

        browser.switch_to.window(board)
        unit_name = next(u.name for u in pack.spec.units if u.id == unit)
        wait(browser, 30).until(lambda d: "resolved" in row_text(d, waiting))
        assert unit_name in row_text(browser, waiting)
        click_row(browser, waiting)
        wait(browser, 20).until(lambda d: "resolve" in d.find_element(By.ID, "panel-history").text)
        assert report["text"] in browser.find_element(By.ID, "panel-sources").text, "what the reporter said"
        why = browser.find_element(By.ID, "panel-why").text
        assert f"chosen: {unit_name}" in why and "rule " in why, why
        ops = {"Authorization": f"Bearer {ops_token}"}
        order = httpx.get(f"{base}/ops/incidents/{waiting}", headers=ops, timeout=10).json()["order"]
        assert (order["state"], order["unit_id"], order["category"]) == ("resolved", unit, category)
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
