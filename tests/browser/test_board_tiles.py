"""A city that runs its own tile server names it (CITYLOOP_MAP_TILES): the board draws its tiles under the city's
areas with the attribution its licence asks for, and the page's Content-Security-Policy lets images come from that
host and no other. Without the setting nothing is fetched from anywhere but the API."""

from __future__ import annotations

import base64
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import fakeredis
import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.conftest import Writer, serving

# a 1x1 PNG, served for every tile
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


class Tiles(BaseHTTPRequestHandler):
    asked: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        Tiles.asked.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(PNG)))
        self.end_headers()
        self.wfile.write(PNG)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tile_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Tiles)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Tiles.asked = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def board_app(tmp_path: Path, **settings):
    from dispatch import load_city_pack
    from dispatch.demo_city import write_demo_city
    from streams.api import create_api
    from streams.api.store import ApiStore
    from streams.settings import load_settings

    pack = load_city_pack(write_demo_city(tmp_path / "city"))
    config = load_settings(**settings)
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    app = create_api(config, pack, redis_client=client, writer=Writer())
    return app, lambda: ApiStore(client, config.redis_namespace)


def test_the_board_draws_the_citys_own_tiles_and_allows_images_from_that_host_only(browser, tmp_path, tile_server):
    import asyncio
    from datetime import UTC, datetime

    app, store = board_app(tmp_path, map_tiles=f"{tile_server}/{{z}}/{{x}}/{{y}}.png",
                           map_attribution="Tiles: Lindenhaven survey office <licence>")  # fmt: skip
    with serving(app) as base:
        token = asyncio.run(store().issue_token("ops-centre", "test", datetime.now(UTC)))
        csp = httpx.get(f"{base}/board", timeout=10).headers["content-security-policy"]
        assert f"img-src 'self' data: {tile_server};" in csp
        browser.get(f"{base}/board#token={token}")
        WebDriverWait(browser, 30).until(
            lambda d: d.execute_script("return document.querySelectorAll('img.leaflet-tile-loaded').length") > 0
        )
        assert Tiles.asked and all(path.endswith(".png") for path in Tiles.asked)
        attribution = browser.find_element(By.CSS_SELECTOR, ".leaflet-control-attribution").text
        assert attribution == "Tiles: Lindenhaven survey office <licence>", "shown as text, not as markup"
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors


def test_without_a_tile_server_the_board_asks_no_one_for_tiles(browser, tmp_path, tile_server):
    import asyncio
    from datetime import UTC, datetime

    app, store = board_app(tmp_path)
    with serving(app) as base:
        token = asyncio.run(store().issue_token("ops-centre", "test", datetime.now(UTC)))
        assert "img-src 'self' data:;" in httpx.get(f"{base}/board", timeout=10).headers["content-security-policy"]
        browser.get(f"{base}/board#token={token}")
        WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#map path.leaflet-interactive"))
        assert browser.execute_script("return document.querySelectorAll('img.leaflet-tile').length") == 0
        assert not browser.find_elements(By.CSS_SELECTOR, ".leaflet-control-attribution")
        assert Tiles.asked == []


@pytest.mark.parametrize(
    ("given", "why"),
    [("tiles.example.gov/{z}/{x}/{y}.png", "not an http(s) URL"), ("https://tiles.example.gov/{z}/{x}.png", "{y}")],
)
def test_a_tile_setting_that_is_not_a_template_is_refused_in_one_line(given, why):
    from pydantic import ValidationError

    from streams.settings import load_settings

    with pytest.raises(ValidationError, match="not a tile URL template") as caught:
        load_settings(map_tiles=given)
    assert why in str(caught.value)


def test_subdomain_tiles_allow_any_subdomain_of_that_host_only():
    from streams.settings import load_settings

    settings = load_settings(map_tiles="https://{s}.tiles.example.gov/{z}/{x}/{y}.png")
    assert settings.map_tiles_origin == "https://*.tiles.example.gov"
    assert load_settings().map_tiles_origin is None
