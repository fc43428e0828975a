"""How every Kafka client CityLoop makes reaches the cluster: the bootstrap servers, TLS and SASL.

One value, :class:`KafkaAccess`, built once from the settings
(``Settings.kafka``), gives each client library its own spelling of the same
thing: kafka-python (the CLI, admin, the simulator), aiokafka (the ingest
consumer, the API's producer) and Faust (the worker's producer). Managed
clusters (MSK, Confluent Cloud, Aiven, Strimzi) nearly all want SASL_SSL; the
password is kept out of ``repr`` and of every log line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaAccess:
    """Bootstrap servers and security, checked by the settings before anything connects."""

    bootstrap: str
    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    key_password: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, target: KafkaAccess | str) -> KafkaAccess:
        """A plain ``host:port[,host:port]`` means PLAINTEXT (the dev brokers, tests)."""
        return target if isinstance(target, KafkaAccess) else cls(target)

    @property
    def servers(self) -> list[str]:
        return [server.strip() for server in self.bootstrap.split(",") if server.strip()]

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def describe(self) -> str:
        """``host:port (SASL_SSL, SCRAM-SHA-256 as alice)``: for messages; never the password."""
        if self.protocol == "PLAINTEXT":
            return self.bootstrap
        how = f"{self.protocol}, {self.mechanism} as {self.username}" if self.sasl else self.protocol
        return f"{self.bootstrap} ({how})"

    def risks(self) -> list[str]:
        """What a careful operator should hear about this access at start-up (the settings allow it)."""
        said = []
        if self.protocol == "SASL_PLAINTEXT" and self.mechanism == "PLAIN":
            said.append("SASL PLAIN over SASL_PLAINTEXT sends the Kafka password unencrypted; use SASL_SSL or SCRAM")
        return said

    def environment(self) -> dict[str, str]:
        """The ``CITYLOOP_KAFKA_*`` variables that give a child process (a worker, the API) this same access."""
        env = {"CITYLOOP_KAFKA_BOOTSTRAP": self.bootstrap, "CITYLOOP_KAFKA_SECURITY_PROTOCOL": self.protocol}
        given = {
            "CITYLOOP_KAFKA_SASL_MECHANISM": self.mechanism, "CITYLOOP_KAFKA_SASL_USERNAME": self.username,
            "CITYLOOP_KAFKA_SASL_PASSWORD": self.password, "CITYLOOP_KAFKA_SSL_CAFILE": self.cafile,
            "CITYLOOP_KAFKA_SSL_CERTFILE": self.certfile, "CITYLOOP_KAFKA_SSL_KEYFILE": self.keyfile,
            "CITYLOOP_KAFKA_SSL_KEY_PASSWORD": self.key_password,
        }  # fmt: skip
        return env | {key: value for key, value in given.items() if value is not None}

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's KafkaProducer, KafkaConsumer and KafkaAdminClient."""
        config: dict[str, Any] = {"bootstrap_servers": self.servers, "security_protocol": self.protocol}
        if self.sasl:
            config |= {"sasl_mechanism": self.mechanism, "sasl_plain_username": self.username,
                       "sasl_plain_password": self.password}  # fmt: skip
        if self.tls:
            config |= {"ssl_cafile": self.cafile, "ssl_certfile": self.certfile, "ssl_keyfile": self.keyfile,
                       "ssl_password": self.key_password, "ssl_check_hostname": True}  # fmt: skip
        return config

    def ssl_context(self) -> Any:
        from aiokafka.helpers import create_ssl_context

        return create_ssl_context(cafile=self.cafile, certfile=self.certfile, keyfile=self.keyfile,
                                  password=self.key_password)  # fmt: skip

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's AIOKafkaProducer and AIOKafkaConsumer."""
        config: dict[str, Any] = {"bootstrap_servers": self.servers, "security_protocol": self.protocol}
        if self.sasl:
            config |= {"sasl_mechanism": self.mechanism, "sasl_plain_username": self.username,
                       "sasl_plain_password": self.password}  # fmt: skip
        if self.tls:
            config["ssl_context"] = self.ssl_context()
        return config

    def faust_credentials(self) -> Any:
        """Faust's ``broker_credentials`` (None for PLAINTEXT)."""
        import faust
        from faust.auth import SASLMechanism

        if self.sasl:
            return faust.SASLCredentials(
                username=self.username, password=self.password, mechanism=SASLMechanism(self.mechanism),
                ssl_context=self.ssl_context() if self.tls else None,
            )  # fmt: skip
        if self.tls:
            return faust.SSLCredentials(self.ssl_context())
        return None
