"""The browser libraries CityLoop ships, as published on the npm registry: which, at which version, and checked.

A city's operations network is often closed, so nothing the API's pages use is
fetched from the internet at run time: the built files of each library are
copied, unchanged, into ``streams/web/vendor/`` with their licence, and
``VENDOR.json`` records the package, its version, the registry's integrity hash
of the tarball and the SHA-256 of every file copied.

    python -m streams.web.vendor            # check the files against VENDOR.json
    python -m streams.web.vendor --update   # fetch the pinned versions with `npm pack` and copy them again
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VENDOR = Path(__file__).resolve().parent / "vendor"
MANIFEST = VENDOR / "VENDOR.json"

# package -> (version, {file in the tarball: path under vendor/})
PACKAGES: dict[str, tuple[str, dict[str, str]]] = {
    "leaflet": ("1.9.4", {
        "package/dist/leaflet.js": "leaflet/leaflet.js",
        "package/dist/leaflet.css": "leaflet/leaflet.css",
        "package/dist/images/layers.png": "leaflet/images/layers.png",
        "package/dist/images/layers-2x.png": "leaflet/images/layers-2x.png",
        "package/dist/images/marker-icon.png": "leaflet/images/marker-icon.png",
        "package/dist/images/marker-icon-2x.png": "leaflet/images/marker-icon-2x.png",
        "package/dist/images/marker-shadow.png": "leaflet/images/marker-shadow.png",
        "package/LICENSE": "leaflet/LICENSE",
    }),
    "leaflet.markercluster": ("1.5.3", {
        "package/dist/leaflet.markercluster.js": "leaflet.markercluster/leaflet.markercluster.js",
        "package/dist/MarkerCluster.css": "leaflet.markercluster/MarkerCluster.css",
        "package/dist/MarkerCluster.Default.css": "leaflet.markercluster/MarkerCluster.Default.css",
        "package/MIT-LICENCE.txt": "leaflet.markercluster/MIT-LICENCE.txt",
    }),
    "swagger-ui-dist": ("5.35.0", {
        "package/swagger-ui-bundle.js": "swagger-ui/swagger-ui-bundle.js",
        "package/swagger-ui-bundle.js.LICENSE.txt": "swagger-ui/swagger-ui-bundle.js.LICENSE.txt",
        "package/swagger-ui.css": "swagger-ui/swagger-ui.css",
        "package/favicon-32x32.png": "swagger-ui/favicon-32x32.png",
        "package/LICENSE": "swagger-ui/LICENSE",
        "package/NOTICE": "swagger-ui/NOTICE",
    }),
}  # fmt: skip


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check() -> list[str]:
    """What differs from the manifest: missing or changed files, packages not pinned here; empty when all is well."""
    manifest = json.loads(MANIFEST.read_text())
    problems = []
    for name, (version, files) in PACKAGES.items():
        entry = manifest.get(name)
        if entry is None or entry["version"] != version:
            problems.append(f"{name}: VENDOR.json has {entry and entry['version']}, this module pins {version}")
            continue
        for target in files.values():
            path = VENDOR / target
            if not path.is_file():
                problems.append(f"{target}: missing")
            elif sha256(path) != entry["files"].get(target):
                problems.append(f"{target}: not the file published in {name} {version}")
    return problems


def update() -> None:
    """Fetch each pinned package with `npm pack`, check the registry's integrity hash, copy its files."""
    manifest = {}
    with tempfile.TemporaryDirectory() as work:
        for name, (version, files) in PACKAGES.items():
            packed = subprocess.run(["npm", "pack", f"{name}@{version}", "--json"], cwd=work, check=True,
                                    capture_output=True, text=True)  # fmt: skip
            info = json.loads(packed.stdout)[0]
            tarball = Path(work) / info["filename"]
            algorithm, _, digest = info["integrity"].partition("-")
            actual = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
            if actual != digest:
                raise SystemExit(f"{name} {version}: the tarball does not match the registry's integrity hash")
            with tarfile.open(tarball) as archive:
                for member, target in files.items():
                    data = archive.extractfile(member)
                    assert data is not None, member
                    path = VENDOR / target
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data.read())
            manifest[name] = {"version": version, "integrity": info["integrity"],
                              "files": {target: sha256(VENDOR / target) for target in files.values()}}  # fmt: skip
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", action="store_true", help="fetch the pinned versions with npm and copy them")
    args = parser.parse_args(argv)
    if args.update:
        update()
    problems = check()
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{len(PACKAGES)} packages in {VENDOR} match VENDOR.json")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
