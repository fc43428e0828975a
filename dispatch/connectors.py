"""A unit's connector in the city pack: the external system (work management, ticketing) that serves the unit.

A unit with a ``connector`` gets its tasks, and the lifecycle events of its orders, delivered to that system by
``cityloop connectors``; a ``webhook`` system sends the unit's status back to ``POST /connectors/{unit_id}/events``,
an ``open311`` system (a GeoReport v2 endpoint, which cannot call back) is polled for it. Each connector type is one
model here, told apart by ``type``; :data:`Connector` is their union. A new type adds its model to that union and
a class under ``streams/connectors/`` that sends with it.

Secrets never live in the pack: ``secret_env`` (``api_key_env`` for open311) names the environment variable that
holds one; :attr:`credential_env` reads either.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
_HTTP_URL = re.compile(r"^https?://[^\s/?#]+[^\s]{0,2040}$")


def _seconds(value: Any) -> timedelta:
    """``"500ms"``, ``"30s"``, ``"5m"``, ``"2h"`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        result = timedelta(seconds=value)
    elif isinstance(value, str):
        text = value.strip()
        for suffix, unit in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)):
            number = text.removesuffix(suffix)
            if number != text:
                try:
                    result = timedelta(seconds=float(number) * unit)
                except ValueError:
                    raise ValueError(f"expected a duration like '30s', '5m' or '500ms', got {value!r}") from None
                break
        else:
            raise ValueError(f"expected a duration like '30s', '5m' or '500ms', got {value!r}")
    else:
        raise ValueError(f"expected a duration like '30s', '5m' or '500ms', got {value!r}")
    if result <= timedelta(0):
        raise ValueError(f"duration must be positive, got {value!r}")
    return result


Seconds = Annotated[timedelta, BeforeValidator(_seconds)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Retry(_Model):
    """Exponential back-off between attempts at one record, then the dead-letter topic."""

    max_attempts: int = Field(8, ge=1, le=100)
    initial: Seconds = timedelta(seconds=1)
    max: Seconds = timedelta(minutes=5)

    @model_validator(mode="after")
    def _ordered(self) -> Retry:
        if self.max < self.initial:
            raise ValueError("retry.max must not be shorter than retry.initial")
        return self


class Breaker(_Model):
    """After ``failures`` failed attempts in a row the connector stops sending for ``cooldown``, then tries one."""

    failures: int = Field(5, ge=1, le=1000)
    cooldown: Seconds = timedelta(seconds=30)


class _ConnectorBase(_Model):
    send: list[Literal["tasks", "events"]] = ["tasks", "events"]
    timeout: Seconds = timedelta(seconds=10)
    retry: Retry = Retry()
    breaker: Breaker = Breaker()

    @property
    def credential_env(self) -> str:
        """The environment variable holding this connector's secret (whatever the type calls it)."""
        raise NotImplementedError


def _env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError(f"{value!r} is not an environment variable name (upper case letters, digits, _)")
    return value


def _http(value: str) -> str:
    if not _HTTP_URL.match(value):
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value


class WebhookConnector(_ConnectorBase):
    """Signed JSON POSTs to ``url``; status comes back signed to ``POST /connectors/{unit_id}/events``."""

    type: Literal["webhook"]
    url: str = Field(description="Where tasks and events are POSTed (http or https).")
    secret_env: str = Field(description="The environment variable that holds the shared secret.")
    headers: dict[str, str] = {}  # extra headers, e.g. a tenant id the system wants; never a secret

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _http(value)

    @field_validator("secret_env")
    @classmethod
    def _env(cls, value: str) -> str:
        return _env_name(value)

    @property
    def credential_env(self) -> str:
        return self.secret_env

    @model_validator(mode="before")
    @classmethod
    def _no_secret_in_the_pack(cls, data: Any) -> Any:
        if isinstance(data, dict) and "secret" in data:
            raise ValueError("a secret does not belong in the pack: put it in an environment variable and name it "
                             "in secret_env")  # fmt: skip
        return data

    @model_validator(mode="after")
    def _headers_are_not_ours(self) -> WebhookConnector:
        ours = {"content-type", "idempotency-key", "x-cityloop-signature", "x-cityloop-kind", "authorization"}
        clash = sorted(name for name in self.headers if name.lower() in ours)
        if clash:
            raise ValueError(f"headers {clash} are set by the connector (authorization would put a secret in the pack)")
        return self


class StatusNotes(_Model):
    """Regular expressions over a request's ``status_notes`` (searched, case-insensitive) for the states plain
    GeoReport v2 cannot tell: it only says ``open`` or ``closed``. None set: only ``closed`` is observed."""

    acknowledged: str | None = None  # an open request whose notes match has been taken
    resolved: str | None = None  # an open request whose notes match is done (e.g. awaiting the system's own check)
    rejected: str | None = None  # a closed request whose notes match was closed without the work (a rejection)

    @field_validator("acknowledged", "resolved", "rejected")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{value!r} is not a regular expression: {exc}") from None
        return value


class Open311Connector(_ConnectorBase):
    """The unit's tasks become Open311 GeoReport v2 requests at ``url``; their status is polled."""

    type: Literal["open311"]
    url: str = Field(description="The GeoReport v2 endpoint, e.g. https://city.example/open311/v2 (http or https).")
    api_key_env: str = Field(description="The environment variable that holds the endpoint's api_key.")
    service_codes: dict[str, str] = Field(min_length=1, description="CityLoop category -> the system's service_code.")
    jurisdiction_id: str | None = Field(None, max_length=128)
    poll_every: Seconds = timedelta(seconds=60)
    status_notes: StatusNotes = StatusNotes()

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _http(value.rstrip("/"))

    @field_validator("api_key_env")
    @classmethod
    def _env(cls, value: str) -> str:
        return _env_name(value)

    @property
    def credential_env(self) -> str:
        return self.api_key_env

    @model_validator(mode="before")
    @classmethod
    def _no_key_in_the_pack(cls, data: Any) -> Any:
        if isinstance(data, dict) and ("api_key" in data or "secret" in data):
            raise ValueError("an api_key does not belong in the pack: put it in an environment variable and name it "
                             "in api_key_env")  # fmt: skip
        return data

    @field_validator("service_codes")
    @classmethod
    def _codes(cls, value: dict[str, str]) -> dict[str, str]:
        blank = sorted(category for category, code in value.items() if not code.strip() or len(code) > 128)
        if blank:
            raise ValueError(f"service codes of {blank} must be 1-128 characters")
        return value


Connector = Annotated[WebhookConnector | Open311Connector, Field(discriminator="type")]
CONNECTOR_TYPES = ("webhook", "open311")
