"""What only the API keeps in Redis: unit tokens and Open311 request records.

Keys, under the deployment's namespace ``ns``:

* ``ns:api:token:<sha256 of token>``: JSON ``{unit_id, holder, issued_at}``; a token is stored only as its hash;
  ``ns:api:unit-tokens:<unit>``: the hashes issued to a unit (to revoke them);
* ``ns:api:connector-sig:<unit>:<signature>``: the ``Idempotency-Key`` a signed callback came with, for twice the
  signature's time tolerance (a replayed request cannot pass as a new event under another key);
* ``ns:o311:req:<service_request_id>``: JSON of the request as posted;
  ``ns:o311:token:<token>``: the request id (only requests posted before ids were returned at once have one; they
  stay readable until they expire); ``ns:o311:requests``: sorted set of request ids by time.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

OPEN311_RETENTION_S = 400 * 86_400  # requests stay listable well beyond the 90-day query window
TOKEN_PREFIX = "clu_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ApiStore:
    """Unit tokens and Open311 requests on a Redis client (sync or asyncio: every method awaits its calls)."""

    def __init__(self, client: Any, namespace: str) -> None:
        self._redis = client
        self._ns = namespace

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    # ----------------------------------------------------------------- tokens

    async def issue_token(self, unit_id: str, holder: str, now: datetime) -> str:
        """A new random token for ``unit_id``; only its hash is kept, so it is shown once."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = token_hash(token)
        record = json.dumps({"unit_id": unit_id, "holder": holder, "issued_at": now.isoformat()})
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(f"{self._ns}:api:token:{digest}", record)
        pipe.sadd(f"{self._ns}:api:unit-tokens:{unit_id}", digest)
        await pipe.execute()
        return token

    async def revoke_tokens(self, unit_id: str) -> int:
        key = f"{self._ns}:api:unit-tokens:{unit_id}"
        digests = [_text(d) for d in await self._redis.smembers(key)]
        if digests:
            await self._redis.delete(*[f"{self._ns}:api:token:{d}" for d in digests], key)
        return len(digests)

    async def token_owner(self, token: str) -> dict[str, str] | None:
        raw = await self._redis.get(f"{self._ns}:api:token:{token_hash(token)}")
        return None if raw is None else json.loads(raw)

    # -------------------------------------------------------- Open311 requests

    async def save_request(self, record: dict[str, Any], token: str | None, requested_at: datetime) -> None:
        request_id = record["service_request_id"]
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(f"{self._ns}:o311:req:{request_id}", json.dumps(record), ex=OPEN311_RETENTION_S)
        if token is not None:
            pipe.set(f"{self._ns}:o311:token:{token}", request_id, ex=OPEN311_RETENTION_S)
        pipe.zadd(f"{self._ns}:o311:requests", {request_id: requested_at.timestamp()})
        await pipe.execute()

    async def forget_request(self, request_id: str, token: str | None) -> None:
        """Undo :meth:`save_request` (the report could not be written to the broker)."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(f"{self._ns}:o311:req:{request_id}", *([f"{self._ns}:o311:token:{token}"] if token else []))
        pipe.zrem(f"{self._ns}:o311:requests", request_id)
        await pipe.execute()

    async def requests(self, request_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        if not request_ids:
            return []
        values = await self._redis.mget([f"{self._ns}:o311:req:{i}" for i in request_ids])
        return [None if v is None else json.loads(v) for v in values]

    async def request_of_token(self, token: str) -> str | None:
        value = await self._redis.get(f"{self._ns}:o311:token:{token}")
        return None if value is None else _text(value)

    async def request_ids_between(self, start: datetime, end: datetime, limit: int) -> list[str]:
        """Request ids posted in [start, end], newest first."""
        ids = await self._redis.zrevrangebyscore(
            f"{self._ns}:o311:requests", end.timestamp(), start.timestamp(), start=0, num=limit
        )
        return [_text(i) for i in ids]

    # ------------------------------------------------------ connector callbacks

    async def claim_signature(self, unit_id: str, signature: str, key: str, ttl_s: int) -> str | None:
        """Remember that a signed callback came with ``key``; the key it came with before, if it came before."""
        name = f"{self._ns}:api:connector-sig:{unit_id}:{signature}"
        if await self._redis.set(name, key, nx=True, ex=ttl_s):
            return None
        earlier = await self._redis.get(name)
        return None if earlier is None else _text(earlier)
