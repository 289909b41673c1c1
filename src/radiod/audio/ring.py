"""A ring of encoded chunks that one session's listeners read from.

The mixer pushes `Chunk`s (whole codec frames or whole Ogg pages, ~250 ms each); every
listener holds a `RingReader`, a cursor into the ring. The ring knows nothing of codecs or
sockets (Icecast's `source.c`, not `format_mp3.c`): the only format fact it keeps is an
opaque header (Ogg's ID and comment pages) that each reader sends before its first chunk.

Everything here runs on the event loop thread. Listeners are served by one broadcast step
per push (`audio/fanout.py`, which `watch`es the ring) that takes from their readers without
waiting (`RingReader.take`); a reader that awaits (`RingReader.read`, for probes) waits on
one shared future per push. A reader that fell off the tail is moved to the live point;
nobody ever waits for it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from radiod.audio.outputs import TrackEvent

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A run of encoded audio that a listener may start at.

    Attributes:
        seq: position in the session's stream, from 0, one per chunk.
        stream_time: seconds since the session's stream began, of the chunk's first sample
            as a listener's decoder outputs it (encoder priming included).
        duration: seconds of audio in the chunk.
        data: whole codec frames (MP3/ADTS) or whole Ogg pages.
        track_start: the track that becomes audible at this chunk's first sample, if one
            does (the mixer cuts a chunk at the frame nearest each track start). It rides
            on the chunk so whoever writes the bytes knows where a title changes (ICY)
            without asking the session; the ring only carries it.
    """

    seq: int
    stream_time: float
    duration: float
    data: bytes
    track_start: TrackEvent | None = None

    @property
    def end_time(self) -> float:
        return self.stream_time + self.duration


class Ring:
    """Encoded chunks of the last `ring_seconds`, with readers that join `burst_seconds` back.

    Args:
        ring_seconds: how much audio to keep; a reader further behind is skipped forward.
        burst_seconds: how far behind the newest chunk a new reader starts, so its player
            fills its buffer at once (4 s: see `StreamConfig.burst_seconds`).
        on_skip: told the seconds of audio each skipped reader missed (metrics).
    """

    def __init__(
        self,
        *,
        ring_seconds: float,
        burst_seconds: float,
        on_skip: Callable[[float], None] | None = None,
    ) -> None:
        self.ring_seconds = ring_seconds
        self.burst_seconds = burst_seconds
        self.on_skip = on_skip
        self._chunks: deque[Chunk] = deque()
        # Absolute index (count of chunks ever pushed) of `_chunks[0]`: reader cursors are
        # absolute indexes, so dropping from the left never moves them.
        self._first_index = 0
        self._header = b""
        self._closed = False
        self._wakeup: asyncio.Future[None] | None = None
        self._watchers: list[Callable[[Chunk | None], None]] = []

    @property
    def header(self) -> bytes:
        return self._header

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def head_time(self) -> float:
        """Stream time of the end of the newest chunk (0.0 when empty)."""
        return self._chunks[-1].end_time if self._chunks else 0.0

    @property
    def tail_time(self) -> float:
        """Stream time of the start of the oldest chunk kept (0.0 when empty)."""
        return self._chunks[0].stream_time if self._chunks else 0.0

    def set_header(self, header: bytes) -> None:
        """Bytes every reader writes before its first chunk (Ogg header pages; b"" for MP3)."""
        self._header = header

    def watch(self, watcher: Callable[[Chunk | None], None]) -> None:
        """Call `watcher(chunk)` after every push, and `watcher(None)` once at close."""
        self._watchers.append(watcher)

    def push(self, chunk: Chunk) -> None:
        """Append `chunk`, forget chunks older than `ring_seconds`, tell watchers, wake readers."""
        if self._closed:
            return
        chunks = self._chunks
        chunks.append(chunk)
        horizon = chunk.end_time - self.ring_seconds
        while len(chunks) > 1 and chunks[0].end_time <= horizon:
            chunks.popleft()
            self._first_index += 1
        for watcher in self._watchers:
            watcher(chunk)
        self._wake()

    def reader(self, after_seq: int | None = None) -> RingReader:
        """A reader at the live point; with an empty ring it starts at the first chunk pushed.

        With `after_seq`, a reader that resumes right after that chunk instead (a listener
        picking up a dropped connection), if the ring still holds what follows it.
        """
        reader = RingReader(self)
        if after_seq is not None and self._chunks:
            index = self._first_index + (after_seq + 1 - self._chunks[0].seq)
            if self._first_index <= index <= self._end_index:
                reader._cursor = index
                reader._resumed_after = after_seq
        return reader

    def close(self) -> None:
        """End of stream: readers get what is left, then None."""
        if self._closed:
            return
        self._closed = True
        for watcher in self._watchers:
            watcher(None)
        self._wake()

    # -- for RingReader --------------------------------------------------------------
    @property
    def _end_index(self) -> int:
        return self._first_index + len(self._chunks)

    def _live_index(self) -> int:
        """Absolute index of the chunk a new reader starts at.

        The latest chunk starting at or before `head_time - burst_seconds`, so the burst is
        at least `burst_seconds` whenever the ring holds that much.
        """
        chunks = self._chunks
        if not chunks:
            return self._end_index
        target = chunks[-1].end_time - self.burst_seconds
        for offset in range(len(chunks) - 1, -1, -1):
            if chunks[offset].stream_time <= target + 1e-9:
                return self._first_index + offset
        return self._first_index

    def _slice(self, start: int) -> list[Chunk]:
        chunks = self._chunks
        # deque indexing is cheap near either end and readers are nearly always at the head.
        return [chunks[i] for i in range(start - self._first_index, len(chunks))]

    def _chunk(self, index: int) -> Chunk:
        return self._chunks[index - self._first_index]

    def _waiter(self) -> asyncio.Future[None]:
        """A future done at the next push or close.

        Every waiting reader gets a shield of one shared future: cancelling a reader (or
        closing it) cancels its shield only, never the future the others wait on.
        """
        if self._wakeup is None:
            self._wakeup = asyncio.get_running_loop().create_future()
        return asyncio.shield(self._wakeup)

    def _wake(self) -> None:
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)


class RingReader:
    """One listener's cursor into a `Ring`.

    `header` is what to write before the first chunk. Take it once the first `read()` has
    returned: the mixer sends the header before its first chunk, but both reach the ring
    through the event loop, possibly after this reader was created.
    """

    # One per listener: slotted, so thousands of them stay small.
    __slots__ = (
        "_closed",
        "_cursor",
        "_delivered_until",
        "_header",
        "_resumed_after",
        "_ring",
        "_waiting",
    )

    def __init__(self, ring: Ring) -> None:
        self._ring = ring
        self._cursor: int | None = ring._live_index() if ring._chunks else None
        self._header: bytes | None = None
        self._closed = False
        # Stream time up to which this reader has been given audio (for skip accounting).
        self._delivered_until: float | None = None
        self._waiting: asyncio.Future[None] | None = None
        self._resumed_after: int | None = None

    @property
    def header(self) -> bytes:
        return self._ring.header if self._header is None else self._header

    @property
    def closed(self) -> bool:
        return self._closed

    def resumes_after(self, seq: int) -> bool:
        """True when this reader was placed right after chunk `seq` (see `Ring.reader`)."""
        return self._resumed_after == seq

    @property
    def at_head(self) -> bool:
        """True when it has taken every chunk the ring holds (and the ring holds some)."""
        return self._cursor is not None and self._cursor == self._ring._end_index

    def take(self, max_bytes: int | None = None) -> list[Chunk]:
        """The chunks from the cursor to the head, now; [] when there are none.

        The first call that finds chunks returns the burst. A reader that fell off the tail
        is moved to the live point first. `max_bytes` caps the batch (at least one chunk),
        so a listener catching up is fed a slice at a time.
        """
        ring = self._ring
        if self._closed or not ring._chunks:
            return []
        if self._cursor is None:
            self._cursor = ring._live_index()
        elif self._cursor < ring._first_index:
            self._skip_to_live()
        chunks = ring._slice(self._cursor)
        if max_bytes is not None:
            size = 0
            for count, chunk in enumerate(chunks):
                size += len(chunk.data)
                if size > max_bytes and count:
                    chunks = chunks[:count]
                    break
        if chunks:
            self._deliver(chunks)
        return chunks

    def advance(self, chunk: Chunk) -> None:
        """`chunk`, the one at the cursor, was handed out by someone else (the broadcast step)."""
        assert self._cursor is not None
        self._cursor += 1
        self._delivered_until = chunk.end_time

    async def read(self) -> list[Chunk] | None:
        """Every chunk from the cursor to the head; waits for the next push when there is none.

        The first call returns the burst. Returns None once the reader or the ring is closed
        (after the ring's remaining chunks were read).
        """
        ring = self._ring
        while not self._closed:
            if batch := self.take():
                return batch
            if ring.closed:
                return None
            self._waiting = ring._waiter()
            try:
                await self._waiting
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._closed and task is not None and not task.cancelling():
                    return None  # woken by close(), not cancelled
                raise
            finally:
                self._waiting = None
        return None

    def close(self) -> None:
        """Stop reading; a pending or later `read()` returns None."""
        self._closed = True
        if self._waiting is not None:
            self._waiting.cancel()

    def _deliver(self, chunks: list[Chunk]) -> None:
        if self._header is None:
            self._header = self._ring.header
        assert self._cursor is not None
        self._cursor += len(chunks)
        self._delivered_until = chunks[-1].end_time

    def _skip_to_live(self) -> int:
        ring = self._ring
        live = ring._live_index()
        resume = ring._chunk(live).stream_time
        skipped = max(resume - (self._delivered_until or ring.tail_time), 0.0)
        log.warning("stream.reader_skipped", skipped_seconds=round(skipped, 3))
        if ring.on_skip is not None:
            ring.on_skip(skipped)
        self._cursor = live
        return live
