"""`GET|HEAD /stream?session=ID`: the session's encoded audio, from the live point on.

The handler finds the session, attaches a `Listener` for as long as the client stays, and
hands the bytes to `AudioStreamResponse` (`web/audio_response.py`), which gives the stream
to the session's fan-out (`audio/fanout.py`): a slow client is skipped, caught up, skipped
forward when it falls off the ring, and dropped when it takes nothing; never waited for.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from radiod.audio.ring import RingReader
from radiod.sessions import Listener, Session, new_token, valid_session_id
from radiod.web import faults
from radiod.web.audio_response import AudioStreamResponse, audio_headers
from radiod.web.context import client_id, json_error, lookup_session
from radiod.web.keys import REGISTRY
from radiod.web.sending import drop

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()


def _listener_id(request: web.Request) -> str:
    raw = request.query.get("listener", "")
    return raw if valid_session_id(raw) and len(raw) <= 64 else new_token()[:12]


@routes.route("HEAD", "/stream")
async def stream_head(request: web.Request) -> web.StreamResponse:
    session = lookup_session(request, request.query.get("session"))
    if session is None:
        return json_error(404, "Session not found")
    return web.Response(headers=audio_headers(session.content_type))


@routes.get("/stream", allow_head=False)
async def stream(request: web.Request) -> web.StreamResponse:
    session = lookup_session(request, request.query.get("session"))
    if session is None:
        return json_error(404, "Session not found")
    response = AudioStreamResponse(request, session)
    async with _attached(request, session, response.resume_offset) as (listener, reader):
        await response.relay(listener, reader)
    return response


@contextlib.asynccontextmanager
async def _attached(
    request: web.Request, session: Session, resume_at: int
) -> AsyncIterator[tuple[Listener, RingReader]]:
    """A listener attached to `session` while the body runs, and how its connection ended.

    The client leaving ends every stream (ConnectionError, swallowed); one that takes
    nothing for the write timeout is dropped (TimeoutError, logged). Either way the
    listener is detached, so the session can keep its resume point and stop when unheard.
    """
    listener = Listener(_listener_id(request), client_id(request))
    faults.watch(request, listener)
    structlog.contextvars.bind_contextvars(
        listener_id=listener.id, connection_id=listener.connection_id
    )
    reader: RingReader | None = None
    try:
        # Inside the `try`: the client may leave while this waits for a stopping mixer.
        reader = await session.attach_listener(listener, resume_at)
        log.info(
            "stream.connected",
            range=request.headers.get("Range"),
            resumed=listener.resumed,
            listeners=session.listener_count,
        )
        request.app[REGISTRY].check_split(listener.client_id, "audio", session)
        yield listener, reader
    except TimeoutError:
        log.warning("stream.slow_client_dropped", timeout_seconds=session.fanout.drop_after)
        drop(request, "audio")
    except ConnectionError:
        pass  # the client left; that is how every stream ends
    finally:
        session.detach_listener(listener)
        if reader is not None:  # else it never connected: no `stream.closed` to pair
            reader.close()
            log.info("stream.closed", bytes_sent=listener.bytes_sent)
