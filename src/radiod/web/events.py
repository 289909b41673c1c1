"""`GET /events?session=ID`: the session's metadata as Server-Sent Events.

Secondary to the audio: the page reconnects it to the audio's session when it drops.
Each event carries an SSE `id:` (the session's event number) so a reconnect that sends
`Last-Event-ID` (or `?lastEventId=` from a page that built a new EventSource) gets
exactly what it missed.
"""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiohttp_sse import EventSourceResponse

from radiod.sessions import RESYNC, EventClient, Session, SessionEvent, new_token
from radiod.web.context import client_id, lookup_session
from radiod.web.keys import REGISTRY
from radiod.web.sending import WRITE_TIMEOUT_SECONDS, Bytes, drop, send

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

HEARTBEAT_SECONDS = 15.0
_EVENT_ID_RE = re.compile(r"[0-9]{1,18}")
_HEARTBEAT = b": heartbeat\n\n"


class _EventStream(EventSourceResponse):
    """aiohttp-sse's response (SSE headers, `id:`/`data:` framing), written like the audio.

    Two of its policies are not ours, so they are set aside. Its write timeout would also
    set TCP_USER_TIMEOUT, letting the kernel end a stalled client silently; instead every
    write goes through `web/sending.py`, so a stuck client is dropped and logged as on
    `/stream`. Its ping (`: ping`, from a task of its own that aborts a stuck socket
    unseen by this handler) is parked: the handler writes the documented `: heartbeat`
    after HEARTBEAT_SECONDS without an event, and notices a failed write itself.
    """

    def __init__(self, request: web.Request) -> None:
        # `\n`: the wire as the page and tests know it (aiohttp-sse defaults to `\r\n`).
        # An infinite interval parks the ping task (it must be positive); `async with`
        # around the response ends it.
        super().__init__(sep="\n", send_timeout=None, ping_interval=math.inf)
        self._request = request

    async def write(self, data: Bytes) -> None:
        await send(self._request, super().write, data)

    async def send_json(self, payload: dict[str, Any], event_id: int | None = None) -> None:
        await self.send(
            orjson.dumps(payload).decode(), id=None if event_id is None else str(event_id)
        )

    async def send_event(self, event: SessionEvent) -> None:
        await self.send_json({"type": event.type, **event.payload}, event.id)


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
    response = _EventStream(request)
    await response.prepare(request)
    async with response:  # ends its (parked) ping task
        client = EventClient(new_token()[:12], client_id(request))
        # `subscribe` fails when the session was reaped while the response was prepared.
        if session is None or not session.subscribe(client):
            await response.send_json({"type": "error", "message": "session_not_found"})
            return response
        structlog.contextvars.bind_contextvars(event_client_id=client.id)
        log.info("events.connected")
        request.app[REGISTRY].check_split(client.client_id, "events", session)
        try:
            await _relay(response, session, client, _last_event_id(request))
        except ConnectionError:
            pass  # the browser went away; it reconnects on its own terms
        except TimeoutError:
            log.warning("events.slow_client_dropped", timeout_seconds=WRITE_TIMEOUT_SECONDS)
            drop(request, "events")
        finally:
            session.unsubscribe(client)
            log.info("events.closed")
    return response


async def _relay(
    response: _EventStream, session: Session, client: EventClient, last_id: int | None
) -> None:
    """`connected`, what the client missed (or a snapshot), then live events until closed."""
    await response.send_json({"type": "connected", "sessionId": session.id})
    sent = 0
    for event in session.events_since(last_id):
        await response.send_event(event)
        sent = event.id
    while True:
        try:
            event = await asyncio.wait_for(client.queue.get(), HEARTBEAT_SECONDS)
        except TimeoutError:
            await response.write(_HEARTBEAT)
            continue
        if event is None:
            return
        # RESYNC: the queue overflowed; the latest state stands in for what it held.
        for due in session.events_since(None) if event is RESYNC else (event,):
            if due.id > sent:  # not sent already (as part of a snapshot)
                await response.send_event(due)
                sent = due.id
