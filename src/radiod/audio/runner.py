"""`Mixer`: runs a session's pipeline (`mix()`) in a thread at the pace of the wall clock.

The pipeline is unpaced and knows nothing of threads or listeners; this runner keeps it
`burst_seconds` ahead of real time and hands what it produces to a `MixerSink` (no asyncio
here), so the same loop can later run in a worker process with the sink writing to a pipe
(DESIGN §7). Stream time never goes backwards across stop/start.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

import structlog

from radiod.audio.encode import CONTENT_TYPES
from radiod.audio.mixer import mix
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
from radiod.catalog import Catalog
from radiod.config import AudioConfig, StreamConfig

if TYPE_CHECKING:
    from radiod.library import Track

log = structlog.get_logger(__name__)

# Paths named in one `mixer.track_failed` line for a burst of failures.
MAX_LOGGED_FAILURES = 10


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


class MixerStats(Protocol):
    """Figures a mixer reports as it runs, from its own thread (`radiod.metrics.WorkerStats`).

    A mixer in a worker process reports to a stats object that relays them to the HTTP
    process, where they count under that worker's label.
    """

    def chunk_produced(self, audio_seconds: float, busy_seconds: float) -> None: ...

    def underrun(self) -> None:
        """Production fell behind the wall clock: listeners have used up their burst."""
        ...

    def pipeline_failed(self) -> None: ...

    def mixer_failed(self) -> None: ...

    def tracks_failed(self, count: int) -> None: ...


class _Uncounted:
    """`MixerStats` for a mixer nobody counts (tests, benchmarks)."""

    def chunk_produced(self, audio_seconds: float, busy_seconds: float) -> None:
        pass

    def underrun(self) -> None:
        pass

    def pipeline_failed(self) -> None:
        pass

    def mixer_failed(self) -> None:
        pass

    def tracks_failed(self, count: int) -> None:
        pass


class Mixer:
    """Runs `mix()` in a thread, `burst_seconds` ahead of the wall clock, into a `MixerSink`.

    Args:
        tracks: what to play (a catalog that may change, or a fixed list).
        audio: the session's audio settings.
        stream: `burst_seconds` sets how far ahead of the live point production runs.
        sink: receives header, chunks and events (from the mixer thread).
        seed: reproducible playlist order.
        stats: where it reports its speed, underruns and failures.
    """

    def __init__(
        self,
        tracks: Catalog | Sequence[Track],
        audio: AudioConfig,
        stream: StreamConfig,
        sink: MixerSink,
        *,
        seed: int | None = None,
        stats: MixerStats | None = None,
    ) -> None:
        self._tracks = tracks
        self._audio = audio
        self._burst = stream.burst_seconds
        self._sink = sink
        self._seed = seed
        self._stats = stats if stats is not None else _Uncounted()
        self.content_type = CONTENT_TYPES[audio.codec]
        self._skip = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._output: Iterator[Output] | None = None
        self._next_seq = 0
        self._produced_until = 0.0  # stream time of the end of the last chunk sent
        self.failed = False  # gave up for good (MixerSink.on_failed was called)

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stop.is_set()

    @property
    def stream_time(self) -> float:
        """Stream time of the end of the audio produced so far (admission control samples it)."""
        return self._produced_until

    def start(self) -> None:
        """Start, or resume where the stream stopped with a fresh burst; idempotent.

        A mixer that failed for good stays stopped: its session is ending."""
        with self._lock:
            if self.failed:
                return
            thread = self._thread
            if thread is not None and thread.is_alive():
                if not self._stop.is_set():
                    return
                thread.join()  # a stop is under way: let it finish, then resume
            stop = self._stop = threading.Event()
            # The caller's structlog contextvars (session_id) follow into the thread.
            context = contextvars.copy_context()
            self._thread = threading.Thread(
                target=context.run, args=(self._run, stop), name="radiod-mixer", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it (blocking: call it off the event loop); idempotent."""
        with self._lock:
            thread = self._thread
            self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def close(self) -> None:
        """Stop for good and release the pipeline's open files now, not at garbage collection."""
        self.stop()
        with self._lock:
            output, self._output = self._output, None
        if output is not None:
            output.close()

    def skip(self) -> None:
        """Move to the next track with a short fade; safe from any thread."""
        self._skip.set()

    def _run(self, stop: threading.Event) -> None:
        if self._output is None:
            self._output = mix(
                self._tracks,
                self._audio,
                seed=self._seed,
                skip=self._skip,
                first_seq=self._next_seq,
                time_offset=self._produced_until,
            )
        output = self._output
        # Re-anchor: the live point is what has been produced, and a fresh burst goes out now.
        anchor_stream = self._produced_until
        log.info("mixer.started", stream_time=round(anchor_stream, 3), codec=self._audio.codec)
        pace = _Pace(self._stats, self._burst)
        try:
            while not stop.is_set():
                item = next(output)
                self._dispatch(item)
                if isinstance(item, Chunk):
                    ahead = pace.produced(item.duration, self._produced_until - anchor_stream)
                    if ahead > 0 and stop.wait(ahead):
                        break
                    pace.resumed()
        except Exception as exc:
            # Failures the pipeline could recover from never get here (it rebuilds itself):
            # this one ends the session, so its clients restart on a new one rather than
            # hold a socket that carries nothing.
            log.error(
                "mixer.failed",
                stream_time=round(self._produced_until, 3),
                error=str(exc) if isinstance(exc, MixerGaveUp) else repr(exc),
                exc_info=not isinstance(exc, MixerGaveUp),
            )
            self._stats.mixer_failed()
            self.failed = True
            self._output = None
            output.close()
            stop.set()
            self._sink.on_failed("mixer_failed")
        log.info("mixer.stopped", stream_time=round(self._produced_until, 3))

    def _dispatch(self, item: Output) -> None:
        sink = self._sink
        if isinstance(item, Chunk):
            self._produced_until = item.end_time
            self._next_seq = item.seq + 1
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
                "mixer.fallback_silence",
                reason=item.reason,
                retry_seconds=item.silence_seconds,
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
        self._sink.on_track_failed(first.track, first.reason, len(failures))


class _Pace:
    """One run's production against the wall clock: how long to wait, and what to report.

    Busy time is the wall time from the end of one pacing wait to the next chunk, so the
    realtime factor it gives includes waiting for the GIL (DESIGN §7: the cost that matters).
    An underrun is counted when production falls behind the wall clock, once per spell,
    and only after the run was once ahead of it: a first chunk slower than real time (a
    cold start) keeps a listener waiting for its first bytes, it does not run it dry.
    """

    def __init__(self, stats: MixerStats, burst: float) -> None:
        self._stats = stats
        self._burst = burst
        self._anchor_wall = self._busy_since = time.monotonic()
        self._led = False
        self._behind = False

    def produced(self, duration: float, produced: float) -> float:
        """A chunk of `duration` brought the run to `produced` seconds: seconds to wait."""
        now = time.monotonic()
        self._stats.chunk_produced(duration, now - self._busy_since)
        lead = produced - (now - self._anchor_wall)
        behind = self._led and lead < 0
        if behind and not self._behind:
            self._stats.underrun()
        self._behind = behind
        self._led = self._led or lead > 0
        return lead - self._burst

    def resumed(self) -> None:
        self._busy_since = time.monotonic()
