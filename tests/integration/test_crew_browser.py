"""The crew app in real headless Chromium on a phone-sized window (360 x 640), on a live stack.

A task dispatched to the unit appears without a reload with a visible notice; the crew acknowledges, starts and
resolves it from the page (each action with an Idempotency-Key); the task leaves the list and its order is resolved.
"""

from __future__ import annotations

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
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
        photo = form.find_element(By.NAME, "media_url")
        photo.send_keys("ftp://photos.example/p1.jpg")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        assert "http" in photo.get_attribute("validationMessage"), "only an http(s) photo URL is sent"
        assert form.is_displayed() and "state: in progress" in card(browser, task_id)[0].text
        photo.clear()
        photo.send_keys("https://photos.example/p1.jpg")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait(browser, 30).until(lambda d: not card(d, task_id))  # resolved: no longer the crew's to do

        order = httpx.get(f"{base}/ops/incidents/{incident}", headers=ops, timeout=10).json()["order"]
        assert order["state"] == "resolved" and order["resolution"]["note"] == "filled with cold asphalt"
        assert order["resolution"]["media_url"] == "https://photos.example/p1.jpg", order["resolution"]
        kinds = [entry.get("type") or entry.get("event") for entry in order["history"]]
        assert kinds.count("ack") == 1 and kinds.count("resolve") == 1, kinds
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 360, f"the page is {width} px wide on a 360 px screen"
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors


LOSE_ONE_ANSWER = """
    const send = window.fetch;
    window.sentKeys = [];
    window.fetch = async function (url, options) {
      const response = await send(url, options);
      if (options && options.method === "POST") {
        window.sentKeys.push(options.headers["Idempotency-Key"]);
        if (window.sentKeys.length === 1) throw new TypeError("Failed to fetch");
      }
      return response;
    };"""


def history_of(base: str, ops: dict, incident: str) -> tuple[dict, list[str]]:
    order = httpx.get(f"{base}/ops/incidents/{incident}", headers=ops, timeout=10).json()["order"]
    return order, [entry.get("type") or entry.get("event") for entry in order["history"]]


def keys(driver, *strokes: str) -> None:
    """Typed into whatever has the focus, as a crew with a keyboard (or a phone's "next" key) would."""
    for stroke in strokes:
        driver.switch_to.active_element.send_keys(stroke)


def unlabelled(driver) -> list[str]:
    """Controls in the list a screen reader could not name."""
    return driver.execute_script("""
        return Array.from(document.querySelectorAll('#tasks button, #tasks input, #tasks select, #tasks textarea,'
                                                    + ' #tasks summary'))
          .filter((c) => !(c.labels && c.labels.length) && !c.textContent.trim() && !c.getAttribute('aria-label'))
          .map((c) => c.outerHTML.slice(0, 80));""")


def test_a_dropped_action_is_pending_until_sent_again_and_applied_once_and_wait_resume_reject_work_by_keyboard(
    browser,  # noqa: F811 - the fixture imported above
    workers,
    bootstrap,
    redis_url,
    namespace,
    tmp_path,  # noqa: F811
):
    """Logged in by a ready link (the token leaves the address bar), offline, the crew acknowledges: the task shows
    the action pending, not confirmed; back online the page sends it again with the same Idempotency-Key, shows it
    confirmed, and the order has one ack. A start that reaches the API but whose answer is lost is sent again with
    the same key and applied once. Wait (reason from the in-page form), resume, and a reject with its reason
    code are done with the keyboard alone, on a 360 x 640 screen."""
    city = demo_pack(tmp_path / "city")
    workers.start(CITYLOOP_CITY=str(city))
    settings = api_settings(bootstrap, redis_url, namespace, city)
    token = issue_token(redis_url, namespace, "roads-west", holder="van 9")
    ops = {"Authorization": f"Bearer {issue_token(redis_url, namespace, 'ops-centre')}"}
    browser.set_window_size(360, 640)
    with serving(create_api(settings, load_city_pack(settings.city))) as base:
        browser.get(f"{base}/crew#token={token}")
        wait(browser, 20).until(lambda d: d.find_element(By.ID, "unit").text == "Roads crew West")
        assert browser.current_url == f"{base}/crew", "the ready link's token is taken off the address bar"
        assert browser.execute_script("return sessionStorage.getItem('cityloop.crew.token')") == token
        wait(browser, 20).until(lambda d: d.find_element(By.ID, "status").text == "live")

        incident = post(base, 1)
        task_id = incident.replace("inc-", "tsk-", 1) + "-1"
        wait(browser, 30).until(lambda d: card(d, task_id))
        details = card(browser, task_id)[0].find_element(By.CSS_SELECTOR, "details.more summary")
        details.send_keys(Keys.ENTER)  # place, reports and deadlines, opened from the keyboard
        wait(browser, 20).until(lambda d: "report 1 for the board" in card(d, task_id)[0].text)
        assert (
            "acknowledge by" in card(browser, task_id)[0].text
            and "at 51.99000, 5.06000" in card(browser, task_id)[0].text
        )

        browser.set_network_conditions(offline=True, latency=0, throughput=1024 * 1024)
        card(browser, task_id)[0].find_element(By.CSS_SELECTOR, '[data-action="ack"]').send_keys(Keys.ENTER)
        pending = wait(browser, 20).until(
            lambda d: "pending, not confirmed yet" in card(d, task_id)[0].text and card(d, task_id)[0]
        )
        assert "is-pending" in pending.get_attribute("class") and "state: dispatched" in pending.text
        assert not pending.find_element(By.CSS_SELECTOR, '[data-action="ack"]').is_enabled(), "no second ack"
        assert history_of(base, ops, incident)[0]["state"] == "dispatched", "nothing reached the API yet"
        browser.delete_network_conditions()
        wait(browser, 40).until(lambda d: "ack: confirmed" in card(d, task_id)[0].text)
        assert "state: acknowledged" in card(browser, task_id)[0].text
        assert "is-pending" not in card(browser, task_id)[0].get_attribute("class")
        assert history_of(base, ops, incident)[1].count("ack") == 1

        browser.execute_script(LOSE_ONE_ANSWER)  # "start" reaches the API, its answer does not reach the page
        keys(browser, Keys.ENTER)  # the focus stayed on the task: its first action, now "Start work"
        wait(browser, 40).until(lambda d: "start: confirmed" in card(d, task_id)[0].text)
        assert "state: in progress" in card(browser, task_id)[0].text
        sent = browser.execute_script("return window.sentKeys")
        assert len(sent) == 2 and sent[0] == sent[1], f"sent again with the same Idempotency-Key: {sent}"
        assert history_of(base, ops, incident)[1].count("start") == 1
        press(browser, task_id, "wait")
        form = card(browser, task_id)[0].find_element(By.CSS_SELECTOR, "form.wait")
        assert form.is_displayed() and browser.switch_to.active_element.get_attribute("name") == "need"
        keys(browser, "a photo", Keys.TAB, "of the hole by the kerb", Keys.TAB, Keys.ENTER)
        wait(browser, 30).until(lambda d: "state: waiting" in card(d, task_id)[0].text)
        assert "clock paused" in card(browser, task_id)[0].text
        press(browser, task_id, "resume")
        wait(browser, 30).until(lambda d: "state: in progress" in card(d, task_id)[0].text)
        order, kinds = history_of(base, ops, incident)
        waits = [entry for entry in order["history"] if (entry.get("type") or entry.get("event")) == "wait"]
        assert [entry.get("reason") for entry in waits] == ["a photo of the problem: of the hole by the kerb"], waits
        assert kinds.count("ack") == 1 and kinds.count("start") == 1 and kinds.count("resume") == 1, kinds

        other = post(base, 2, lat=52.01, lon=5.06)
        other_task = other.replace("inc-", "tsk-", 1) + "-1"
        wait(browser, 30).until(lambda d: card(d, other_task))
        assert not unlabelled(browser), unlabelled(browser)
        press(browser, other_task, "reject")
        assert browser.switch_to.active_element.get_attribute("name") == "reason_code"
        keys(browser, "wrong location", Keys.TAB, "it is on the canal path", Keys.TAB, Keys.ENTER)
        wait(browser, 30).until(lambda d: not card(d, other_task))  # no longer ours
        rejected, kinds = history_of(base, ops, other)
        assert kinds.count("reject") == 1, kinds
        assert [r["reason_code"] for r in rejected["rejections"]] == ["wrong_location"], rejected["rejections"]
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 360, f"the page is {width} px wide on a 360 px screen"
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]

        browser.get(f"{base}/board#token={ops['Authorization'].removeprefix('Bearer ')}")  # the ops centre's link
        wait(browser, 30).until(lambda d: d.find_element(By.ID, "board").is_displayed())
        assert browser.current_url == f"{base}/board", "the ready link's token is taken off the address bar"
        assert not [e for e in errors if "ERR_INTERNET_DISCONNECTED" not in e["message"]], errors
