"""`Mixer`: a session's pipeline (`mix()`) run in this process at the pace of the wall clock.

The pipeline is unpaced and knows nothing of threads or listeners; a `Producer` steps it a
chunk at a time into a `MixerSink` (no asyncio here), and a `Scheduler` keeps it
`burst_seconds` ahead of real time. By default each `Mixer` has a scheduler (a thread) of
its own, as in-process mode always had; `audio/pool.py` runs the same producers in worker
processes instead, behind `RemoteMixer`, which has this class's surface. Stream time never
goes backwards across stop/start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

import structlog

from radiod.audio.encode import CONTENT_TYPES
from radiod.audio.mixer import mix
from radiod.audio.outputs import Output
from radiod.audio.producer import MixerSink, Producer
from radiod.audio.scheduler import Scheduler
from radiod.audio.stats import UNCOUNTED, MixerStats
from radiod.catalog import Catalog
from radiod.config import AudioConfig, StreamConfig

if TYPE_CHECKING:
    from radiod.library import Track

__all__ = ["LocalMixers", "Mixer", "MixerHandle", "MixerHost", "MixerSink"]

log = structlog.get_logger(__name__)


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
        stats: MixerStats = UNCOUNTED,
    ) -> None:
        self._audio = audio
        self.content_type = CONTENT_TYPES[audio.codec]
        # A scheduler (a thread) of its own: in-process mode, as radiod always had.
        self._scheduler = Scheduler()

        def pipeline(first_seq: int, time_offset: float, skip: threading.Event) -> Iterator[Output]:
            return mix(
                tracks, audio, seed=seed, skip=skip, first_seq=first_seq, time_offset=time_offset
            )

        # Alone on its thread, no other session's step can delay it: nothing is held ahead
        # (Producer's `hold`), so a skip is heard as soon as it was in radiod before workers.
        self._producer = Producer(pipeline, sink, stream.burst_seconds, stats=stats)
        self._scheduler.add(self._producer)
        self._lock = threading.Lock()
        self._closed = False

    @property
    def running(self) -> bool:
        return self._producer.running

    @property
    def failed(self) -> bool:
        """Gave up for good (MixerSink.on_failed was called)."""
        return self._producer.failed

    @property
    def stream_time(self) -> float:
        """Stream time of the end of the audio produced so far (admission control samples it)."""
        return self._producer.produced_until

    def prime(self) -> None:
        """Make the header and the first chunk now, so a first listener finds audio waiting."""
        if not self._closed:
            self._scheduler.prime(self._producer)

    def start(self) -> None:
        """Start, or resume where the stream stopped with a fresh burst; idempotent.

        A mixer that failed for good stays stopped: its session is ending."""
        with self._lock:
            if self._closed or self.running or self.failed:
                return
            if self._scheduler.start(self._producer):
                log.info(
                    "mixer.started",
                    stream_time=round(self.stream_time, 3),
                    codec=self._audio.codec,
                )

    def stop(self) -> None:
        """Stop producing; waits for a chunk under way (call it off the event loop)."""
        with self._lock:
            producer = self._producer
            if self._scheduler.stop(producer):
                producer.context.run(
                    log.info, "mixer.stopped", stream_time=round(self.stream_time, 3)
                )

    def close(self) -> None:
        """Stop for good and release the pipeline's open files now, not at garbage collection."""
        self.stop()
        with self._lock:
            self._closed = True
            self._scheduler.remove(self._producer)

    def skip(self) -> None:
        """Move to the next track with a short fade; safe from any thread."""
        self._producer.skip_event.set()


class MixerHandle(Protocol):
    """What a session holds of its mixer, wherever the pipeline runs (`Mixer`, `RemoteMixer`)."""

    content_type: str

    @property
    def running(self) -> bool: ...

    @property
    def failed(self) -> bool: ...

    @property
    def stream_time(self) -> float: ...

    def prime(self) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...

    def skip(self) -> None: ...


class MixerHost(Protocol):
    """Where sessions' pipelines run: this process (`LocalMixers`) or a `WorkerPool`."""

    @property
    def processes(self) -> int:
        """How many processes encode: admission's budget is per process (each has a GIL)."""
        ...

    def mixer(self, session_id: str, sink: MixerSink) -> MixerHandle: ...

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by this process and every process that encodes for it."""
        ...


class LocalMixers:
    """Every session's mixer in this process, each on a thread of its own (`audio.workers = 0`)."""

    processes = 1

    def __init__(
        self,
        catalog: Catalog,
        audio: AudioConfig,
        stream: StreamConfig,
        stats: MixerStats = UNCOUNTED,
    ) -> None:
        self._catalog = catalog
        self._audio = audio
        self._stream = stream
        self._stats = stats

    def mixer(self, session_id: str, sink: MixerSink) -> MixerHandle:
        return Mixer(self._catalog, self._audio, self._stream, sink, stats=self._stats)

    def cpu_seconds(self) -> float:
        return time.process_time()
