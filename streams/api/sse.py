"""Server-sent events from a Redis stream: a unit's push channel, the ops centre's board feed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import Request
from fastapi.responses import StreamingResponse

Read = Callable[[str], Awaitable[list[tuple[str, str, str]]]]  # after this id -> (id, event, data), blocking a while


def event_stream(request: Request, read: Read, start: str, max_events: int | None) -> StreamingResponse:
    """Entries after ``start`` as events (``id`` is the entry id, for ``Last-Event-ID``), a keep-alive while quiet."""

    async def stream() -> AsyncIterator[bytes]:
        last, sent = start, 0
        yield b"retry: 3000\n: connected\n\n"
        while max_events is None or sent < max_events:
            if await request.is_disconnected():
                return
            entries = await read(last)
            if not entries:
                yield b": keep-alive\n\n"
                continue
            for entry_id, kind, data in entries:
                last = entry_id
                yield f"id: {entry_id}\nevent: {kind}\ndata: {json.dumps(json.loads(data))}\n\n".encode()
                sent += 1
                if max_events is not None and sent >= max_events:
                    return
            await asyncio.sleep(0)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip
