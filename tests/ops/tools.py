"""External tools the ops tests run (promtool, prometheus, amtool, docker-compose, kubectl).

.ci/run installs them from Debian's packages. Outside CI a test skips, naming the package, when a tool is truly
absent; in CI (CI=true) a missing tool fails the test instead, so a broken install step cannot hide as a skip.
"""

from __future__ import annotations

import os
import shutil

import pytest

PACKAGES = {"promtool": "prometheus", "prometheus": "prometheus", "amtool": "prometheus-alertmanager",
            "docker-compose": "docker-compose", "kubectl": "kubectl"}  # fmt: skip


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(tool: str) -> str:
    """The path of ``tool``; skip (or fail in CI) when it is not installed."""
    path = shutil.which(tool)
    if path:
        return path
    message = f"{tool} is not installed (Debian package {PACKAGES.get(tool, tool)}; .ci/run installs it)"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
