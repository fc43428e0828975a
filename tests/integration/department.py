"""A department's own work-management system, played by a local HTTP server; and `cityloop connectors` to feed it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from dispatch.demo_city import write_demo_city
from tests.integration.conftest import free_port


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Department:
    """Answers POSTs on each path with its script of statuses first (``<path>#task``: for tasks only), then with
    its default (200 unless set)."""

    port: int = field(default_factory=free_port)
    scripts: dict[str, list[int]] = field(default_factory=dict)
    defaults: dict[str, int] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def delivered(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path and r.status < 300]

    def start(self) -> None:
        department = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                kind = json.loads(body).get("kind", "")
                script = department.scripts.get(f"{self.path}#{kind}") or department.scripts.get(self.path, [])
                status = script.pop(0) if script else department.defaults.get(self.path, 200)
                department.received.append(Received(self.path, dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def connected_city(root: Path, connectors: dict[str, dict[str, Any]]) -> Path:
    """The demo city with the given units served by connectors."""
    pack = write_demo_city(root)
    document = yaml.safe_load((pack / "city.yaml").read_text())
    for unit in document["units"]:
        if unit["id"] in connectors:
            unit["connector"] = connectors[unit["id"]]
    (pack / "city.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return pack


@dataclass
class ConnectorsProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def health(self) -> dict[str, Any] | None:
        status, text = self.get("/health")
        return json.loads(text) if status in (200, 503) and text else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_connectors(bootstrap: str, redis_url: str, namespace: str, city: Path, tmp: Path, **env: str,
                     ) -> ConnectorsProcess:  # fmt: skip
    port = free_port()
    log_path = tmp / "connectors.log"
    environment = {**os.environ, "CITYLOOP_KAFKA_BOOTSTRAP": bootstrap, "CITYLOOP_REDIS_URL": redis_url,
                   "CITYLOOP_TOPIC_PREFIX": namespace, "CITYLOOP_CITY": str(city),
                   "CITYLOOP_CONNECTORS_PORT": str(port), "CITYLOOP_GROUP_SESSION_TIMEOUT_S": "2", **env}  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "streams.cli", "connectors"], env=environment, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    started = ConnectorsProcess(process, port, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        health = started.health()
        if health and health.get("status") == "ready":
            return started
        if process.poll() is not None:
            raise AssertionError(f"connectors exited with {process.returncode}:\n{started.log()[-3000:]}")
        time.sleep(0.2)
    started.stop()
    raise AssertionError(f"connectors not ready within 60 s:\n{started.log()[-3000:]}")
