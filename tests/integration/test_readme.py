"""The README's first command works on a fresh machine: from a clean clone, with the default (relative) data dir and
no Redis where it looks, it installs CityLoop, runs the demo and leaves nothing behind.

This is the command a new user types first, so it runs as written (a new virtualenv, `pip install` from the project's
own files), only shortened with `--duration`. It clones the repository's HEAD: commit before running it locally.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import free_port
from tests.integration.test_demo import alive

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    """The README's code blocks that come before its first heading: the install-and-demo and the test command."""
    intro = (REPO / "README.md").read_text(encoding="utf-8").split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```\n(.*?)\n```", intro, re.S)]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def fresh_environment() -> dict[str, str]:
    """This machine's environment without this test run's virtualenv or any CityLoop setting."""
    venv_bin = str(Path(sys.prefix) / "bin")
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin)
    drop = ("CITYLOOP_", "VIRTUAL_ENV", "PYTHONPATH", "PYTEST_")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(drop)}, "PATH": path}


def test_the_readme_starts_with_the_two_commands():
    install_and_demo, tests = readme_commands()[:2]
    assert install_and_demo.endswith("cityloop demo") and "pip install" in install_and_demo
    assert tests.endswith("python -m pytest")


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs a git checkout")
def test_the_readme_first_command_runs_the_demo_from_a_clean_clone_and_leaves_nothing_behind(tmp_path):
    install_and_demo = readme_commands()[0]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    redis_port = free_port()
    assert not listening(redis_port)
    env = {**fresh_environment(), "CITYLOOP_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"}
    ports = [] if not (listening(6066) or listening(8080)) else ["--web-port", str(free_port()), "--api-port",
                                                                  str(free_port())]  # fmt: skip
    command = " ".join([install_and_demo, "--duration", "8", "--json", "summary.json", *ports])
    result = subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True, timeout=1200)
    output = result.stdout
    assert result.returncode == 0, (output + result.stderr)[-4000:]

    demo = output[output.index("cityloop demo: ") :].splitlines()
    assert demo[0] == "cityloop demo: 8 s of a simulated city on this machine; Ctrl-C stops it all"
    assert f"  redis    none answers at redis://127.0.0.1:{redis_port}/0" in demo
    assert "summary of 8 s" in demo and any("unexplained losses: 0" in line for line in demo)
    logs = clone / ".cityloop" / "logs"
    assert demo[-1] == f"stopped everything the demo started; logs in {logs}"

    summary = json.loads((clone / "summary.json").read_text())
    assert summary["tasks"] > 0 and summary["reports_unaccounted"] == 0
    assert not [pid for pid in summary["started_pids"] if alive(pid)], "the demo left processes behind"
    assert not listening(redis_port), "nothing was started on the Redis port it was given"
    left = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=clone, capture_output=True, text=True)
    entries = {line[3:] for line in left.stdout.splitlines()}
    assert entries <= {".venv/", ".cityloop/", "cityloop.egg-info/", "summary.json"}, entries
    assert sorted(p.name for p in (clone / ".cityloop").iterdir()) == ["logs", "worker"]
    assert sorted(p.name for p in logs.iterdir() if p.name.endswith("-redis.log")), "the embedded Redis logged here"
