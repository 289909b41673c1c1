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
from collections import deque
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
from radiod.audio.stats import UNCOUNTED, LeadWatch, MixerStats

if TYPE_CHECKING:
    from radiod.library import Track

log = structlog.get_logger(__name__)

# Production on a shared scheduler (a worker process's) runs this much further ahead than
# delivery: chunks wait in the producer until their time (see `Producer.step`). One worker
# thread runs many sessions, so one session's slow step (opening and decoding the next
# track, ~40 ms, several times that on a loaded machine) delays every other session's next
# chunk; when sessions started together change tracks together, those delays add up
# (measured: 0.3-0.7 s stalls with ten 8-second-track sessions on a loaded 2-core machine).
# Chunks made a second early absorb such a stall, so listeners receive a steady stream. The
# price: a skip is heard this much later, so a producer alone on its thread (in-process
# mode) holds nothing: no other session can stall it.
HOLD_SECONDS = 1.0
# Seconds by which a first chunk since a start goes before any other chunk (`Producer.due`).
FIRST_CHUNK_PRIORITY = 3600.0
# A stream filling its burst is urgent only once its listener has less than this in hand
# (`Producer.due`); until then, streams already playing keep their hand-over on time.
FILL_MARGIN_SECONDS = 1.0
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
        stats: where it reports its speed, underruns and failures.
        hold: seconds made ahead of delivery (HOLD_SECONDS on a shared scheduler, else 0).
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
        stats: MixerStats = UNCOUNTED,
        hold: float = 0.0,
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
        self._filling = False  # its burst not made yet since the last anchor (see `due`)
        # Made but not yet handed to the sink: (release time, a chunk and what came before it).
        self._held: deque[tuple[float, list[Output]]] = deque()
        # Held chunks go out from the scheduler's releasing thread as well as its stepping
        # one (`Scheduler`): one at a time, in order.
        self._handing = threading.RLock()
        self.context = contextvars.Context()
        self._stats = stats
        self._hold = hold
        self._lead = LeadWatch()

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
        return self._release_time(self.produced_until) - self._hold

    def rank(self) -> float:
        """Which of the producers that are due goes first: the smallest rank.

        The due time itself, except for a burst still filling: it ranks by its listener's
        need, as urgent only once that listener has less than FILL_MARGIN_SECONDS in hand.
        It is still made at once when nothing else is due (a fresh listener wants its whole
        burst: Chromium stutters with less, DESIGN §7), but a storm of new sessions no longer
        takes a worker until all their bursts are made while the streams already playing
        wait for theirs.
        """
        due = self.due()
        if self._fresh or not self._filling:
            return due
        runs_dry = self._anchor_wall + (self.produced_until - self._anchor_stream)
        return max(due, runs_dry - FILL_MARGIN_SECONDS)

    def release_due(self) -> float:
        """Monotonic time at which the oldest held chunk goes to the sink (inf: none held)."""
        return self._held[0][0] if self._held else math.inf

    def _release_time(self, stream_time: float) -> float:
        """When the audio before `stream_time` must be out: its lead is then the burst."""
        return self._anchor_wall + (stream_time - self._anchor_stream) - self._burst

    def anchor(self, context: contextvars.Context) -> None:
        """Count the lead from now: the live point is what has been produced so far."""
        self._anchor_wall = time.monotonic()
        self._anchor_stream = self.produced_until
        self._fresh = True
        self._filling = True
        self._lead.reset()
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
        """Make the pipeline's next chunk; it goes to the sink, with everything made on the
        way, when its time comes (`release`), at once during a burst.

        A pipeline that raises has failed beyond what it recovers from by itself (it
        rebuilds itself after a bad join): the session ends, so its clients restart on a
        new one rather than hold a socket that carries nothing.
        """
        made: list[Output] = []
        began = time.monotonic()
        try:
            if self._output is None:
                self._output = self._pipeline(self.next_seq, self.produced_until, self.skip_event)
            while not isinstance(item := next(self._output), Chunk):
                made.append(item)
        except Exception as exc:
            self.flush()
            for earlier in made:
                self._dispatch(earlier)
            self._fail(exc)
            return
        made.append(item)
        self._held.append((self._release_time(item.stream_time), made))
        self.produced_until = item.end_time
        self.next_seq = item.seq + 1
        self._fresh = False
        self._filling = (
            self._filling and self._release_time(self.produced_until) <= time.monotonic()
        )
        self._count(item, began)
        self.release()

    def _count(self, chunk: Chunk, began: float) -> None:
        """Report the step: its wall time (GIL waits included: the cost that matters, DESIGN
        §7), and an underrun when a running stream's production fell behind the wall clock."""
        now = time.monotonic()
        self._stats.chunk_produced(chunk.duration, now - began)
        lead = (self.produced_until - self._anchor_stream) - (now - self._anchor_wall)
        if self.running and self._lead.fell_behind(lead):
            self._stats.underrun()

    def release(self) -> None:
        """Hand the sink every held chunk whose time has come."""
        self._hand_over(time.monotonic())

    def flush(self) -> None:
        """Hand the sink everything held (stopping: the stream resumes after the last chunk)."""
        self._hand_over(math.inf)

    def _hand_over(self, until: float) -> None:
        with self._handing:
            while self._held and self._held[0][0] <= until:
                for item in self._held.popleft()[1]:
                    self._dispatch(item)

    def _fail(self, exc: Exception) -> None:
        log.error(
            "mixer.failed",
            stream_time=round(self.produced_until, 3),
            error=str(exc) if isinstance(exc, MixerGaveUp) else repr(exc),
            exc_info=not isinstance(exc, MixerGaveUp),
        )
        self._stats.mixer_failed()
        self.failed = True
        self.running = False
        self.close()
        self.sink.on_failed("mixer_failed")
        log.info("mixer.stopped", stream_time=round(self.produced_until, 3))

    def _dispatch(self, item: Output) -> None:
        sink = self.sink
        if isinstance(item, Chunk):
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
            self._stats.pipeline_failed()
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
        self._stats.tracks_failed(len(failures))
        self.sink.on_track_failed(first.track, first.reason, len(failures))
