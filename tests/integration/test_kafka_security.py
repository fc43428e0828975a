"""A production-like Kafka: SASL_SSL with a SCRAM user and a certificate from a CA the test makes.

Apache Kafka (one node, streams/apachekafka.py) gets a second listener, SECURE, that takes only SASL_SSL. A worker,
`cityloop topics create`, `cityloop report` and `cityloop tail` reach it with the CITYLOOP_KAFKA_* settings alone: a
report goes in and its task comes out. A wrong password is one line naming the broker and the mechanism; the password
never appears in what the commands and the worker print.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.admin import ensure_topics
from streams.apachekafka import Listener, missing_tools, start_apache_kafka
from streams.kafkaaccess import KafkaAccess
from tests.integration.conftest import WorkerFactory, stop_process
from tests.unit.streams.test_cli_errors import Ran

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USER, PASSWORD = "city-worker", "s3cret-Pa55word-never-logged"
MECHANISM = "SCRAM-SHA-256"


def pkcs8(key_pem: bytes) -> bytes:
    """Kafka's PEM key store reads PKCS#8 keys; trustme writes the traditional form."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(the SASL_SSL listener's host:port, the CA file clients trust)."""
    if missing_tools():
        if os.environ.get("CITYLOOP_TEST_REQUIRE_KAFKA") == "1":
            pytest.fail(f"Apache Kafka needs {' and '.join(missing_tools())}")
        pytest.skip(f"Apache Kafka needs {' and '.join(missing_tools())}")
    trustme = pytest.importorskip("trustme")
    workdir = tmp_path_factory.mktemp("secure-kafka")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    keystore = workdir / "broker.pem"  # the key, then the chain: Kafka's PEM key store
    keystore.write_bytes(pkcs8(server.private_key_pem.bytes()) + b"".join(c.bytes() for c in server.cert_chain_pems))
    cafile = workdir / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    secure = Listener("SECURE", "SASL_SSL", {
        "sasl.enabled.mechanisms": MECHANISM,
        f"{MECHANISM.lower()}.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(keystore),
    })  # fmt: skip
    kafka = start_apache_kafka(workdir, workdir / "kafka.log", listeners=[secure],
                               scram_users=[f"{MECHANISM}=[name={USER},password={PASSWORD}]"])  # fmt: skip
    access = KafkaAccess(kafka.listeners["SECURE"], "SASL_SSL", MECHANISM, USER, PASSWORD, str(cafile))
    ensure_topics(access, [], partitions=1, timeout=30)  # the SASL_SSL listener lets the user in: ready
    yield kafka.listeners["SECURE"], cafile
    stop_process(kafka.pid)


@pytest.fixture
def secure_env(secure_kafka, tmp_path, redis_url, namespace) -> dict[str, str]:
    address, cafile = secure_kafka
    password_file = tmp_path / "kafka-password"
    password_file.write_text(PASSWORD + "\n")  # as a mounted secret would hold it
    return {
        "CITYLOOP_KAFKA_BOOTSTRAP": address,
        "CITYLOOP_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CITYLOOP_KAFKA_SASL_MECHANISM": MECHANISM,
        "CITYLOOP_KAFKA_SASL_USERNAME": USER,
        "CITYLOOP_KAFKA_SASL_PASSWORD_FILE": str(password_file),
        "CITYLOOP_KAFKA_SSL_CAFILE": str(cafile),
        "CITYLOOP_REDIS_URL": redis_url,
        "CITYLOOP_TOPIC_PREFIX": namespace,
        "CITYLOOP_DATA_DIR": str(tmp_path / "data"),
    }


def cityloop(*args: str, env: dict[str, str], cwd: Path) -> Ran:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CITYLOOP_")}
    done = subprocess.run([sys.executable, "-m", "streams.cli", *args], env={**clean, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    return Ran(done.returncode, done.stdout, done.stderr)


def test_a_worker_and_the_cli_work_through_sasl_ssl_with_scram(secure_env, tmp_path, redis_url, namespace):
    created = cityloop("topics", "create", env=secure_env, cwd=tmp_path)
    assert created.status == 0, created.stderr
    workers = WorkerFactory(secure_env["CITYLOOP_KAFKA_BOOTSTRAP"], redis_url, namespace, tmp_path)
    try:
        worker = workers.start(**secure_env)
        report = ("report", "--text", "deep pothole by the school", "--lat", "51.99", "--lon", "5.06",
                  "--service-code", "pothole")  # fmt: skip
        sent = cityloop(*report, env=secure_env, cwd=tmp_path)
        assert sent.status == 0, sent.stderr
        tail = ("tail", "tasks", "--from-beginning", "--max", "1", "--timeout", "60")
        tailed = cityloop(*tail, env=secure_env, cwd=tmp_path)
        assert tailed.status == 0, tailed.stderr
        task = json.loads(tailed.stdout)
        assert task["category"] == "pothole" and task["unit_id"] == "roads-west"
        assert f"{MECHANISM} as {USER}" in tailed.stderr, "tail says where it reads from, and as whom"
    finally:
        workers.stop_all()
    everything = created.stdout + created.stderr + sent.stdout + sent.stderr + tailed.stderr + worker.log()
    assert PASSWORD not in everything


def test_a_wrong_password_is_one_line_naming_the_broker_and_the_mechanism(secure_env, tmp_path):
    wrong = {**secure_env, "CITYLOOP_KAFKA_SASL_PASSWORD_FILE": "", "CITYLOOP_KAFKA_SASL_PASSWORD": "not-it"}
    del wrong["CITYLOOP_KAFKA_SASL_PASSWORD_FILE"]
    for args in (("topics", "create"), ("report", "--text", "pothole", "--lat", "52", "--lon", "5")):
        ran = cityloop(*args, env=wrong, cwd=tmp_path)
        ran.assert_one_line_error(1, secure_env["CITYLOOP_KAFKA_BOOTSTRAP"], f"SASL_SSL, {MECHANISM} as {USER}",
                                  "check CITYLOOP_KAFKA_SASL_USERNAME and the password")  # fmt: skip
        assert "not-it" not in ran.stderr


def test_a_broker_certificate_from_another_ca_is_one_line_about_tls(secure_env, tmp_path):
    """A client that does not trust the broker's CA (here: the system's CAs only) stops at the TLS handshake."""
    untrusting = {k: v for k, v in secure_env.items() if k != "CITYLOOP_KAFKA_SSL_CAFILE"}
    ran = cityloop("tail", "tasks", "--wait", "2", env=untrusting, cwd=tmp_path)
    ran.assert_one_line_error(1, "the TLS handshake with Kafka at", "CITYLOOP_KAFKA_SSL_CAFILE")
