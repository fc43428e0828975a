"""GET /units/me/city: what a crew's task map draws (the city pack's layers and its tile server), for any unit's
token and never without one; the ops centre's view of the other units and the categories stays at /ops/city.

The API runs in-process on an in-memory Redis and a writer that keeps nothing (no broker).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from fastapi.testclient import TestClient

from dispatch import CityPack, load_city_pack
from dispatch.demo_city import write_demo_city
from streams.api import create_api
from streams.api.store import ApiStore
from streams.settings import load_settings


class Writer:
    async def write(self, topic: str, key: str, record: dict[str, Any]) -> None:
        pass


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> CityPack:
    return load_city_pack(write_demo_city(Path(tmp_path_factory.mktemp("city")) / "demo-city"))


def serve(pack: CityPack, **settings: Any) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The API and a bearer header for each of: a crew (roads-west), the ops centre."""
    server = fakeredis.FakeServer()
    config = load_settings(**settings)
    app = create_api(config, pack, redis_client=fakeredis.FakeAsyncRedis(server=server), writer=Writer())

    async def issue(unit_id: str) -> str:
        client = fakeredis.FakeAsyncRedis(server=server)
        try:
            return await ApiStore(client, config.redis_namespace).issue_token(unit_id, "test", datetime.now(UTC))
        finally:
            await client.aclose()

    tokens = {unit: f"Bearer {asyncio.run(issue(unit))}" for unit in ("roads-west", "ops-centre")}
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, tokens


@pytest.fixture
def api(pack: CityPack) -> Iterator[tuple[TestClient, dict[str, str]]]:
    yield from serve(pack)


def test_a_crew_gets_the_citys_layers_and_nothing_of_the_ops_centres_view(api, pack: CityPack):
    client, tokens = api
    answer = client.get("/units/me/city", headers={"Authorization": tokens["roads-west"]})
    assert answer.status_code == 200, answer.text
    city = answer.json()
    assert set(city) == {"name", "version", "boundary", "layers", "tiles"}, "no units, no categories"
    assert city["tiles"] is None, "no tile server named: the areas only"
    assert set(city["layers"]) == set(pack.layers) == {"districts", "basins"}
    ops_view = client.get("/ops/city", headers={"Authorization": tokens["ops-centre"]}).json()
    assert city["layers"] == ops_view["layers"] and city["boundary"] == ops_view["boundary"]
    feature = city["layers"]["districts"]["features"][0]
    assert set(feature["properties"]) == {"id", "name"} and feature["geometry"]["type"] in ("Polygon", "MultiPolygon")


def test_it_needs_a_units_token_and_the_ops_centre_is_a_unit_too(api):
    client, tokens = api
    none = client.get("/units/me/city")
    assert none.status_code == 401 and none.headers["www-authenticate"] == "Bearer"
    assert client.get("/units/me/city", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    # the ops centre is the pack's fallback unit: its token opens every /units/me route for its own tasks
    ops = client.get("/units/me/city", headers={"Authorization": tokens["ops-centre"]})
    assert ops.status_code == 200 and "units" not in ops.json()
    assert client.get("/ops/city", headers={"Authorization": tokens["roads-west"]}).status_code == 403


def test_a_citys_tile_server_is_named_to_its_crews_and_the_crew_page_may_show_its_tiles(pack: CityPack):
    for client, tokens in serve(pack, map_tiles="https://tiles.example.gov/{z}/{x}/{y}.png", map_attribution="Survey"):
        city = client.get("/units/me/city", headers={"Authorization": tokens["roads-west"]}).json()
        assert city["tiles"] == {"url": "https://tiles.example.gov/{z}/{x}/{y}.png", "attribution": "Survey"}
        csp = client.get("/crew").headers["content-security-policy"]
        assert "img-src 'self' data: https://tiles.example.gov;" in csp, "the crew app's maps may show its tiles"
    for client, _ in serve(pack):
        assert "img-src 'self' data:;" in client.get("/crew").headers["content-security-policy"]
