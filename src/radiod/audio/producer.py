"""`Producer`: one session's pipeline (`mix()`) as a scheduler runs it, a chunk at a time.

A producer knows where its stream stands (sequence, stream time), how far ahead of the
wall clock it should be (`due`), and how to turn what the pipeline yields into `MixerSink`
calls and log lines. It knows nothing of threads: a `Scheduler` steps it, in the HTTP
process (one thread per session) or in a worker process (many sessions on one thread).
"""

from __future__ import annotations

import contextvars
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

import structlog

from radiod.audio.outputs import (
    FallbackStarted,
    Header,
    MixerGaveUp,
    NextChosen,
    Output,
    PipelineFailed,
    TrackEvent,
    TrackFailed,
    TracksFailed,
)
from radiod.audio.ring import Chunk

if TYPE_CHECKING:
    from radiod.library import Track

log = structlog.get_logger(__name__)

# Seconds by which a first chunk since a start goes before any other chunk (`Producer.due`).
FIRST_CHUNK_PRIORITY = 3600.0
# Paths named in one `mixer.track_failed` line for a burst of failures.
MAX_LOGGED_FAILURES = 10

# Builds a session's pipeline continuing at (first_seq, time_offset), skipping on `skip`.
PipelineFactory = Callable[[int, float, threading.Event], Iterator[Output]]


class MixerSink(Protocol):
    """Where a mixer's output goes. Called from the mixer's thread, in stream order."""

    def on_header(self, header: bytes) -> None: ...

    def on_chunk(self, chunk: Chunk) -> None: ...

    def on_track(self, event: TrackEvent) -> None: ...

    def on_next(self, track: Track) -> None: ...

    def on_track_failed(self, track: Track, reason: str, count: int) -> None:
        """`track` could not be played (`count` > 1: it was the first of that many in a row)."""
        ...

    def on_failed(self, reason: str) -> None:
        """The mixer stopped for good: end the session's responses so clients restart."""
        ...


class Producer:
    """One session's pipeline, stepped one chunk at a time, `burst` seconds ahead of real time.

    Args:
        pipeline: builds the pipeline (lazily, at the first step) from where the stream is.
        sink: receives header, chunks and events.
        burst: how far ahead of the wall clock production runs while started.
        first_seq, time_offset: where the stream continues (a pipeline moved to a new worker).
        skip_event: the event the pipeline was built with, when it was built ahead (a spare).
    """

    def __init__(
        self,
        pipeline: PipelineFactory,
        sink: MixerSink,
        burst: float,
        *,
        first_seq: int = 0,
        time_offset: float = 0.0,
        skip_event: threading.Event | None = None,
    ) -> None:
        self._pipeline = pipeline
        self.sink = sink
        self._burst = burst
        self.skip_event = skip_event or threading.Event()
        self._output: Iterator[Output] | None = None
        self.next_seq = first_seq
        self.produced_until = time_offset  # stream time of the end of the last chunk sent
        self.running = False
        self.failed = False  # gave up for good (MixerSink.on_failed was called)
        # Produce up to here even while stopped: a session primed at creation has its first
        # chunk waiting when its first listener arrives.
        self._prime_until = -math.inf
        self._anchor_wall = 0.0
        self._anchor_stream = 0.0
        self._fresh = False  # nothing made since the last anchor (see `due`)
        self.context = contextvars.Context()

    # -- state, read and changed under the scheduler's lock ------------------------------
    @property
    def active(self) -> bool:
        """Whether the scheduler should step it at all."""
        if self.failed:
            return False
        return self.running or self.produced_until <= self._prime_until

    def due(self) -> float:
        """Monotonic time at which its lead over the wall clock falls to the burst.

        The scheduler steps the producer with the earliest due time first: the one with
        the least audio in hand. A fresh start is due `burst` seconds in the past, so fifty
        sessions started at once each get a first chunk before any gets a second. Before
        all of them, in the order they asked: a producer that has made nothing since it was
        started or primed, since a listener may be waiting with no audio at all (its first
        byte), while every other has its burst in hand or under way.
        """
        if self._fresh:
            return self._anchor_wall - FIRST_CHUNK_PRIORITY
        return self._anchor_wall + (self.produced_until - self._anchor_stream) - self._burst

    def anchor(self, context: contextvars.Context) -> None:
        """Count the lead from now: the live point is what has been produced so far."""
        self._anchor_wall = time.monotonic()
        self._anchor_stream = self.produced_until
        self._fresh = True
        self.context = context

    def start(self, context: contextvars.Context) -> None:
        self.anchor(context)
        self.running = True
        self._prime_until = -math.inf

    def prime(self, context: contextvars.Context) -> None:
        """Produce the header and one chunk now, without starting (see `_prime_until`)."""
        if self._output is None and not self.running:
            self.anchor(context)
            self._prime_until = self.produced_until

    def close(self) -> None:
        """Release the pipeline's open files now (never while it is being stepped)."""
        output, self._output = self._output, None
        if output is not None:
            output.close()

    # -- stepping, on the scheduler's thread, inside `self.context` ----------------------
    def step(self) -> None:
        """Advance the pipeline to its next chunk, handing everything on the way to the sink.

        A pipeline that raises has failed beyond what it recovers from by itself (it
        rebuilds itself after a bad join): the session ends, so its clients restart on a
        new one rather than hold a socket that carries nothing.
        """
        try:
            if self._output is None:
                self._output = self._pipeline(self.next_seq, self.produced_until, self.skip_event)
            while True:
                item = next(self._output)
                self._dispatch(item)
                if isinstance(item, Chunk):
                    return
        except Exception as exc:
            log.error(
                "mixer.failed",
                stream_time=round(self.produced_until, 3),
                error=str(exc) if isinstance(exc, MixerGaveUp) else repr(exc),
                exc_info=not isinstance(exc, MixerGaveUp),
            )
            self.failed = True
            self.running = False
            self.close()
            self.sink.on_failed("mixer_failed")
            log.info("mixer.stopped", stream_time=round(self.produced_until, 3))

    def _dispatch(self, item: Output) -> None:
        sink = self.sink
        if isinstance(item, Chunk):
            self.produced_until = item.end_time
            self.next_seq = item.seq + 1
            self._fresh = False
            sink.on_chunk(item)
        elif isinstance(item, TrackEvent):
            track = item.track
            log.info(
                "mixer.track_started",
                track_id=track.track_id,
                path=str(track.path),
                title=track.title,
                artist=track.artist,
                starts_at=round(item.starts_at, 3),
                next_track_id=item.next_track.track_id if item.next_track else None,
            )
            sink.on_track(item)
        elif isinstance(item, TrackFailed | TracksFailed):
            self._track_failures(item)
        elif isinstance(item, NextChosen):
            sink.on_next(item.track)
        elif isinstance(item, FallbackStarted):
            log.warning(
                "mixer.fallback_silence", reason=item.reason, retry_seconds=item.silence_seconds
            )
        elif isinstance(item, PipelineFailed):
            log.error(
                "mixer.pipeline_failed",
                track_id=item.track.track_id if item.track else None,
                path=str(item.track.path) if item.track else None,
                error=item.error,
                failures=item.failures,
                traceback=item.traceback,
            )
        elif isinstance(item, Header):
            sink.on_header(item.data)

    def _track_failures(self, item: TrackFailed | TracksFailed) -> None:
        """One log line and one sink call, however many tracks failed in a row."""
        failures = item.failures if isinstance(item, TracksFailed) else (item,)
        first = failures[0]
        log.warning(
            "mixer.track_failed",
            track_id=first.track.track_id,
            path=str(first.track.path),
            reason=first.reason,
            failed=len(failures),
            # A burst (a folder gone): the rest by path, bounded so the line stays readable.
            also_failed=[str(f.track.path) for f in failures[1:MAX_LOGGED_FAILURES]] or None,
        )
        self.sink.on_track_failed(first.track, first.reason, len(failures))
