"""A unit's connector in the city pack: loaded when sound, refused in one line naming the key when not."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from dispatch import InvalidCityPack, load_city_pack
from tests.unit.dispatch.test_citypack import edit_city

HOOK = {"type": "webhook", "url": "https://works.example/cityloop", "secret_env": "ROADS_WEST_SECRET"}
O311 = {"type": "open311", "url": "https://works.example/open311/v2/", "api_key_env": "WORKS_O311_KEY",
        "service_codes": {"pothole": "PH"}}  # fmt: skip


@pytest.fixture
def pack_dir(demo_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "pack"
    shutil.copytree(demo_dir, target)
    return target


def test_a_webhook_connector_loads_with_its_defaults(pack_dir):
    """Only type, url and secret_env are needed; retries, back-off, breaker and what to send have defaults."""
    edit_city(
        pack_dir, lambda d: d["units"][5].update(connector=dict(HOOK, retry={"max_attempts": 3, "initial": "500ms"}))
    )
    unit = load_city_pack(pack_dir).spec.units[5]
    assert unit.connector is not None and unit.connector.type == "webhook"
    assert unit.connector.retry.max_attempts == 3 and unit.connector.retry.initial == timedelta(milliseconds=500)
    assert unit.connector.send == ["tasks", "events"]
    assert unit.connector.breaker.failures == 5


def test_an_open311_connector_loads_with_its_defaults(pack_dir):
    """type, url, api_key_env and a service code per category it takes; polled every minute by default."""
    edit_city(pack_dir, lambda d: d["units"][5].update(connector=O311))
    connector = load_city_pack(pack_dir).spec.units[5].connector
    assert connector is not None and connector.type == "open311"
    assert connector.url == "https://works.example/open311/v2" and connector.credential_env == "WORKS_O311_KEY"
    assert connector.poll_every == timedelta(minutes=1) and connector.status_notes.resolved is None


@pytest.mark.parametrize(
    ("connector", "key", "words"),
    [
        (dict(HOOK, type="carrier-pigeon"), "units.5.connector", "'carrier-pigeon'"),
        (dict(HOOK, url="ftp://works.example/in"), "units.5.connector.url", "is not an http:// or https:// URL"),
        (dict(HOOK, secret_env="roads-secret"), "units.5.connector.secret_env", "not an environment variable name"),
        (dict(HOOK, secret="hunter2"), "units.5.connector", "a secret does not belong in the pack"),
        ({k: v for k, v in HOOK.items() if k != "secret_env"}, "units.5.connector.secret_env", "Field required"),
        (dict(HOOK, retry={"initial": "10s", "max": "1s"}), "units.5.connector.retry", "must not be shorter"),
        (dict(HOOK, timeout="soon"), "units.5.connector.timeout", "expected a duration"),
        (dict(HOOK, headers={"Authorization": "Bearer x"}), "units.5.connector", "set by the connector"),
        (dict(HOOK, send=["gossip"]), "units.5.connector.send.0", "'tasks' or 'events'"),
        (dict(O311, api_key="hunter2"), "units.5.connector", "an api_key does not belong in the pack"),
        (dict(O311, api_key_env="key"), "units.5.connector.api_key_env", "not an environment variable name"),
        (dict(O311, service_codes={}), "units.5.connector.service_codes", "at least 1 item"),
        (dict(O311, service_codes={"pothole": " "}), "units.5.connector.service_codes", "must be 1-128 characters"),
        (
            dict(O311, service_codes={"potholes": "PH"}),
            "units.5.connector.service_codes",
            "unknown category 'potholes'",
        ),
        (
            dict(O311, status_notes={"resolved": "fixed("}),
            "units.5.connector.status_notes.resolved",
            "not a regular expression",
        ),
        (dict(O311, poll_every="0s"), "units.5.connector.poll_every", "must be positive"),
    ],
)
def test_a_broken_connector_is_refused_naming_the_key(pack_dir, connector, key, words):
    """Each mistake is one line: the file, the key path (without the union's tag) and the problem."""
    edit_city(pack_dir, lambda d: d["units"][5].update(connector=connector))
    with pytest.raises(InvalidCityPack) as caught:
        load_city_pack(pack_dir)
    assert caught.value.key == key, str(caught.value)
    assert words in caught.value.problem
    assert "\n" not in str(caught.value) and "Value error" not in str(caught.value)
