"""A unit's connector in the city pack: the external system (work management, ticketing) that serves the unit.

A unit with a ``connector`` gets its tasks, and the lifecycle events of its orders, delivered to that system by
``cityloop connectors``, and the system sends the unit's status back to ``POST /connectors/{unit_id}/events``.
Each connector type is one model here, told apart by ``type``; :data:`Connector` is their union. A new type
(``open311``, say) adds its model to that union and a class under ``streams/connectors/`` that sends with it.

Secrets never live in the pack: ``secret_env`` names the environment variable that holds one.
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
    secret_env: str = Field(description="The environment variable that holds the shared secret.")
    send: list[Literal["tasks", "events"]] = ["tasks", "events"]
    timeout: Seconds = timedelta(seconds=10)
    retry: Retry = Retry()
    breaker: Breaker = Breaker()

    @field_validator("secret_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not _ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not an environment variable name (upper case letters, digits, _)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _no_secret_in_the_pack(cls, data: Any) -> Any:
        if isinstance(data, dict) and "secret" in data:
            raise ValueError("a secret does not belong in the pack: put it in an environment variable and name it "
                             "in secret_env")  # fmt: skip
        return data


class WebhookConnector(_ConnectorBase):
    """Signed JSON POSTs to ``url``; status comes back signed to ``POST /connectors/{unit_id}/events``."""

    type: Literal["webhook"]
    url: str = Field(description="Where tasks and events are POSTed (http or https).")
    headers: dict[str, str] = {}  # extra headers, e.g. a tenant id the system wants; never a secret

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not _HTTP_URL.match(value):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _headers_are_not_ours(self) -> WebhookConnector:
        ours = {"content-type", "idempotency-key", "x-cityloop-signature", "x-cityloop-kind", "authorization"}
        clash = sorted(name for name in self.headers if name.lower() in ours)
        if clash:
            raise ValueError(f"headers {clash} are set by the connector (authorization would put a secret in the pack)")
        return self


Connector = Annotated[WebhookConnector, Field(discriminator="type")]
CONNECTOR_TYPES = ("webhook",)
