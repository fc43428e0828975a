"""Bearer tokens: one per unit (issued by ``cityloop units token UNIT_ID``), the ops centre's among them.

A token is a random string shown once; Redis keeps only its SHA-256. The unit
it belongs to must still be in the city pack. The ops centre is the pack's
fallback unit: its tokens open the ``/ops`` routes as well as its own tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from streams.api.context import ApiContext
from streams.api.errors import ApiError

bearer = HTTPBearer(auto_error=False, description="A unit's token from `cityloop units token UNIT_ID`.")


@dataclass(frozen=True)
class Caller:
    """Who is calling: a unit, and the person or device the token was issued to."""

    unit_id: str
    holder: str
    is_ops: bool

    @property
    def unit_actor(self) -> str:
        return f"unit:{self.unit_id}"

    @property
    def ops_actor(self) -> str:
        return f"ops:{self.holder}"


def context(request: Request) -> ApiContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


async def caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> Caller:
    ctx = context(request)
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials.strip():
        raise ApiError(401, "unauthorized", "a bearer token is required", {"WWW-Authenticate": "Bearer"})
    owner = await ctx.store.token_owner(credentials.credentials.strip())
    if owner is None or ctx.pack.unit(owner["unit_id"]) is None:
        raise ApiError(401, "unauthorized", "unknown or revoked token",
                       {"WWW-Authenticate": 'Bearer error="invalid_token"'})  # fmt: skip
    unit_id = owner["unit_id"]
    return Caller(unit_id, owner.get("holder") or unit_id, unit_id == ctx.pack.spec.fallback_unit)


async def ops_caller(who: Annotated[Caller, Depends(caller)]) -> Caller:
    if not who.is_ops:
        raise ApiError(403, "forbidden", "this needs the ops centre's token")
    return who
