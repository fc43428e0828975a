"""Apache Kafka on this machine: one KRaft node (broker and controller together) from its jars on Maven Central.

For the tests, CI and `cityloop dev up --kafka`. The jars come once, through
Maven, into a cache (``~/.cache/cityloop/kafka-<version>``, or
``CITYLOOP_KAFKA_HOME``): ``streams/kafka/pom.xml`` names them and
``mvn dependency:copy-dependencies`` copies them with their runtime
dependencies. Then each start formats a fresh storage directory
(``kafka.tools.StorageTool format --standalone``) and runs ``kafka.Kafka``
with a modest heap. It is ready in about two seconds on these machines.

Production runs Apache Kafka as a cluster (deploy/); this is one node with
replication factor 1, for development and tests only. Extra listeners (TLS,
SASL) and SCRAM users can be added for security tests.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from streams.errors import FailedToStart
from streams.redisconn import last_lines, port_in_use

KAFKA_VERSION = "4.4.0"
HERE = Path(__file__).with_name("kafka")
POM = HERE / "pom.xml"
LOG_CONFIG = HERE / "log4j2.properties"


def kafka_home() -> Path:
    """Where the jars are cached: ``CITYLOOP_KAFKA_HOME``, else ``$XDG_CACHE_HOME/cityloop/kafka-<version>``."""
    given = os.environ.get("CITYLOOP_KAFKA_HOME")
    if given:
        return Path(given)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "cityloop" / f"kafka-{KAFKA_VERSION}"


def java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def missing_tools(need_maven: bool = True) -> list[str]:
    """The tools this machine lacks to run Apache Kafka: java always, mvn only while the jars are not cached."""
    missing = [] if java() else ["java (17 or newer)"]
    if need_maven and not _cached() and not shutil.which("mvn"):
        missing.append("mvn (to fetch Kafka's jars from Maven Central once)")
    return missing


def _cached() -> bool:
    marker = kafka_home() / "libs" / ".complete"
    return marker.exists() and marker.read_text().strip() == KAFKA_VERSION


def kafka_libs(echo: bool = False) -> Path:
    """The directory of Kafka's jars, fetched through Maven the first time (about 45 MB; ten seconds here)."""
    libs = kafka_home() / "libs"
    marker = libs / ".complete"
    if _cached():
        return libs
    if marker.exists():  # jars of another version under CITYLOOP_KAFKA_HOME: fetch this one's afresh
        shutil.rmtree(libs)
    if not shutil.which("mvn"):
        raise FailedToStart(f"Apache Kafka's jars are not in {libs} and there is no mvn to fetch them; install Maven")
    libs.mkdir(parents=True, exist_ok=True)
    if echo:
        print(f"fetching Apache Kafka {KAFKA_VERSION} from Maven Central into {libs} ...", flush=True)
    done = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={libs}",
         "-DincludeScope=runtime"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if done.returncode != 0:
        said = " | ".join(line for line in (done.stdout + done.stderr).splitlines() if "ERROR" in line)[-600:]
        raise FailedToStart(f"mvn could not fetch Apache Kafka {KAFKA_VERSION}: {said or 'no error printed'}")
    marker.write_text(KAFKA_VERSION)
    return libs


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Listener:
    """An extra listener: its name, security protocol and any ``listener.name.<name>.*`` properties."""

    name: str
    protocol: str
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ApacheKafka:
    bootstrap: str  # the PLAINTEXT listener
    pid: int
    workdir: Path
    listeners: Mapping[str, str]  # listener name -> host:port, PLAINTEXT included


def new_cluster_id() -> str:
    """A random KRaft cluster id: 16 bytes, URL-safe base64, never starting with a dash.

    StorageTool parses its arguments, so an id such as ``-x3f...`` (one in 16
    draws of plain base64) reads as an option and the format fails; Kafka's own
    ``Uuid.randomUuid`` avoids those ids the same way.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def start_apache_kafka(
    workdir: Path,
    log_path: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    heap_mb: int = 512,
    listeners: Iterable[Listener] = (),
    properties: Mapping[str, str] | None = None,
    scram_users: Iterable[str] = (),
    timeout: float = 90.0,
) -> ApacheKafka:
    """Format a storage directory under ``workdir`` and start one Kafka node; return once it answers metadata.

    ``scram_users`` are StorageTool ``--add-scram`` arguments, e.g.
    ``SCRAM-SHA-256=[name=alice,password=secret]``: KRaft takes SCRAM
    credentials when the storage is formatted.
    """
    missing = missing_tools()
    if missing:
        raise FailedToStart(f"Apache Kafka needs {' and '.join(missing)} on this machine")
    libs = kafka_libs()
    port = port or free_port(host)
    if port_in_use(host, port):
        raise FailedToStart(f"port {port} on {host} is already in use; choose another")
    extra = list(listeners)
    addresses = {"PLAINTEXT": f"{host}:{port}", **{x.name: f"{host}:{free_port(host)}" for x in extra}}
    controller = f"{host}:{free_port(host)}"
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    shutil.rmtree(data, ignore_errors=True)  # a fresh node each start, as the dev broker (a restart empties it)
    config = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": controller,
        "listeners": ",".join(
            [f"{name}://{address}" for name, address in addresses.items()] + [f"CONTROLLER://{controller}"]
        ),  # fmt: skip
        "advertised.listeners": ",".join(f"{name}://{address}" for name, address in addresses.items()),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": ",".join(
            ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"] + [f"{x.name}:{x.protocol}" for x in extra]
        ),
        "log.dirs": str(data),
        "num.partitions": "4",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        **{f"listener.name.{x.name.lower()}.{key}": value for x in extra for key, value in x.properties.items()},
        **(properties or {}),
    }
    server_properties = workdir / "server.properties"
    server_properties.write_text("".join(f"{key}={value}\n" for key, value in config.items()))
    cluster_id = new_cluster_id()
    classpath = f"{libs}/*"
    jvm = [java() or "java", f"-Xmx{heap_mb}m", f"-Xms{min(heap_mb, 256)}m", "-XX:+UseSerialGC",
           f"-Dlog4j2.configurationFile={LOG_CONFIG}", "-cp", classpath]  # fmt: skip
    scram = [arg for user in scram_users for arg in ("--add-scram", user)]
    formatted = subprocess.run(
        [*jvm, "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id, "-c", str(server_properties),
         *scram],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if formatted.returncode != 0:
        said = " | ".join((formatted.stdout + formatted.stderr).strip().splitlines()[-3:])
        raise FailedToStart(f"formatting Kafka's storage failed: {said}")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [*jvm, "kafka.Kafka", str(server_properties)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                said = last_lines(log_path)
                raise FailedToStart(f"Apache Kafka exited with code {process.returncode}: {said} (log {log_path})")
            if port_in_use(host, port) and _answers(f"{host}:{port}"):
                return ApacheKafka(f"{host}:{port}", process.pid, workdir, addresses)
            time.sleep(0.2)
    except BaseException:  # Ctrl-C while it starts: it is ours, it goes too
        process.kill()
        process.wait()
        raise
    process.kill()
    process.wait()
    raise FailedToStart(f"Apache Kafka did not answer on {host}:{port} within {timeout:.0f} s (log {log_path})")


def _answers(bootstrap: str) -> bool:
    """True once the node serves metadata (it listens a moment before its controller is ready)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000, bootstrap_timeout_ms=3000)
    except (KafkaError, OSError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def main() -> None:
    """``python -m streams.apachekafka``: fetch the jars into the cache (CI runs it before the tests)."""
    started = time.monotonic()
    libs = kafka_libs(echo=True)
    count = sum(1 for _ in libs.glob("*.jar"))
    print(f"Apache Kafka {KAFKA_VERSION}: {count} jars in {libs} ({time.monotonic() - started:.1f} s)")


if __name__ == "__main__":
    main()
