"""`GET|HEAD /stream?session=ID`: the session's encoded audio, from the live point on.

The handler only moves bytes: it attaches a `Listener` to the session, copies batches
from its `RingReader` to the socket and detaches when the client leaves. A slow client
only delays its own writes; the ring skips it forward if it falls behind.
"""

from __future__ import annotations

import re

import structlog
from aiohttp import web

from radiod.audio.outputs import TrackEvent
from radiod.audio.ring import Chunk, RingReader
from radiod.sessions import Listener, Session, new_token, valid_session_id
from radiod.web import faults
from radiod.web.context import client_id, json_error, lookup_session
from radiod.web.icy import IcyWriter, icy_headers
from radiod.web.keys import REGISTRY
from radiod.web.sending import WRITE_TIMEOUT_SECONDS, drop, send

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

# Content-Range needs a last byte even for an endless stream; this one is never reached.
_ENDLESS = 2**40
# ASCII digits only: `\d` would also take "²" or "٣", which `int()` reads or rejects.
_RANGE_RE = re.compile(r"bytes=([0-9]{1,15})-([0-9]{0,15})")


def parse_range(header: str | None) -> tuple[int, int | None] | None:
    """`Range: bytes=N-[M]` as (N, M or None); anything else is ignored like no Range."""
    match = _RANGE_RE.fullmatch(header.strip(" \t")) if header else None
    if match is None:
        return None
    start, end = int(match[1]), int(match[2]) if match[2] else None
    return None if end is not None and end < start else (start, end)


def _listener_id(request: web.Request) -> str:
    raw = request.query.get("listener", "")
    return raw if valid_session_id(raw) and len(raw) <= 64 else new_token()[:12]


def _headers(content_type: str) -> dict[str, str]:
    return {"Content-Type": content_type, "Cache-Control": "no-store"}


def _icy_title(event: TrackEvent | None) -> str | None:
    return f"{event.track.artist} - {event.track.title}" if event else None


class _IcyListener:
    """Feeds one ICY listener's writer with the title that becomes audible in each chunk."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._writer = IcyWriter()
        self._started = False

    def pack(self, chunks: list[Chunk], prefix: bytes) -> bytes:
        out = [self._writer.feed(prefix)] if prefix else []
        for chunk in chunks:
            event = self._session.track_starting_in(chunk)
            if event is None and not self._started:
                event = self._session.track_at(chunk.stream_time)  # joined mid-track
            self._started = True
            out.append(self._writer.feed(chunk.data, _icy_title(event)))
        return b"".join(out)


def _start_response(
    request: web.Request, content_type: str, byte_range: tuple[int, int | None] | None
) -> tuple[web.StreamResponse, int | None]:
    """The response for a request's Range, and how many bytes it may carry (None: endless).

    `bytes=0-` is a plain 200. Chromium re-requests a dropped stream with `bytes=N-`
    and, if answered 200, discards the first N bytes (about 8 s of silence at 128 kb/s),
    so that gets a 206 starting at N, fed from the live point. Safari's `bytes=0-1`
    probe gets exactly the bytes it asked for.
    """
    response = web.StreamResponse(headers=_headers(content_type))
    if byte_range is None or byte_range == (0, None):
        return response, None
    start, end = byte_range
    last = end if end is not None else start + _ENDLESS - 1
    response.set_status(206)
    response.headers["Content-Range"] = f"bytes {start}-{last}/*"
    if end is None:
        return response, None
    response.content_length = end - start + 1
    return response, end - start + 1


@routes.route("HEAD", "/stream")
async def stream_head(request: web.Request) -> web.StreamResponse:
    session = lookup_session(request, request.query.get("session"))
    if session is None:
        return json_error(404, "Session not found")
    return web.Response(headers=_headers(session.content_type))


@routes.get("/stream", allow_head=False)
async def stream(request: web.Request) -> web.StreamResponse:
    session = lookup_session(request, request.query.get("session"))
    if session is None:
        return json_error(404, "Session not found")
    byte_range = parse_range(request.headers.get("Range"))
    response, limit = _start_response(request, session.content_type, byte_range)
    icy = None
    if request.headers.get("Icy-MetaData") == "1" and limit is None:
        icy = _IcyListener(session)
        response.headers.update(
            icy_headers("radiod", f"radiod session {session.id[:16]}", "Various")
        )
    listener = Listener(_listener_id(request), client_id(request))
    faults.watch(request, listener)
    structlog.contextvars.bind_contextvars(
        listener_id=listener.id, connection_id=listener.connection_id
    )
    # Chromium resumes a dropped connection with `bytes=N-`: continue it byte-exactly.
    resume_at = byte_range[0] if byte_range and limit is None and icy is None else 0
    reader: RingReader | None = None
    try:
        # Inside the `try`: the client may leave while this waits for a stopping mixer.
        reader = await session.attach_listener(listener, resume_at)
        if byte_range is not None and limit is None and not listener.resumed:
            # A 206 from the live point still counts its bytes from where the client asked,
            # so a later drop of this connection can be resumed in turn.
            listener.count_from(byte_range[0])
        log.info(
            "stream.connected",
            range=request.headers.get("Range"),
            resumed=listener.resumed,
            listeners=session.listener_count,
        )
        request.app[REGISTRY].check_split(listener.client_id, "audio", session)
        await response.prepare(request)
        await _copy(request, response, session, listener, reader, limit, icy)
    except TimeoutError:
        log.warning("stream.slow_client_dropped", timeout_seconds=WRITE_TIMEOUT_SECONDS)
        drop(request)
    except ConnectionError:
        pass  # the client left; that is how every stream ends
    finally:
        session.detach_listener(listener)
        if reader is not None:  # else it never connected: no `stream.closed` to pair
            reader.close()
            log.info("stream.closed", bytes_sent=listener.bytes_sent)
    return response


async def _copy(
    request: web.Request,
    response: web.StreamResponse,
    session: Session,
    listener: Listener,
    reader: RingReader,
    limit: int | None,
    icy: _IcyListener | None,
) -> None:
    """Copy the ring to one listener until the ring ends, the client leaves or `limit` is met."""
    if listener.resumed and listener.stream_start is not None:
        session.listener_started(listener, listener.stream_start)
    first = True
    while (batch := await reader.read()) is not None:
        prefix = b""
        if first:
            first = False
            # The header (Ogg) is known only once the first chunk has arrived.
            prefix = b"" if listener.resumed else reader.header
            if listener.stream_start is None and limit is None:
                session.listener_started(listener, batch[0].stream_time)
        if faults.stalled(request):
            continue  # fault hook: the connection stays open, nothing more is sent
        if icy is not None:
            data = icy.pack(batch, prefix)
        else:
            data = prefix + b"".join(chunk.data for chunk in batch)
        if limit is not None:
            data = data[: limit - listener.bytes_sent]
        await send(request, response, data)
        # A probe (a bounded Range) is not a listener: nothing of it is resumed.
        listener.sent(len(data), batch[-1].seq if limit is None else None)
        if limit is not None and listener.bytes_sent >= limit:
            return
