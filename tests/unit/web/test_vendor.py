"""The browser libraries shipped in the package are the files published on the npm registry, with their licences."""

from __future__ import annotations

import shutil

from streams.web import vendor


def test_every_shipped_file_is_the_published_one_and_each_package_carries_its_licence():
    assert vendor.check() == []
    for _, files in vendor.PACKAGES.values():
        assert any("LICEN" in target for target in files.values())


def test_an_edited_file_is_caught(tmp_path, monkeypatch):
    copy = tmp_path / "vendor"
    shutil.copytree(vendor.VENDOR, copy)
    (copy / "leaflet" / "leaflet.js").write_text("window.L = 'patched';")
    monkeypatch.setattr(vendor, "VENDOR", copy)
    monkeypatch.setattr(vendor, "MANIFEST", copy / "VENDOR.json")
    assert vendor.check() == ["leaflet/leaflet.js: not the file published in leaflet 1.9.4"]
