"""The ``open311`` connector: the unit's tasks become GeoReport v2 requests at its system; their status is polled.

**send** (one attempt, the courier retries):

* a task: ``POST <url>/requests.json``, form-encoded (streams/connectors/georeport.py), ``api_key`` from the
  variable the pack names. The request's id is kept per task in Redis (streams/connectors/remote.py), so a task
  sent again is not posted again. GeoReport v2 has no idempotency key, so the one gap is a POST whose answer was
  lost (a timeout, a dropped connection, a 5xx from a proxy after the server saved it): before it goes out the
  attempt is noted; an attempt that finds that note first looks for the request among the system's requests of the
  same ``service_code`` since then (``GET requests.json?service_code=..&start_date=..``), by the task's mark in
  ``description``, and posts only if none carries it. Left: a system that lists requests late, or does not return
  ``description``, gets a second request (docs/CONNECTORS.md).
* an event: GeoReport v2 cannot update or withdraw a request, so an event sends nothing. One that takes the task
  from the unit (cancel, merge, recategorise, a reassignment, a rejection not from the system itself) stops the
  polling of its request and, if the system may still hold it open, is refused (``unsupported``) so that it is
  dead-lettered naming the request to close by hand: never left open there silently.

**poll**: ``GET <url>/requests.json?service_request_id=<ids>`` for the requests it polls (50 per call); each whose
status means more than before (georeport.observe) is a :class:`StatusUpdate`, keyed by the request id: the
events made from it have ids from the request and each event's type (one ack, one start, one resolve per request),
so a status found twice, or a resolve found before the worker applied the ack found earlier, repeats ids the
worker applies once, never a second ack.
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

import aiohttp

from dispatch.citypack import Unit
from dispatch.connectors import Open311Connector
from streams.connectors.base import (
    Delivery,
    Host,
    HttpClient,
    Kind,
    PollFailed,
    Result,
    StatusUpdate,
    Verdict,
    register,
)
from streams.connectors.georeport import (
    Unmappable,
    error_text,
    lookup_since,
    marked_task,
    observe,
    request_form,
    request_id_of,
)
from streams.connectors.remote import RemoteRequests
from streams.connectors.webhook import classify

log = logging.getLogger(__name__)

BATCH = 50  # ids per GET requests.json (a URL stays well under 4 KB)
HANDS_OVER = frozenset({"assign", "dispatched", "arbitrate"})  # the task goes to the unit the event names
TAKES_AWAY = frozenset({"cancel", "merge_order", "recategorise", "reject"})  # the event's task leaves the unit
FINISHED = frozenset({"resolve", "reject"})


@register("open311")
class Open311(HttpClient):
    name: ClassVar[str] = "open311"

    def __init__(self, unit: Unit, secret: bytes, host: Host) -> None:
        assert isinstance(unit.connector, Open311Connector)
        self.unit_id = unit.id
        self.spec = unit.connector
        self._api_key = secret.decode("utf-8")
        self._clock = host.clock
        self.remote = RemoteRequests(host.redis, host.namespace, unit.id, host.retention_s)
        self._session: aiohttp.ClientSession | None = None

    async def _call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """(status, JSON answer or text) of one call; :class:`PollFailed` on a network error or a timeout."""
        url = f"{self.spec.url}/{path}"
        try:
            async with self._client().request(method, url, allow_redirects=False, **kwargs) as reply:
                text = await reply.text(errors="replace")
                try:
                    return reply.status, await reply.json(content_type=None)
                except ValueError:
                    return reply.status, text[:300]
        except TimeoutError:
            within = self.spec.timeout.total_seconds()
            raise PollFailed("timeout", f"no answer from {url} within {within:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise PollFailed("network", f"{type(exc).__name__} from {url}: {exc}"[:300]) from None

    # ------------------------------------------------------------------ send

    async def send(self, delivery: Delivery) -> Result:
        started = time.perf_counter()
        try:
            result = await (self._task(delivery) if delivery.kind is Kind.TASK else self._event(delivery))
        except PollFailed as exc:
            result = Result(Verdict.RETRY, exc.code, exc.reason)
        return Result(result.verdict, result.reason_code, result.reason, time.perf_counter() - started)

    async def _task(self, delivery: Delivery) -> Result:
        task = delivery.record
        task_id, incident_id = str(task["task_id"]), str(task["incident_id"])
        if await self.remote.request_of(task_id) is not None:
            return Result(Verdict.DELIVERED, "delivered")  # posted before: a resend is not a second request
        try:
            form = request_form(task, self.spec, self._api_key)
        except Unmappable as exc:
            return Result(Verdict.REFUSED, "unmapped", str(exc))
        since = await self.remote.posting_since(task_id)
        if since is not None:  # an earlier attempt may have made the request and lost the answer: look first
            found = await self._find(task_id, form["service_code"], since)
            if found is not None:
                log.info("connector %s: task %s was posted before as %s; not posting it again", self.unit_id,
                         task_id, found)  # fmt: skip
                await self.remote.remember(task_id, incident_id, found, form["service_code"])
                return Result(Verdict.DELIVERED, "delivered")
        await self.remote.posting(task_id, self._clock())
        status, answer = await self._call("POST", "requests.json", data=form)
        verdict, code = classify(status)
        if verdict is Verdict.REFUSED:
            await self.remote.not_posted(task_id)
        if verdict is not Verdict.DELIVERED:
            return Result(verdict, code, f"HTTP {status} from {self.spec.url}/requests.json: {error_text(answer)}")
        request_id, token = request_id_of(answer)
        if request_id is None and token is not None:
            request_id = await self._token(token)
        if request_id is None:  # made, most likely, but unnamed: the next attempt looks it up by its mark
            return Result(Verdict.RETRY, "http_5xx", f"{self.spec.url} answered {status} without a service_request_id "
                          f"(token {token!r} not resolved yet): {error_text(answer)}")  # fmt: skip
        await self.remote.remember(task_id, incident_id, request_id, form["service_code"])
        return Result(Verdict.DELIVERED, "delivered")

    async def _find(self, task_id: str, service_code: str, since: float) -> str | None:
        params = {"service_code": service_code, "start_date": lookup_since(since)}
        if self.spec.jurisdiction_id:
            params["jurisdiction_id"] = self.spec.jurisdiction_id
        status, answer = await self._call("GET", "requests.json", params=params)
        if not 200 <= status < 300 or not isinstance(answer, list):
            raise PollFailed(classify(status)[1] if status >= 300 else "http_5xx",
                             f"looking up task {task_id} before posting it again: HTTP {status}")  # fmt: skip
        for request in answer:
            if isinstance(request, dict) and marked_task(request.get("description")) == task_id:
                rid = request.get("service_request_id")
                if rid not in (None, ""):
                    return str(rid)
        return None

    async def _token(self, token: str) -> str | None:
        status, answer = await self._call("GET", f"tokens/{token}.json")
        return request_id_of(answer)[0] if 200 <= status < 300 else None

    async def _event(self, delivery: Delivery) -> Result:
        record = delivery.record
        kind, by = record.get("type"), record.get("by")
        if by == f"connector:{self.unit_id}":
            return Result(Verdict.DELIVERED, "delivered")  # what the system itself said, come back recorded
        if kind in HANDS_OVER and record.get("unit_id") != self.unit_id:
            withdrawn = await self.remote.withdraw(str(record["incident_id"]), None)
        elif kind in TAKES_AWAY and isinstance(record.get("task_id"), str):
            withdrawn = await self.remote.withdraw(str(record["incident_id"]), record["task_id"])
        else:
            return Result(Verdict.DELIVERED, "delivered")  # GeoReport v2 has no way to tell a request more
        if not withdrawn:
            return Result(Verdict.DELIVERED, "delivered")
        reason = (f"GeoReport v2 cannot withdraw a request: {', '.join(withdrawn)} at {self.spec.url} stays open "
                  f"there after this {kind}; close it in that system by hand")  # fmt: skip
        return Result(Verdict.REFUSED, "unsupported", reason)

    # ------------------------------------------------------------------ poll

    async def poll(self) -> list[StatusUpdate]:
        tracked = await self.remote.open_requests()
        ids = sorted(tracked)
        updates: list[StatusUpdate] = []
        for start in range(0, len(ids), BATCH):
            params = {"service_request_id": ",".join(ids[start : start + BATCH])}
            if self.spec.jurisdiction_id:
                params["jurisdiction_id"] = self.spec.jurisdiction_id
            status, answer = await self._call("GET", "requests.json", params=params)
            if not 200 <= status < 300 or not isinstance(answer, list):
                code = classify(status)[1] if status >= 300 else "http_5xx"
                raise PollFailed(code, f"HTTP {status} from {self.spec.url}/requests.json: {error_text(answer)}")
            for request in answer:
                rid = str(request.get("service_request_id")) if isinstance(request, dict) else None
                entry = tracked.get(rid or "")
                seen = observe(request, self.spec.status_notes, self.spec.url) if entry is not None else None
                if rid is None or entry is None or seen is None or seen.type == entry.get("seen"):
                    continue
                updates.append(StatusUpdate(entry["task_id"], seen.type, f"open311:{rid}", seen.fields, rid))
        return updates

    async def settle(self, update: StatusUpdate, finished: bool = False) -> None:
        """``update`` is written (or can never be: ``finished``, its task left the unit); report it no more."""
        await self.remote.seen(update.remote_id, update.type, finished or update.type in FINISHED)
