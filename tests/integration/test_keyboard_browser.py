"""The board without a mouse, in real headless Chromium on a live stack: log in, reach an incident from the list,
act on it and close its panel with the keyboard alone; every control has a name a screen reader can say."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from dispatch import load_city_pack
from streams.api import create_api
from tests.browser.conftest import browser, chromium, serving  # noqa: F401 - fixtures used below
from tests.integration.api_helpers import api_settings, demo_pack, issue_token
from tests.integration.test_board_browser import post, row, wait

pytestmark = [pytest.mark.integration]

# every visible control without a name: a label, aria-label or aria-labelledby, or its text for a button or link
UNNAMED = """
const named = (el) => (el.labels && el.labels.length) || el.getAttribute("aria-label") ||
  el.getAttribute("aria-labelledby") || (/^(BUTTON|A)$/.test(el.tagName) && el.textContent.trim());
return Array.from(document.querySelectorAll("input, select, textarea, button, a[href]"))
  .filter((el) => el.offsetParent !== null && el.type !== "hidden" && !named(el))
  .map((el) => el.outerHTML.slice(0, 120));
"""


def focused(driver: WebDriver):
    return driver.switch_to.active_element


def tab_to(driver: WebDriver, wanted, limit: int = 60) -> int:
    """Press Tab until ``wanted(active element)`` holds; returns how many presses it took."""
    for presses in range(1, limit + 1):
        focused(driver).send_keys(Keys.TAB)
        if wanted(focused(driver)):
            return presses
    raise AssertionError(f"not reached with {limit} presses of Tab")


def test_the_board_works_from_the_keyboard_alone(browser, workers, bootstrap, redis_url, namespace, tmp_path):  # noqa: F811
    city = demo_pack(tmp_path / "city")
    workers.start(CITYLOOP_CITY=str(city))
    settings = api_settings(bootstrap, redis_url, namespace, city)
    token = issue_token(redis_url, namespace, "ops-centre", holder="keyboard user")
    with serving(create_api(settings, load_city_pack(settings.city))) as base:
        incident = post(base, 1, code="litter", lat=51.98, lon=5.05)
        browser.get(f"{base}/board")
        wait(browser, 20).until(lambda d: focused(d).get_attribute("id") == "token")  # the field has the focus
        assert browser.execute_script(UNNAMED) == [], "the login form"
        focused(browser).send_keys(token, Keys.ENTER)
        wait(browser, 30).until(lambda d: row(d, incident))

        presses = tab_to(browser, lambda el: el.get_attribute("data-incident") == incident)
        assert presses <= 20, f"{presses} presses of Tab from the login to the first incident"
        focused(browser).send_keys(Keys.ENTER)
        wait(browser, 20).until(lambda d: "dispatched" in d.find_element(By.ID, "panel-history").text)
        assert focused(browser).get_attribute("id") == "panel", "the panel takes the focus when it opens"
        assert browser.execute_script(UNNAMED) == [], "the board with its panel open"

        tab_to(browser, lambda el: el.get_attribute("name") == "action")
        focused(browser).send_keys("reopen")  # typing picks an option, as on any select
        assert focused(browser).get_attribute("value") == "reopen"
        focused(browser).send_keys(Keys.HOME)  # back to the first: "assign to a unit"
        assert focused(browser).get_attribute("value") == "assign"
        tab_to(browser, lambda el: el.get_attribute("name") == "unit_id")
        current = browser.execute_script("return arguments[0].selectedIndex", focused(browser))
        focused(browser).send_keys(Keys.ARROW_DOWN)
        unit = focused(browser).get_attribute("value")
        assert browser.execute_script("return arguments[0].selectedIndex", focused(browser)) == current + 1
        tab_to(browser, lambda el: el.get_attribute("name") == "reason")
        focused(browser).send_keys("their crew is nearer", Keys.ENTER)  # Enter in a field sends the form
        wait(browser, 30).until(lambda d: d.find_element(By.ID, "panel-result").text.startswith("assign: "))
        assert "refused" not in browser.find_element(By.ID, "panel-result").text
        wait(browser, 30).until(lambda d: unit in d.find_element(By.ID, "panel-summary").text or
                                any(u.id == unit and u.name in d.find_element(By.ID, "panel-summary").text
                                    for u in load_city_pack(settings.city).spec.units))  # fmt: skip

        focused(browser).send_keys(Keys.ESCAPE)
        wait(browser, 10).until(lambda d: d.find_element(By.ID, "panel").get_attribute("hidden") is not None)
        assert focused(browser).get_attribute("data-incident") == incident, "the focus goes back to its row"
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
