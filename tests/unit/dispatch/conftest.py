from __future__ import annotations

from pathlib import Path

import pytest

from dispatch import CityPack, load_city_pack
from dispatch.demo_city import write_demo_city


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_city(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="session")
def demo_pack(demo_dir: Path) -> CityPack:
    return load_city_pack(demo_dir)
