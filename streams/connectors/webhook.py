"""The ``webhook`` connector: each delivery is one signed JSON POST to the unit's system.

Headers: ``X-CityLoop-Signature`` (streams/connectors/signing.py), ``Idempotency-Key`` (the task or event id,
the same on every attempt and after a redelivery, so the receiver applies a record once), ``X-CityLoop-Kind``
(``task`` or ``event``). Any 2xx is delivered; 429, 5xx, a timeout or a network error are worth another attempt;
any other status is a refusal (the system says the record is wrong, trying again will not change that).
"""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar

import aiohttp

from dispatch.citypack import Unit
from dispatch.connectors import WebhookConnector
from streams.connectors.base import Delivery, Host, HttpClient, Result, StatusUpdate, Verdict, register
from streams.connectors.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, sign


def body_of(delivery: Delivery) -> bytes:
    return json.dumps(delivery.payload(), separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode("utf-8")


def classify(status: int) -> tuple[Verdict, str]:
    if 200 <= status < 300:
        return Verdict.DELIVERED, "delivered"
    if status == 429:
        return Verdict.RETRY, "http_429"
    if status >= 500 or status == 408:
        return Verdict.RETRY, "http_5xx" if status >= 500 else "timeout"
    return Verdict.REFUSED, "http_4xx"


@register("webhook")
class Webhook(HttpClient):
    name: ClassVar[str] = "webhook"

    def __init__(self, unit: Unit, secret: bytes, host: Host | None = None, clock: Any = time.time) -> None:
        assert isinstance(unit.connector, WebhookConnector)
        self.unit_id = unit.id
        self.spec = unit.connector
        self._secret = secret
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def send(self, delivery: Delivery) -> Result:
        body = body_of(delivery)
        headers = {
            **self.spec.headers,
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, body, self._clock()),
            IDEMPOTENCY_HEADER: delivery.key,
            "X-CityLoop-Kind": delivery.kind.value,
        }
        started = time.perf_counter()
        try:
            async with self._client().post(self.spec.url, data=body, headers=headers, allow_redirects=False) as reply:
                text = (await reply.text(errors="replace"))[:200]
                status = reply.status
        except TimeoutError:
            return Result(Verdict.RETRY, "timeout", f"no answer within {self.spec.timeout.total_seconds():g} s",
                          time.perf_counter() - started)  # fmt: skip
        except (aiohttp.ClientError, OSError) as exc:
            return Result(Verdict.RETRY, "network", f"{type(exc).__name__}: {exc}"[:300], time.perf_counter() - started)
        verdict, code = classify(status)
        reason = "" if verdict is Verdict.DELIVERED else f"HTTP {status} from {self.spec.url}: {text}".strip()
        return Result(verdict, code, reason, time.perf_counter() - started)

    async def poll(self) -> list[StatusUpdate]:
        return []  # a webhook's system calls back (POST /connectors/{unit_id}/events)

    async def settle(self, update: StatusUpdate, finished: bool = False) -> None:
        pass
