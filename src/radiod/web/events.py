"""`GET /events?session=ID`: the session's metadata as Server-Sent Events.

Secondary to the audio: the page reconnects it to the audio's session when it drops.
Each event carries an SSE `id:` (the session's event number) so a reconnect that sends
`Last-Event-ID` (or `?lastEventId=` from a page that built a new EventSource) gets
exactly what it missed.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
import structlog
from aiohttp import web

from radiod.sessions import RESYNC, EventClient, SessionEvent, new_token
from radiod.web.context import client_id, lookup_session
from radiod.web.keys import REGISTRY
from radiod.web.sending import WRITE_TIMEOUT_SECONDS, drop, send

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

HEARTBEAT_SECONDS = 15.0
_EVENT_ID_RE = re.compile(r"[0-9]{1,18}")
_NOT_FOUND = b'data: {"type":"error","message":"session_not_found"}\n\n'


def _frame(payload: dict[str, Any], event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n".encode() if event_id is not None else b""
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


def _event_frame(event: SessionEvent) -> bytes:
    return _frame({"type": event.type, **event.payload}, event.id)


def parse_event_id(raw: str | None) -> int | None:
    """An SSE event id as sent back by a client, or None (a fresh snapshot) if not one of ours.

    ASCII digits only: `str.isdigit()` also accepts "²", which `int()` then rejects.
    """
    return int(raw) if raw and _EVENT_ID_RE.fullmatch(raw) else None


def _last_event_id(request: web.Request) -> int | None:
    return parse_event_id(request.headers.get("Last-Event-ID") or request.query.get("lastEventId"))


@routes.get("/events", allow_head=False)
async def events(request: web.Request) -> web.StreamResponse:
    session = lookup_session(request, request.query.get("session"))
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    if session is None:
        await response.write(_NOT_FOUND)
        return response

    client = EventClient(new_token()[:12], client_id(request))
    if not session.subscribe(client):  # reaped while this response was being prepared
        await response.write(_NOT_FOUND)
        return response
    structlog.contextvars.bind_contextvars(event_client_id=client.id)
    log.info("events.connected")
    request.app[REGISTRY].check_split(client.client_id, "events", session)
    try:
        await send(request, response.write, _frame({"type": "connected", "sessionId": session.id}))
        sent = 0
        for event in session.events_since(_last_event_id(request)):
            await send(request, response.write, _event_frame(event))
            sent = event.id
        while True:
            try:
                event = await asyncio.wait_for(client.queue.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                await send(request, response.write, b": heartbeat\n\n")
                continue
            if event is None:
                break
            # RESYNC: the queue overflowed; the latest state stands in for what it held.
            for due in session.events_since(None) if event is RESYNC else (event,):
                if due.id > sent:  # not sent already (as part of a snapshot)
                    await send(request, response.write, _event_frame(due))
                    sent = due.id
    except ConnectionError:
        pass  # the browser went away; it reconnects on its own terms
    except TimeoutError:
        log.warning("events.slow_client_dropped", timeout_seconds=WRITE_TIMEOUT_SECONDS)
        drop(request)
    finally:
        session.unsubscribe(client)
        log.info("events.closed")
    return response
