"""`AudioStreamResponse`: which bytes one `/stream` response writes, and how.

Everything between a session's ring and a listener's socket is decided here: the status
and headers a `Range` asks for (a probe, a resume, a plain stream), the header pages an
Ogg decoder needs first, ICY metadata for native players, the byte count a later resume
continues from, and the write policy (`web/sending.py`). The handler only finds the
session and attaches the listener (`web/stream.py`).
"""

from __future__ import annotations

import re
from functools import partial

from aiohttp import web

from radiod.audio.fanout import Outlet
from radiod.audio.outputs import TrackEvent
from radiod.audio.ring import Chunk, RingReader
from radiod.sessions import Listener, Session
from radiod.web import faults
from radiod.web.icy import IcyWriter, icy_headers
from radiod.web.sending import Bytes, send

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


def audio_headers(content_type: str) -> dict[str, str]:
    """The headers of every answer about a session's audio, `HEAD` included."""
    return {"Content-Type": content_type, "Cache-Control": "no-store"}


def _icy_title(event: TrackEvent | None) -> str | None:
    return f"{event.track.artist} - {event.track.title}" if event else None


class AudioStreamResponse(web.StreamResponse):
    """One listener's audio: status and headers from its request, then `relay` the ring.

    `bytes=0-` (or no Range) is a plain 200. Chromium re-requests a dropped stream with
    `bytes=N-` and, if answered 200, discards the first N bytes (about 8 s of silence at
    128 kb/s), so that gets a 206 starting at N: the session continues the dropped
    connection byte-exactly if it can (`resume_offset`), else it is fed from the live
    point. Safari's `bytes=0-1` probe gets exactly the bytes it asked for, and is no
    listener to resume. `Icy-MetaData: 1` gets ICY blocks (never on a probe).
    """

    def __init__(self, request: web.Request, session: Session) -> None:
        super().__init__(headers=audio_headers(session.content_type))
        self._request = request
        self._session = session
        self._range = parse_range(request.headers.get("Range"))
        # A probe's exact length (`bytes=N-M`); None for a stream that runs until it ends.
        self._probe_length: int | None = None
        if self._range is not None and self._range != (0, None):
            start, end = self._range
            last = end if end is not None else start + _ENDLESS - 1
            self.set_status(206)
            self.headers["Content-Range"] = f"bytes {start}-{last}/*"
            if end is not None:
                self._probe_length = self.content_length = end - start + 1
        self._icy: IcyWriter | None = None
        # For ICY: the track playing where this listener joins (asked once, at its start).
        self._joined: TrackEvent | None = None
        if request.headers.get("Icy-MetaData") == "1" and self._probe_length is None:
            self._icy = IcyWriter()
            description = f"radiod session {session.id[:16]}"
            self.headers.update(icy_headers("radiod", description, "Various"))

    @property
    def resume_offset(self) -> int:
        """The byte a dropped connection asks to continue from (`bytes=N-`), else 0.

        Never for a probe, nor for ICY, whose interleaved blocks make byte offsets unequal.
        """
        if self._range is None or self._probe_length is not None or self._icy is not None:
            return 0
        return self._range[0]

    async def write(self, data: Bytes) -> None:
        """Write under the shared policy: a client that takes nothing is dropped (TimeoutError)."""
        await send(self._request, super().write, data)

    async def relay(self, listener: Listener, reader: RingReader) -> None:
        """Send the headers, then the ring until it ends, the client leaves or a probe is met.

        Counts the bytes on `listener` (and the last chunk sent), where the session takes
        them from to resume a dropped connection. A stream is written by the session's
        broadcast step (`audio/fanout.py`); this coroutine only waits for its end.
        """
        if self._range is not None and self._probe_length is None and not listener.resumed:
            # A 206 from the live point still counts its bytes from where the client asked,
            # so a later drop of this connection can be resumed in turn.
            listener.count_from(self._range[0])
        await self.prepare(self._request)
        if listener.resumed and listener.stream_start is not None:
            self._session.listener_started(listener, listener.stream_start)
        if self._probe_length is not None:
            await self._send_probe(listener, reader)
            return
        writer, transport = self._payload_writer, self._request.transport
        if writer is None or transport is None:
            raise ConnectionResetError("the client left before its stream began")
        writer.send_headers()  # aiohttp holds them back to send with the first body bytes
        outlet = Outlet(
            transport,
            reader,
            listener,
            chunked=writer.chunked,
            first=partial(self._first_bytes, listener, reader),
            frame=self._pack if self._icy is not None else None,
        )
        faults.on_stall(self._request, outlet.hold)
        counted = listener.bytes_sent
        try:
            await self._session.fanout.serve(outlet)
        finally:
            # For the access log's byte count: these bytes went around aiohttp's writer.
            writer.output_size += listener.bytes_sent - counted

    async def _send_probe(self, listener: Listener, reader: RingReader) -> None:
        """Exactly the bytes a bounded Range asked for (Safari's `bytes=0-1`)."""
        assert self._probe_length is not None
        head: bytes | None = None
        while (batch := await reader.read()) is not None:
            if head is None:
                head = self._first_bytes(listener, reader, batch[0])
            if faults.stalled(self._request):
                continue  # fault hook: the connection stays open, nothing more is sent
            data = self._pack(head, batch)[: self._probe_length - listener.bytes_sent]
            head = b""
            await self.write(data)
            listener.sent(len(data))  # a probe, not a listener: nothing to resume
            if listener.bytes_sent >= self._probe_length:
                return

    def _first_bytes(self, listener: Listener, reader: RingReader, first: Chunk) -> bytes:
        """At the first chunk: announce the listener, and return the bytes to send first.

        The header (Ogg) is known only once the first chunk has arrived; a resumed
        connection had it already.
        """
        if listener.stream_start is None and self._probe_length is None:
            self._session.listener_started(listener, first.stream_time)
        if self._icy is not None:
            self._joined = first.track_start or self._session.track_at(first.stream_time)
        return b"" if listener.resumed else reader.header

    def _pack(self, head: bytes, batch: list[Chunk]) -> bytes:
        """`head` and the batch's audio, with ICY blocks where titles change if asked for."""
        icy = self._icy
        if icy is None:
            return head + b"".join(chunk.data for chunk in batch)
        out = [icy.feed(head)] if head else []
        for chunk in batch:
            # The title audible from this chunk: the track it starts, or on a listener's
            # first chunk the one it joined in the middle of.
            event, self._joined = chunk.track_start or self._joined, None
            out.append(icy.feed(chunk.data, _icy_title(event)))
        return b"".join(out)
