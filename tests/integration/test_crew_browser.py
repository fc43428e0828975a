"""The crew app in real headless Chromium on a phone-sized window (360 x 640), on a live stack.

A task dispatched to the unit appears without a reload with a visible notice; the crew acknowledges, starts and
resolves it from the page (each action with an Idempotency-Key); the task leaves the list and its order is resolved.
"""

from __future__ import annotations

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions

from dispatch import load_city_pack
from streams.api import create_api
from tests.browser.conftest import browser, chromium, serving  # noqa: F401 - fixtures used below
from tests.integration.api_helpers import api_settings, demo_pack, issue_token
from tests.integration.test_board_browser import post, wait

pytestmark = [pytest.mark.integration]


def card(driver, task_id: str):
    return driver.find_elements(By.CSS_SELECTOR, f'li.task[data-task="{task_id}"]')


def press(driver, task_id: str, action: str) -> None:
    wait(driver, 30).until(
        lambda d: (
            card(d, task_id)
            and card(d, task_id)[0].find_elements(By.CSS_SELECTOR, f'[data-action="{action}"]')
            and card(d, task_id)[0].find_element(By.CSS_SELECTOR, f'[data-action="{action}"]').is_enabled()
        )
    )
    card(driver, task_id)[0].find_element(By.CSS_SELECTOR, f'[data-action="{action}"]').click()


def test_a_crew_gets_its_task_live_and_works_it_from_a_phone(browser, workers, bootstrap, redis_url, namespace,  # noqa: F811
                                                             tmp_path):  # fmt: skip
    city = demo_pack(tmp_path / "city")
    workers.start(CITYLOOP_CITY=str(city))
    settings = api_settings(bootstrap, redis_url, namespace, city)
    token = issue_token(redis_url, namespace, "roads-west", holder="van 7")
    ops = {"Authorization": f"Bearer {issue_token(redis_url, namespace, 'ops-centre')}"}
    browser.set_window_size(360, 640)
    with serving(create_api(settings, load_city_pack(settings.city))) as base:
        browser.get(f"{base}/crew")
        wait(browser, 20).until(expected_conditions.visibility_of_element_located((By.ID, "token")))
        browser.find_element(By.ID, "token").send_keys(token)
        browser.find_element(By.CSS_SELECTOR, "#login button").click()
        wait(browser, 20).until(lambda d: d.find_element(By.ID, "unit").text == "Roads crew West")
        wait(browser, 20).until(lambda d: d.find_element(By.ID, "status").text == "live")

        incident = post(base, 1)
        task_id = incident.replace("inc-", "tsk-", 1) + "-1"
        wait(browser, 30).until(lambda d: card(d, task_id))  # pushed, no reload
        notice = browser.find_element(By.ID, "notice")
        assert notice.is_displayed() and notice.text.startswith("New task: pothole")
        assert "acknowledge within" in card(browser, task_id)[0].text

        press(browser, task_id, "ack")
        wait(browser, 30).until(lambda d: "state: acknowledged" in card(d, task_id)[0].text)
        press(browser, task_id, "start")
        wait(browser, 30).until(lambda d: "state: in progress" in card(d, task_id)[0].text)
        press(browser, task_id, "resolve")
        form = card(browser, task_id)[0].find_element(By.CSS_SELECTOR, "form.resolve")
        form.find_element(By.NAME, "note").send_keys("filled with cold asphalt")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait(browser, 30).until(lambda d: not card(d, task_id))  # resolved: no longer the crew's to do

        order = httpx.get(f"{base}/ops/incidents/{incident}", headers=ops, timeout=10).json()["order"]
        assert order["state"] == "resolved" and order["resolution"]["note"] == "filled with cold asphalt"
        kinds = [entry.get("type") or entry.get("event") for entry in order["history"]]
        assert kinds.count("ack") == 1 and kinds.count("resolve") == 1, kinds
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 360, f"the page is {width} px wide on a 360 px screen"
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
