"""/docs, the OpenAPI explorer, works on a closed network: every file it loads comes from the API itself."""

from __future__ import annotations

import httpx
import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait


def test_the_openapi_explorer_renders_offline_from_files_the_api_ships(browser, api_url):
    browser.get(f"{api_url}/docs")
    WebDriverWait(browser, 20).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))
    operations = browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    paths = {element.get_attribute("data-path") for element in operations}
    assert {"/open311/v2/requests.json", "/units/me/tasks", "/ops/triage"} <= paths
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(name.startswith(api_url) for name in loaded), loaded
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors


def test_pages_forbid_inline_and_foreign_scripts(api_url):
    page = httpx.get(f"{api_url}/docs")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert "<script>" not in page.text, "no inline script: every script is a file the API serves"
    assert httpx.get(f"{api_url}/redoc").status_code == 404, "ReDoc loads from a CDN: it is not offered"


def test_the_offline_browser_really_is_offline(browser):
    """The check above could pass by luck if the browser reached a CDN: show that it cannot."""
    with pytest.raises(WebDriverException, match="ERR_NAME_NOT_RESOLVED"):
        browser.get("https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css")
