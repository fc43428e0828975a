"""Kafka security settings: checked before anything connects, and given to each client library in its own spelling."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streams.kafkaaccess import KafkaAccess
from streams.settings import load_settings

SASL = {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "alice", "kafka_sasl_password": "pw-123"}  # fmt: skip


def test_plaintext_is_the_default_and_a_plain_bootstrap_string_means_plaintext():
    access = load_settings(kafka_bootstrap="a:9092, b:9092").kafka
    assert access == KafkaAccess.of("a:9092, b:9092") and access.servers == ["a:9092", "b:9092"]
    assert access.kafka_python() == {"bootstrap_servers": ["a:9092", "b:9092"], "security_protocol": "PLAINTEXT"}
    assert access.faust_credentials() is None and access.describe() == "a:9092, b:9092"


def test_sasl_ssl_reaches_kafka_python_aiokafka_and_faust_alike(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not read until a client connects")
    access = load_settings(**SASL, kafka_ssl_cafile=str(ca)).kafka
    python = access.kafka_python()
    assert (python["security_protocol"], python["sasl_mechanism"], python["sasl_plain_username"],
            python["sasl_plain_password"], python["ssl_cafile"]) == ("SASL_SSL", "SCRAM-SHA-512", "alice", "pw-123",
                                                                     str(ca))  # fmt: skip
    assert access.describe() == "127.0.0.1:9092 (SASL_SSL, SCRAM-SHA-512 as alice)"
    assert "pw-123" not in repr(access) and "pw-123" not in repr(load_settings(**SASL))


def test_the_password_can_come_from_a_mounted_secret_file(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    settings = {**SASL, "kafka_sasl_password": None, "kafka_sasl_password_file": str(secret)}
    assert load_settings(**settings).kafka.password == "from-a-file"


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "needs CITYLOOP_KAFKA_SASL_MECHANISM"),
        ({**SASL, "kafka_sasl_password": None}, "one of CITYLOOP_KAFKA_SASL_PASSWORD"),
        ({"kafka_sasl_username": "alice"}, "SASL settings are given but the security protocol is PLAINTEXT"),
        ({"kafka_ssl_cafile": "/etc/hosts"}, "TLS files are given but the security protocol is PLAINTEXT"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_certfile": "/etc/hosts"}, "needs its key"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/nonexistent/ca.pem"}, "no such file"),
        ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol"),
        ({**SASL, "kafka_sasl_mechanism": "GSSAPI"}, "kafka_sasl_mechanism"),
    ],
)  # fmt: skip
def test_incomplete_or_contradictory_security_settings_are_refused_at_start(given, says):
    with pytest.raises(ValidationError, match=says):
        load_settings(**given)


def test_a_password_sent_in_clear_is_named_at_start_and_nothing_else_is():
    clear = load_settings(**{**SASL, "kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "PLAIN"})
    assert clear.kafka.risks() == [
        "SASL PLAIN over SASL_PLAINTEXT sends the Kafka password unencrypted; use SASL_SSL or SCRAM"
    ]
    scram = load_settings(**{**SASL, "kafka_security_protocol": "SASL_PLAINTEXT"})
    assert scram.kafka.risks() == [] and load_settings(**SASL).kafka.risks() == []
    assert load_settings().kafka.risks() == []
