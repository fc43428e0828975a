"""One frozen settings object, read once at start-up from ``CITYLOOP_*`` env vars and flags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.kafkaaccess import KafkaAccess


class Settings(BaseSettings):
    """Runtime configuration of a CityLoop worker.

    Every field can be set as ``CITYLOOP_<NAME>`` in the environment or as a
    command-line flag; flags win over the environment, which wins over defaults.
    """

    model_config = SettingsConfigDict(env_prefix="CITYLOOP_", frozen=True, extra="forbid", env_ignore_empty=True)

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated host:port.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How clients talk to Kafka: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism, with SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (or kafka_sasl_password_file).")
    kafka_sasl_password_file: Path | None = Field(
        None, description="A file holding the SASL password (a mounted secret); trailing newlines are ignored."
    )
    kafka_ssl_cafile: Path | None = Field(
        None, description="PEM file of the CAs that sign the brokers' certificates; default: the system's CAs."
    )
    kafka_ssl_certfile: Path | None = Field(None, description="PEM client certificate, for brokers that want one.")
    kafka_ssl_keyfile: Path | None = Field(None, description="PEM private key of the client certificate.")
    kafka_ssl_key_password: SecretStr | None = Field(None, description="Password of an encrypted client key.")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis holding durable state.")
    connect_timeout_s: float = Field(
        5.0, ge=0, le=3600, description="How long a command keeps trying to reach Kafka and Redis before it gives up."
    )
    city: str = Field(
        "demo",
        description="Path of a city pack directory, or 'demo' for the generated demo city.",
    )
    topic_prefix: str = Field(
        "cityloop",
        description="Prefix of every topic name, the consumer group and the Redis key namespace.",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$",
    )
    partitions: int = Field(4, ge=1, le=1024, description="Partitions of topics CityLoop creates.")
    replication_factor: int = Field(
        1, ge=1, le=7, description="Replicas of each topic CityLoop creates (3 on a production cluster)."
    )
    group_session_timeout_s: float = Field(
        6.0,
        ge=0.5,
        le=300,
        description="How long the consumer group waits for a silent worker before its partitions go to others: the "
        "floor of a crashed worker's replacement time. Apache Kafka accepts 6 s and more by default "
        "(group.min.session.timeout.ms); the dev broker (Tansu) also takes 2 s, and its joins take half of it.",
    )
    processing_guarantee: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once",
        description="at_least_once: outputs may repeat after a crash, with the same ids (any broker). exactly_once: "
        "each input batch's outputs and offsets commit in one Kafka transaction (a broker with transactions).",
    )
    worker_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$",
        description="A stable name for this worker (a StatefulSet pod's name): its restarts get their partitions "
        "back at once, without a rebalance (Kafka static membership).",
    )
    web_port: int = Field(6066, ge=0, le=65535, description="Port of /metrics and /health.")
    web_host: str = Field("127.0.0.1", description="Interface the worker's web server binds.")
    stall_s: float = Field(
        120.0,
        ge=1,
        le=3600,
        description="A worker with records waiting (lag > 0) that finishes no batch for this long is not live "
        "(/livez 503): the liveness probe restarts it. Longer than a Redis or broker outage it should wait out.",
    )
    loop_block_s: float = Field(
        10.0, ge=0.5, le=600, description="A worker whose event loop is blocked this long is not live (/livez 503)."
    )
    shutdown_grace_s: float = Field(
        10.0,
        ge=1,
        le=600,
        description="How long a worker's stop (SIGTERM, Ctrl-C) may take: past it, the worker says what it "
        "abandoned (offsets not committed: read again, harmlessly) and exits non-zero, whatever the broker does.",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="text: lines for a person; json: one JSON object per line, with the record's ids."
    )
    log_repeat_s: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="A warning or error logged again within this interval is counted, not shown; one line per "
        "interval says how many there were. 0: every line is shown.",
    )
    connector_tolerance_s: int = Field(
        300, ge=10, le=3600, description="How far a connector callback's signed time may be from the API's clock."
    )
    connectors_port: int = Field(6067, ge=0, le=65535, description="Port of `cityloop connectors`' /metrics, /health.")
    batch_size: int = Field(500, ge=1, le=100_000, description="Max records per processing batch.")
    fetch_max_wait_ms: int = Field(
        20, ge=1, le=5000, description="Longest a consumer fetch waits for data (latency when a partition is idle)."
    )
    model: Path | None = Field(
        None,
        description="A text model file from `cityloop train`; default: the seed model for the demo city's categories.",
    )
    model_registry: Path | None = Field(
        None,
        description="A model registry directory (`cityloop retrain`); its current version wins over `model`, and "
        "workers switch to a newly promoted one without a restart.",
    )
    model_poll_s: float = Field(
        10.0, ge=0, le=3600, description="How often a worker checks the model registry for a new version; 0: never."
    )
    triage_threshold: float = Field(
        0.25, ge=0, le=1, description="Text classifications less confident than this wait for a person."
    )
    merge_radius_m: float = Field(150.0, gt=0, le=5000, description="Default radius for merging repeat reports.")
    merge_window_s: float = Field(3 * 3600.0, gt=0, description="Default time window for merging repeat reports.")
    max_clock_skew_s: float = Field(
        86_400.0,
        ge=0,
        description="A record stamped further than this in the future is refused.",
    )
    dedup_ttl_s: int = Field(7 * 86_400, ge=60, description="How long a processed report id is remembered.")
    data_dir: Path = Field(Path(".cityloop"), description="Where the worker keeps local files (generated demo city).")
    # the closed loop (issue 5)
    max_rejections: int = Field(
        2, ge=1, le=20, description="Rejections after which an order goes to the ops centre for arbitration."
    )
    sensor_quiet_s: float = Field(
        1800.0, gt=0, description="How long a sensor must read normal before its incident is verified."
    )
    sensor_reopen_s: float = Field(
        6 * 3600.0, gt=0, description="A re-alarm this soon after verification reopens the incident."
    )
    order_retention_s: int = Field(
        30 * 86_400, ge=60, description="How long a closed, merged or cancelled order stays readable."
    )
    timer_interval_s: float = Field(0.5, gt=0, le=60, description="How often the SLA timer looks for due deadlines.")
    timer_lease_s: float = Field(
        10.0, gt=0, le=600, description="How long a popped deadline waits for its emitter before another takes it."
    )
    produce_timeout_s: float = Field(
        30.0,
        gt=0,
        le=1200,
        description="How long a send waits for the broker's acknowledgement before it fails: "
        "counted as a produce error (timeout), then the batch is sent again. Faust's own default, 20 minutes, kept a "
        "broker outage out of every error count.",
    )
    api_host: str | None = Field(None, description="Interface `cityloop api` binds; unset: the same as web_host.")
    api_port: int = Field(8080, ge=0, le=65535, description="Port of `cityloop api`.")
    open311_api_keys: str = Field(
        "dev-open311-key",
        description="Comma-separated API keys accepted by Open311 POST requests; the default is for development only "
        "(`cityloop api` refuses to start with it unless CITYLOOP_DEV is set).",
    )
    dev: bool = Field(
        False,
        description="Development mode: `cityloop api` starts with the development Open311 api_key (anyone who read "
        "the README can post with it). Set by `cityloop dev up`'s export line, the demo and the tests; never in "
        "production.",
    )
    map_tiles: str | None = Field(
        None,
        description="A tile server for the board's map, as a URL template with {z}, {x} and {y} (and {s} for "
        "subdomains), e.g. https://tiles.example.gov/{z}/{x}/{y}.png; unset: no tiles, the city pack's own areas only "
        "(nothing is fetched from elsewhere). The board's Content-Security-Policy allows images from that host only.",
    )
    map_attribution: str = Field(
        "", max_length=500, description="The text the tile server's licence asks the map to show (plain text)."
    )
    open311_public_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s]+$",
        description="The API's public base URL (e.g. https://311.example.gov), named by Open311 Service Discovery; "
        "unset: the base URL of each request.",
    )
    open311_contact: str = Field(
        "The city's operations centre answers questions about this API.",
        max_length=1000,
        description="Open311 Service Discovery's contact: who answers for the API (an email, a phone, a page).",
    )
    open311_key_service: str = Field(
        "Ask the city's operations centre for an api_key.",
        max_length=1000,
        description="Open311 Service Discovery's key_service: how a developer gets an api_key.",
    )
    open311_endpoint_type: Literal["production", "test"] = Field(
        "production", description="The endpoint's type in Open311 Service Discovery: production or test."
    )
    open311_cors_origins: str = Field(
        "*",
        description="Comma-separated origins whose web pages may read the Open311 GET routes (public data), or '*' "
        "for any; 'none': no other origin. The units' and ops centre's routes never answer other origins.",
    )
    open311_cors_post_origins: str = Field(
        "",
        description="Comma-separated origins whose web pages may read the answer to an Open311 POST (a city's own "
        "report form on another host); default none.",
    )
    api_max_body_bytes: int = Field(65_536, ge=1024, le=16 * 1024 * 1024, description="Largest request body accepted.")
    api_wait_s: float = Field(
        5.0, ge=0, le=30, description="How long a unit's or ops action waits for the worker to apply it."
    )

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_has_ports(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
                raise ValueError(f"{server!r} is not host:port (a port from 1 to 65535)")
        return value

    @model_validator(mode="after")
    def _kafka_security_is_complete(self) -> Settings:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        tls = self.kafka_security_protocol.endswith("SSL")
        if sasl and not (self.kafka_sasl_mechanism and self.kafka_sasl_username):
            raise ValueError(
                f"{self.kafka_security_protocol} needs CITYLOOP_KAFKA_SASL_MECHANISM and CITYLOOP_KAFKA_SASL_USERNAME"
            )
        if sasl and (self.kafka_sasl_password is None) == (self.kafka_sasl_password_file is None):
            raise ValueError("SASL needs one of CITYLOOP_KAFKA_SASL_PASSWORD and CITYLOOP_KAFKA_SASL_PASSWORD_FILE")
        given_sasl = (self.kafka_sasl_mechanism, self.kafka_sasl_username, self.kafka_sasl_password,
                      self.kafka_sasl_password_file)  # fmt: skip
        if not sasl and any(value is not None for value in given_sasl):
            raise ValueError(f"SASL settings are given but the security protocol is {self.kafka_security_protocol}")
        ssl_files = (self.kafka_ssl_cafile, self.kafka_ssl_certfile, self.kafka_ssl_keyfile)
        if not tls and any(ssl_files):
            raise ValueError(f"TLS files are given but the security protocol is {self.kafka_security_protocol}")
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError("a client certificate needs its key: set both kafka_ssl_certfile and kafka_ssl_keyfile")
        for path in (*ssl_files, self.kafka_sasl_password_file):
            if path is not None and not path.is_file():
                raise ValueError(f"no such file: {path}")
            if path is not None and not os.access(path, os.R_OK):
                raise ValueError(f"cannot read {path} (permissions)")
        return self

    @property
    def kafka(self) -> KafkaAccess:
        """How every Kafka client reaches the cluster (the password is read here, from its file if one is set)."""
        password = None
        if self.kafka_sasl_password is not None:
            password = self.kafka_sasl_password.get_secret_value()
        elif self.kafka_sasl_password_file is not None:
            password = self.kafka_sasl_password_file.read_text(encoding="utf-8").rstrip("\r\n")
        return KafkaAccess(
            bootstrap=self.kafka_bootstrap,
            protocol=self.kafka_security_protocol,
            mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username,
            password=password,
            cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None,
            certfile=str(self.kafka_ssl_certfile) if self.kafka_ssl_certfile else None,
            keyfile=str(self.kafka_ssl_keyfile) if self.kafka_ssl_keyfile else None,
            key_password=self.kafka_ssl_key_password.get_secret_value() if self.kafka_ssl_key_password else None,
        )

    @field_validator("map_tiles")
    @classmethod
    def _map_tiles_is_a_template(cls, value: str | None) -> str | None:
        if not value:
            return None
        missing = [part for part in ("{z}", "{x}", "{y}") if part not in value]
        if not value.startswith(("https://", "http://")) or missing or any(c.isspace() for c in value):
            why = f"it lacks {', '.join(missing)}" if missing else "it is not an http(s) URL"
            raise ValueError(f"{value!r} is not a tile URL template like https://HOST/{{z}}/{{x}}/{{y}}.png: {why}")
        return value

    @property
    def map_tiles_origin(self) -> str | None:
        """The tile server's origin for the Content-Security-Policy (``{s}`` subdomains become ``*``)."""
        if not self.map_tiles:
            return None
        scheme, rest = self.map_tiles.split("://", 1)
        host = rest.split("/", 1)[0].replace("{s}", "*")
        return f"{scheme}://{host}"

    @field_validator("redis_url")
    @classmethod
    def _redis_url_has_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"{value!r} is not a Redis URL (redis://HOST:PORT/DB, rediss://... or unix://PATH)")
        return value

    @property
    def consumer_group(self) -> str:
        return f"{self.topic_prefix}-worker"

    @property
    def ingest_group(self) -> str:
        """The consumer group the workers read their input topics in: the one whose lag scales them (KEDA)."""
        return f"{self.consumer_group}-ingest"

    @property
    def redis_namespace(self) -> str:
        return self.topic_prefix

    @property
    def api_bind_host(self) -> str:
        return self.api_host or self.web_host

    @property
    def open311_cors(self) -> tuple[list[str], list[str]]:
        """Origins allowed to read Open311's GET answers, and its POST answers."""

        def split(text: str) -> list[str]:
            return [o.strip() for o in text.split(",") if o.strip() and o.strip().lower() != "none"]

        return split(self.open311_cors_origins), split(self.open311_cors_post_origins)

    @property
    def open311_keys(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.open311_api_keys.split(",") if k.strip())


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, with explicit (flag) overrides on top.

    ``None`` overrides are ignored so that unset CLI flags fall through to the
    environment and the defaults.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**given)
