"""A mixer worker process: many sessions' pipelines on one `Scheduler`, driven over a channel.

Started by `audio/pool.py` as `python -m radiod.audio.worker FD`, where FD is its end of a
Unix socket pair. It has no event loop, no HTTP and no listeners: only pipelines, so its
GIL is theirs alone (DESIGN §7). The main thread reads control messages; the scheduler's
thread produces chunks and sends them, with track events and log records, up the channel.

It plays from the parent's catalog rather than scanning the library again: the parent sends
its tracks at start and whenever they change, so track ids are the parent's by
construction and the library is probed once per machine, not once per process. A track that
fails here is dropped here at once and reported up, so the parent's catalog (and through it
every worker) leaves it out too.

It lives exactly as long as its channel: SIGINT and SIGTERM are ignored (a Ctrl-C reaches
the whole process group; the parent decides when workers end), and EOF (the parent exited,
however it died) ends it.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import structlog

from radiod.audio.channel import BlockingChannel
from radiod.audio.mixer import mix
from radiod.audio.outputs import Output, TrackEvent
from radiod.audio.producer import HOLD_SECONDS, Producer
from radiod.audio.ring import Chunk
from radiod.audio.scheduler import Scheduler
from radiod.audio.spares import SparePipelines
from radiod.config import AudioConfig, StreamConfig
from radiod.library import Track

SWITCH_INTERVAL_SECONDS = 0.001
# Chunk figures are summed for this long before they go up the channel (RelayStats).
STATS_SECONDS = 1.0


class _Link:
    """The worker's channel, where a send after the parent left is quietly dropped (the
    main thread sees EOF and ends the process)."""

    def __init__(self, channel: BlockingChannel) -> None:
        self.channel = channel

    def send(self, *message: Any) -> None:
        with contextlib.suppress(OSError):
            self.channel.send(message)


class ChannelSink:
    """`MixerSink` of one session: each call becomes a message tagged with its session id."""

    def __init__(self, link: _Link, session_id: str) -> None:
        self._send = link.send
        self._id = session_id

    def on_header(self, header: bytes) -> None:
        self._send("header", self._id, header)

    def on_chunk(self, chunk: Chunk) -> None:
        self._send("chunk", self._id, chunk)

    def on_track(self, event: TrackEvent) -> None:
        self._send("track", self._id, event)

    def on_next(self, track: Track) -> None:
        self._send("next", self._id, track)

    def on_track_failed(self, track: Track, reason: str, count: int) -> None:
        self._send("track_failed", self._id, track, reason, count)

    def on_failed(self, reason: str) -> None:
        self._send("failed", self._id, reason)


class RelayStats:
    """`MixerStats` of this process: each figure goes up the channel, and the pool counts it
    under this worker's label (the Prometheus registry lives in the parent).

    Chunk figures come ~4 times a second per session; a message for each was 5.6 % of a
    worker's py-spy samples at 85 sessions, and as many for the server to read. They are
    summed and sent at most once every STATS_SECONDS instead (the rest when the worker
    closes); rare figures go at once.
    """

    def __init__(self, link: _Link) -> None:
        self._send = link.send
        self._lock = threading.Lock()
        self._sent_at = time.monotonic()
        self._chunks, self._audio, self._busy = 0, 0.0, 0.0

    def chunk_produced(self, audio_seconds: float, busy_seconds: float, chunks: int = 1) -> None:
        with self._lock:
            self._chunks += chunks
            self._audio += audio_seconds
            self._busy += busy_seconds
            if time.monotonic() - self._sent_at < STATS_SECONDS:
                return
        self.flush()

    def flush(self) -> None:
        """Send the chunk figures summed so far."""
        with self._lock:
            figures = (self._audio, self._busy, self._chunks)
            self._chunks, self._audio, self._busy = 0, 0.0, 0.0
            self._sent_at = time.monotonic()
        if figures[2]:
            self._send("stats", "chunk_produced", *figures)

    def underrun(self) -> None:
        self._send("stats", "underrun")

    def pipeline_failed(self) -> None:
        self._send("stats", "pipeline_failed")

    def mixer_failed(self) -> None:
        self._send("stats", "mixer_failed")

    def tracks_failed(self, count: int) -> None:
        self._send("stats", "tracks_failed", count)


class SharedCatalog:
    """The parent's tracks, as last sent; a drop is applied here and reported up."""

    def __init__(self, link: _Link, tracks: tuple[Track, ...]) -> None:
        self._link = link
        self._tracks = tracks
        self._lock = threading.Lock()

    def tracks(self) -> tuple[Track, ...]:
        return self._tracks

    def update(self, tracks: tuple[Track, ...]) -> None:
        self._tracks = tracks

    def drop(self, track: Track, reason: str) -> None:
        with self._lock:
            if track in self._tracks:
                self._tracks = tuple(t for t in self._tracks if t != track)
        session_id = structlog.contextvars.get_contextvars().get("session_id")
        self._link.send("drop", track, reason, session_id)


def _forward(link: _Link) -> structlog.types.Processor:
    """The last processor: the event dict goes to the parent, which logs it as its own."""

    def forward(_: Any, __: str, event_dict: structlog.types.EventDict) -> Any:
        link.send("log", dict(event_dict))
        raise structlog.DropEvent

    return forward


class _ForwardHandler(logging.Handler):
    """Stdlib records (a library's warning) take the same way up."""

    def __init__(self, link: _Link) -> None:
        super().__init__()
        self._link = link

    def emit(self, record: logging.LogRecord) -> None:
        event = {"event": record.getMessage(), "level": record.levelname.lower()}
        self._link.send("log", {**structlog.contextvars.get_contextvars(), **event})


def configure_worker_logging(link: _Link, level: int) -> None:
    logging.basicConfig(handlers=[_ForwardHandler(link)], level=level, force=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.processors.format_exc_info,
            _forward(link),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )


class WorkerSessions:
    """The sessions of this process and what the parent asks of them."""

    def __init__(self, link: _Link, audio: AudioConfig, stream: StreamConfig, catalog: Any):
        self._link = link
        self._audio = audio
        self._burst = stream.burst_seconds
        self.catalog = catalog
        self._scheduler = Scheduler("radiod-worker")
        self._producers: dict[str, Producer] = {}
        self.spares = SparePipelines(self._pipeline)
        self._stats = RelayStats(link)

    def _pipeline(self, seq: int, offset: float, skip: threading.Event) -> Iterator[Output]:
        return mix(self.catalog, self._audio, skip=skip, first_seq=seq, time_offset=offset)

    def _producer(self, session_id: str, first_seq: int, time_offset: float) -> Producer:
        """The session's producer; a new one continues the stream where the parent says, or,
        for a new stream, starts on a spare pipeline whose first chunk is made already."""
        producer = self._producers.get(session_id)
        if producer is None:
            sink = ChannelSink(self._link, session_id)
            spare = self.spares.take() if (first_seq, time_offset) == (0, 0.0) else None
            if spare is None:
                producer = Producer(
                    self._pipeline,
                    sink,
                    self._burst,
                    first_seq=first_seq,
                    time_offset=time_offset,
                    stats=self._stats,
                    hold=HOLD_SECONDS,
                )
            else:
                output, skip = spare
                producer = Producer(
                    lambda *_: output,
                    sink,
                    self._burst,
                    skip_event=skip,
                    stats=self._stats,
                    hold=HOLD_SECONDS,
                )
            self._producers[session_id] = producer
            self._scheduler.add(producer)
        return producer

    def handle(self, kind: str, *args: Any) -> None:
        """One control message from the parent."""
        if kind == "tracks":
            self.catalog.update(args[0])
            self.spares.clear()
            return
        session_id = args[0]
        with structlog.contextvars.bound_contextvars(session_id=session_id):
            if kind in ("start", "prime"):
                producer = self._producer(*args)
                if kind == "start":
                    self._scheduler.start(producer)
                else:
                    self._scheduler.prime(producer)
                return
            producer = self._producers.get(session_id)
            if producer is None:
                return
            if kind == "stop":
                self._scheduler.stop(producer)
            elif kind == "skip":
                producer.skip_event.set()
            elif kind == "close":
                del self._producers[session_id]
                self._scheduler.remove(producer)

    def held(self) -> threading.Condition:
        return self._scheduler.held()

    def close(self) -> None:
        self.spares.close()
        for producer in list(self._producers.values()):
            self._scheduler.remove(producer)
        self._producers.clear()
        self._stats.flush()


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The control thread, the scheduler and the spare filler share this GIL. At the default
    # 5 ms a control message or a session's first chunk may wait that long per hand-over
    # while a spare is being made; 1 ms keeps first chunks quick at no measurable cost.
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    channel = BlockingChannel(socket.socket(fileno=int(argv[1])))
    link = _Link(channel)
    _, audio, stream, level, tracks = channel.receive()
    configure_worker_logging(link, level)
    worker = WorkerSessions(link, audio, stream, SharedCatalog(link, tracks))
    gc.freeze()  # as the server does (cli._serve): no long pause for what lives forever
    link.send("ready")
    try:
        while True:
            message = channel.receive()
            # Everything the parent sent together is handled before the next step is chosen:
            # fifty sessions started at once are fifty fresh producers, served in turn,
            # rather than the first one's burst while the rest are still being read.
            with worker.held():
                while message[0] != "exit":
                    worker.handle(*message)
                    if not channel.pending():
                        break
                    message = channel.receive()
            if message[0] == "exit":
                break
    except (EOFError, OSError):
        pass  # the parent is gone
    finally:
        worker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
