"""One broadcast step per chunk: a session's new audio written to every listener's socket.

Icecast's way (`source.c`): when a chunk arrives, one loop walks the listeners and writes
the shared bytes to each transport. No listener's task wakes per chunk: a listener's
handler awaits only the end of its connection. This took the event loop from 0.15 to
~0.05 ms CPU per listener-second at 1,000 listeners (bench/fanout.py).

Each listener is an `Outlet`: its transport, its `RingReader` (the cursor) and how its
bytes are framed. Outlets at the head of the ring whose bytes are the shared ones are
*live*: the step writes them the chunk and moves on. Everything else goes through
`_feed`, in the listener's own log context: a new listener (its burst, its header),
one behind (its socket was full at some step), one with its own interleaving (ICY).

The slow-reader policy needs no timer per write: a listener whose transport holds more
than `HIGH_WATER` unsent bytes is skipped at that step and keeps its cursor; once its
socket drains it catches up from the ring, a slice at a time; if it fell off the ring's
tail it is moved to the live point (`stream.reader_skipped`); and if it has taken nothing
for `drop_after` seconds (checked at each step, not by a timer) it is dropped.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable
from typing import Protocol

from radiod.audio.ring import Chunk, Ring, RingReader

# Unsent bytes a listener's transport may hold before it is skipped: asyncio's own
# default high-water mark, about 4 s at 128 kb/s. A listener that keeps up has none.
HIGH_WATER = 64 * 1024
# A catch-up writes at most this much at once (a 4 s burst at 320 kb/s is 160 kB), so a
# listener coming back from a long stall never queues the whole ring.
CATCH_UP_BYTES = 256 * 1024
# A listener that takes nothing for this long is dropped, never sooner: the patience the
# SSE channel gets too (web/sending.py), and what the slow-listener tests rely on.
MIN_DROP_SECONDS = 30.0
# Live listeners written per turn of the event loop: at ~11 us a write, 4,000 listeners in one
# pass held every other request. A request waits behind a slice per loop turn it needs, so
# its wait follows the slice: at 4,000 listeners (bench/fanout.py, asyncio, alternating runs)
# 500 gave /healthz p99 61-63 ms, 200 gave 30-36 ms for 12 % more loop CPU (0.058 against
# 0.052 ms per listener-second; Icecast 0.073).
SLICE = 200
_CRLF = b"\r\n"

Frame = Callable[[bytes, list[Chunk]], bytes]


class Counter(Protocol):
    """What counts a listener's bytes (`sessions.Listener`): the resume rule reads it."""

    def sent(self, count: int, last_seq: int | None = None) -> None: ...


class Outlet:
    """One listener's connection as the broadcast step sees it: small, slotted, no buffers.

    Args:
        transport: where its bytes go (`write`, `get_write_buffer_size`, `is_closing`).
        reader: its cursor into the ring.
        listener: counts what it was sent (the resume rule reads it).
        chunked: HTTP/1.1 chunked transfer coding around every write.
        first: called with the first chunk it gets; returns the bytes to send before it
            (Ogg header pages; b"" for MP3 or a resumed connection).
        frame: its own bytes for a batch, when they are not the shared ones (ICY);
            called as `frame(head, batch)`.
    """

    __slots__ = (
        "_blocked_since",
        "_context",
        "_done",
        "_first",
        "chunked",
        "frame",
        "held",
        "listener",
        "reader",
        "transport",
    )

    def __init__(
        self,
        transport: asyncio.WriteTransport,
        reader: RingReader,
        listener: Counter,
        *,
        chunked: bool,
        first: Callable[[Chunk], bytes],
        frame: Frame | None = None,
    ) -> None:
        self.transport = transport
        self.reader = reader
        self.listener = listener
        self.chunked = chunked
        self.frame = frame
        # Fault hook (web/faults.py): a held outlet is written nothing and never dropped.
        self.held = False
        self._first: Callable[[Chunk], bytes] | None = first
        self._blocked_since: float | None = None
        self._done: asyncio.Future[None] | None = None
        self._context: contextvars.Context | None = None

    def hold(self) -> None:
        """Stop writing to this connection and leave it open (the stall fault hook)."""
        self.held = True


class Fanout:
    """Writes each chunk a ring receives to every outlet; one per session.

    Args:
        ring: the session's ring; the fan-out watches it.
        drop_after: seconds a listener may take nothing before it is dropped (default:
            `ring_seconds`, never under MIN_DROP_SECONDS).
        slice_size: live listeners written per turn of the event loop.
    """

    def __init__(
        self, ring: Ring, *, drop_after: float | None = None, slice_size: int = SLICE
    ) -> None:
        self._ring = ring
        self._slice = slice_size
        self._drop_after = (
            drop_after if drop_after is not None else max(ring.ring_seconds, MIN_DROP_SECONDS)
        )
        # Insertion-ordered sets: live outlets get the shared bytes; the others are fed.
        self._live: dict[Outlet, None] = {}
        self._fed: dict[Outlet, None] = {}
        # The chunk being written to the live outlets, a slice per loop turn (SLICE).
        self._chunk: Chunk | None = None
        self._framed: bytes | None = None
        self._todo: list[Outlet] = []
        self._next = 0
        self._later: asyncio.Handle | None = None
        ring.watch(self._step)

    def __len__(self) -> int:
        return len(self._live) + len(self._fed)

    @property
    def drop_after(self) -> float:
        """Seconds a listener may take nothing before it is dropped."""
        return self._drop_after

    async def serve(self, outlet: Outlet) -> None:
        """Feed `outlet` from now until the ring ends.

        Returns when the ring closes; raises TimeoutError when the listener is dropped for
        taking nothing. The caller's cancellation (the client left) removes it.
        """
        loop = asyncio.get_running_loop()
        outlet._done = done = loop.create_future()
        outlet._context = contextvars.copy_context()
        self._fed[outlet] = None
        try:
            self._feed(outlet, time.monotonic())
            if self._ring.closed:
                self._end(outlet)
            await done
        finally:
            self._remove(outlet)

    def _remove(self, outlet: Outlet) -> None:
        self._live.pop(outlet, None)
        self._fed.pop(outlet, None)
        outlet._context = None

    def _step(self, chunk: Chunk | None) -> None:
        """The ring got `chunk` (None: it closed): one pass over every outlet."""
        self._write_live(len(self._todo))  # the previous chunk's last slices first, in order
        now = time.monotonic()
        if chunk is None:
            for outlet in [*self._live, *self._fed]:
                self._feed(outlet, now)
                self._end(outlet)
            return
        fed = [*self._fed]  # before the step: the ones it finds blocked wait for the next
        self._chunk, self._framed = chunk, None
        self._todo, self._next = [*self._live], 0
        self._write_live(self._slice)
        for outlet in fed:
            self._feed(outlet, now)

    def _write_live(self, count: int) -> None:
        """The current chunk's shared bytes to the next `count` live outlets; later the rest."""
        if self._later is not None:
            self._later.cancel()
            self._later = None
        chunk, todo, start = self._chunk, self._todo, self._next
        if chunk is None or start >= len(todo):
            return
        end = self._next = min(start + count, len(todo))
        data, live, blocked = chunk.data, self._live, []
        for index in range(start, end):
            outlet = todo[index]
            transport = outlet.transport
            if outlet not in live:
                continue  # left, or moved to the fed set, since the step began
            # A closed transport (uvloop raises on a write to it) waits in the fed set
            # for its handler, cancelled by the disconnect, to remove it.
            if (
                outlet.held
                or transport.get_write_buffer_size() > HIGH_WATER
                or transport.is_closing()
            ):
                blocked.append(outlet)
                continue
            if outlet.chunked:
                if self._framed is None:
                    self._framed = b"%x\r\n%b\r\n" % (len(data), data)
                transport.write(self._framed)
            else:
                transport.write(data)
            outlet.reader.advance(chunk)
            outlet.listener.sent(len(data), chunk.seq)
        now = time.monotonic()
        for outlet in blocked:
            del live[outlet]
            self._fed[outlet] = None
            outlet._blocked_since = now
        if end < len(todo):
            self._later = asyncio.get_running_loop().call_soon(self._write_live, self._slice)
        else:
            self._chunk, self._framed, self._todo = None, None, []

    def _feed(self, outlet: Outlet, now: float) -> None:
        """Write what `outlet` is owed, in its own log context; make it live once caught up."""
        context = outlet._context
        if context is not None and not outlet.held:
            context.run(self._catch_up, outlet, now)

    def _catch_up(self, outlet: Outlet, now: float) -> None:
        transport = outlet.transport
        if transport.is_closing():
            return  # the handler is being cancelled; it removes the outlet
        if transport.get_write_buffer_size() > HIGH_WATER:
            since = outlet._blocked_since = outlet._blocked_since or now
            if now - since > self._drop_after:
                self._drop(outlet)
            return
        outlet._blocked_since = None
        batch = outlet.reader.take(CATCH_UP_BYTES)
        if batch:
            self._write_batch(outlet, batch)
        if outlet.reader.at_head and outlet.frame is None and outlet in self._fed:
            del self._fed[outlet]
            self._live[outlet] = None

    def _write_batch(self, outlet: Outlet, batch: list[Chunk]) -> None:
        head = b""
        if outlet._first is not None:
            head, outlet._first = outlet._first(batch[0]), None
        if outlet.frame is not None:
            data = outlet.frame(head, batch)
        else:
            data = b"".join([head, *(chunk.data for chunk in batch)])
        if data:
            if outlet.chunked:
                outlet.transport.writelines((b"%x\r\n" % len(data), data, _CRLF))
            else:
                outlet.transport.write(data)
        outlet.listener.sent(len(data), batch[-1].seq)

    def _drop(self, outlet: Outlet) -> None:
        self._remove(outlet)
        if outlet._done is not None and not outlet._done.done():
            outlet._done.set_exception(TimeoutError())

    def _end(self, outlet: Outlet) -> None:
        self._remove(outlet)
        if outlet._done is not None and not outlet._done.done():
            outlet._done.set_result(None)
