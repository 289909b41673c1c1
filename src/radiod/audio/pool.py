"""`WorkerPool`: sessions' mixers in worker processes, one per core by default (DESIGN §8).

The HTTP process keeps the event loop, fan-out and SSE; each worker (`audio/worker.py`)
runs many sessions' pipelines on one scheduler thread. A session holds a `RemoteMixer`,
which has the in-process `Mixer`'s surface, so `Session`, `MixerSwitch` and admission do
not know where their audio is made. What a worker produces arrives on one channel per
worker (`audio/channel.py`), read by one task on the event loop, and goes to the session
through the same `MixerSink` (`_LoopSink`) as an in-process mixer's output.

New sessions go to the worker with the fewest. A worker that dies is replaced; its sessions
move to a live worker and continue from where their ring's head is (the last chunk
received: sequence and stream time go on, and the new pipeline fills a fresh burst at
once, so listeners hear at most the burst's worth of gap). A stream whose codec has a
header (Ogg Opus) cannot continue under a new encoder, so those sessions, and every session
when no worker can be started, end cleanly through `Session.fail` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import structlog

from radiod.audio.channel import frame, read_message
from radiod.audio.encode import CONTENT_TYPES
from radiod.audio.producer import MixerSink
from radiod.audio.stats import STAT_NAMES, MixerStats
from radiod.catalog import Catalog
from radiod.config import AudioConfig, Config
from radiod.metrics import Metrics

log = structlog.get_logger(__name__)

# How often the parent's catalog is checked for changes to send to workers (an identity check).
CATALOG_POLL_SECONDS = 0.5
# A worker must be importing and ready within this, or start-up fails with a clear error.
READY_TIMEOUT_SECONDS = 60.0
# At shutdown, a worker that has not exited this long after `exit` is killed.
EXIT_TIMEOUT_SECONDS = 5.0
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class WorkerStartError(Exception):
    """A worker process could not be started; the message is user-facing."""


def worker_count(audio: AudioConfig) -> int:
    """`audio.workers` resolved: -1 means one per core this process may run on."""
    if audio.workers >= 0:
        return audio.workers
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live child (0 once it is gone), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def call_on(loop: asyncio.AbstractEventLoop, fn: Any, *args: Any) -> None:
    """`fn(*args)` on `loop`: at once when called there, else soon (never after it closed)."""
    try:
        here = asyncio.get_running_loop() is loop
    except RuntimeError:
        here = False
    if here:
        fn(*args)
    else:
        with contextlib.suppress(RuntimeError):  # the loop closed at shutdown
            loop.call_soon_threadsafe(fn, *args)


class Worker:
    """The parent's end of one worker process: its channel and the sessions it runs."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        writer: Any,
        slot: int,
        stats: MixerStats,
    ) -> None:
        self.process = process
        self.slot = slot  # its place in the pool: a replacement takes it over
        self.stats = stats  # its mixers' figures, counted under its slot's label
        self.pid = process.pid
        self.reader = reader
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        self.mixers: dict[str, RemoteMixer] = {}
        self.alive = True
        self._outbox: list[bytes] = []

    def send(self, *message: Any) -> None:
        """Queue a control message; from any thread (stop and close run in executors)."""
        call_on(self._loop, self._queue, frame(message))

    def _queue(self, data: bytes) -> None:
        # Everything sent in one turn of the loop leaves in one write, so the worker reads
        # it as one batch (`worker.main`): fifty sessions started together are seen together
        # there, not the first one's burst while the rest are still on the way.
        if not self._outbox:
            self._loop.call_soon(self._flush)
        self._outbox.append(data)

    def _flush(self) -> None:
        data, self._outbox = b"".join(self._outbox), []
        if data and self.alive and not self._writer.is_closing():
            self._writer.write(data)

    def close_channel(self) -> None:
        self._flush()
        self.alive = False
        self._writer.close()


class RemoteMixer:
    """A session's mixer in a worker: the in-process `Mixer`'s surface, over a channel.

    Control calls return at once (the worker acts on them in order); `stream_time` is the
    end of the last chunk received, so admission sees each session's lateness as before.
    """

    def __init__(self, pool: WorkerPool, session_id: str, sink: MixerSink, codec: str) -> None:
        self._pool = pool
        self.session_id = session_id
        self.sink = sink
        self.content_type = CONTENT_TYPES[codec]
        self.worker: Worker | None = None
        self.running = False
        self.failed = False
        self.closed = False
        self.stream_time = 0.0  # end of the last chunk received (the ring's head)
        self.next_seq = 0
        self.header = b""

    def _send(self, kind: str, *args: Any) -> None:
        if self.worker is not None:
            self.worker.send(kind, self.session_id, *args)

    def prime(self) -> None:
        self._send("prime", self.next_seq, self.stream_time)

    def start(self) -> None:
        if self.running or self.failed or self.closed:
            return
        self.running = True
        log.info(
            "mixer.started",
            session_id=self.session_id,
            stream_time=round(self.stream_time, 3),
            worker_pid=self.worker.pid if self.worker else None,
        )
        self._send("start", self.next_seq, self.stream_time)

    def stop(self) -> None:
        if not self.running:
            return
        self.running = False
        self._send("stop")
        log.info(
            "mixer.stopped", session_id=self.session_id, stream_time=round(self.stream_time, 3)
        )

    def close(self) -> None:
        self.stop()
        if not self.closed:
            self.closed = True
            self._send("close")
            self._pool.forget(self)

    def skip(self) -> None:
        self._send("skip")

    def fail(self, reason: str) -> None:
        """End the session (on the loop): the worker gave up on it, or died and it cannot move."""
        if not self.failed:
            self.failed = True
            self.running = False
            self.sink.on_failed(reason)

    def received(self, kind: str, args: tuple[Any, ...]) -> None:
        """A message from the worker about this session (on the loop)."""
        sink = self.sink
        if kind == "chunk":
            chunk = args[0]
            self.stream_time = chunk.end_time
            self.next_seq = chunk.seq + 1
            sink.on_chunk(chunk)
        elif kind == "header":
            self.header = args[0]
            sink.on_header(args[0])
        elif kind == "track":
            sink.on_track(args[0])
        elif kind == "next":
            sink.on_next(args[0])
        elif kind == "track_failed":
            sink.on_track_failed(*args)
        elif kind == "failed":
            self.fail(args[0])


class WorkerPool:
    """`audio.workers` processes encoding every session's audio (a `MixerHost`).

    Args:
        config: the audio and stream settings each worker's pipelines use, and the log level.
        catalog: the tracks; workers get its tracks and every change to them.
        count: how many workers (`worker_count(config.audio)`).
        metrics: counts each worker's figures as `worker-<slot>` (a replacement takes over its
            predecessor's slot, so labels stay few however often workers die).
    """

    def __init__(self, config: Config, catalog: Catalog, count: int, metrics: Metrics) -> None:
        self._config = config
        self._metrics = metrics
        self._catalog = catalog
        self.processes = count
        self._workers: list[Worker] = []
        self._homeless: dict[str, RemoteMixer] = {}  # their worker died; a new one is starting
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._sent_tracks = catalog.tracks()
        self._loop = asyncio.get_running_loop()  # made on the loop it serves

    # -- MixerHost ----------------------------------------------------------------------
    def mixer(self, session_id: str, sink: MixerSink) -> RemoteMixer:
        mixer = RemoteMixer(self, session_id, sink, self._config.audio.codec)
        if self._workers:
            self._place(mixer, min(self._workers, key=lambda w: len(w.mixers)))
        else:
            self._homeless[session_id] = mixer
        return mixer

    def cpu_seconds(self) -> float:
        """This process, its live workers, and the workers that already exited."""
        children = os.times()
        dead = children.children_user + children.children_system
        return time.process_time() + dead + sum(_process_cpu_seconds(w.pid) for w in self._workers)

    # -- for tests and operators ----------------------------------------------------------
    def pids(self) -> list[int]:
        return [worker.pid for worker in self._workers]

    def pid_of(self, session_id: str) -> int | None:
        """The worker running `session_id` now."""
        return next((w.pid for w in self._workers if session_id in w.mixers), None)

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Start every worker and wait until each is ready (WorkerStartError otherwise)."""
        workers = await asyncio.gather(*(self._spawn(slot) for slot in range(self.processes)))
        self._workers.extend(workers)
        self._background(self._follow_catalog())

    async def close(self) -> None:
        """Ask every worker to exit and reap it (killed after EXIT_TIMEOUT_SECONDS)."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        workers, self._workers = self._workers, []
        await asyncio.gather(*(self._stop(worker) for worker in workers))

    async def _stop(self, worker: Worker) -> None:
        worker.send("exit")
        await asyncio.sleep(0)  # let the write go out before the channel closes
        worker.close_channel()
        try:
            code = await asyncio.wait_for(worker.process.wait(), EXIT_TIMEOUT_SECONDS)
        except TimeoutError:
            worker.process.kill()
            code = await worker.process.wait()
        log.info("worker.stopped", pid=worker.pid, exit_code=code)

    def forget(self, mixer: RemoteMixer) -> None:
        """A closed session's mixer (from any thread: sessions close in an executor)."""
        call_on(self._loop, self._forget, mixer)

    def _forget(self, mixer: RemoteMixer) -> None:
        self._homeless.pop(mixer.session_id, None)
        if mixer.worker is not None:
            mixer.worker.mixers.pop(mixer.session_id, None)

    def _background(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _spawn(self, slot: int) -> Worker:
        parent_end, child_end = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": _import_path()}
        try:
            with child_end:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "radiod.audio.worker",
                    str(child_end.fileno()),
                    pass_fds=(child_end.fileno(),),
                    stdin=asyncio.subprocess.DEVNULL,
                    env=env,
                )
            reader, writer = await asyncio.open_unix_connection(sock=parent_end)
        except OSError as exc:
            parent_end.close()
            raise WorkerStartError(f"cannot start a mixer worker: {exc}") from None
        worker = Worker(process, reader, writer, slot, self._metrics.worker(f"worker-{slot}"))
        level = _LEVELS.get(self._config.log.level, logging.ERROR)
        worker.send("init", self._config.audio, self._config.stream, level, self._sent_tracks)
        ready = False
        try:
            ready = await self._ready(worker)
        finally:
            if not ready:  # also when cancelled (shutdown): never leave a child behind
                worker.close_channel()
                process.kill()
                code = await asyncio.shield(process.wait())
        if not ready:
            raise WorkerStartError(f"mixer worker {process.pid} did not start (exit {code})")
        log.info("worker.started", pid=worker.pid)
        self._background(self._watch(worker))
        return worker

    async def _ready(self, worker: Worker) -> bool:
        """Wait for the worker's `ready` (log records before it are logged)."""
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                while (message := await read_message(worker.reader))[0] != "ready":
                    self._dispatch(worker, message)
        except (TimeoutError, asyncio.IncompleteReadError):
            return False
        return True

    def _place(self, mixer: RemoteMixer, worker: Worker) -> None:
        mixer.worker = worker
        worker.mixers[mixer.session_id] = mixer

    # -- on the event loop: a worker's messages, its death ---------------------------------
    async def _watch(self, worker: Worker) -> None:
        """Dispatch the worker's messages until its channel ends; then replace it."""
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                self._dispatch(worker, await read_message(worker.reader))
        worker.close_channel()
        code = await worker.process.wait()
        if self._closing:
            return
        with contextlib.suppress(ValueError):
            self._workers.remove(worker)
        log.error("worker.died", pid=worker.pid, exit_code=code, sessions=len(worker.mixers))
        self._homeless.update(worker.mixers)
        worker.mixers.clear()
        try:
            self._workers.append(await self._spawn(worker.slot))
        except WorkerStartError as exc:
            log.error("worker.start_failed", error=str(exc))
        self._rehome()

    def _rehome(self) -> None:
        """Move homeless sessions to the least busy workers; end them if none is left."""
        homeless, self._homeless = self._homeless, {}
        for mixer in homeless.values():
            if not self._workers or mixer.header:
                # An Ogg stream cannot go on under a new encoder (its pages need the header
                # the listeners already had); with no worker, nothing can make audio at all.
                mixer.worker = None
                mixer.fail("worker_died")
                continue
            self._place(mixer, min(self._workers, key=lambda w: len(w.mixers)))
            log.warning(
                "mixer.moved",
                session_id=mixer.session_id,
                worker_pid=mixer.worker.pid if mixer.worker else None,
                seq=mixer.next_seq,
                stream_time=round(mixer.stream_time, 3),
            )
            if mixer.running:
                mixer.running = False
                mixer.start()  # continues at next_seq and stream_time: the ring's head

    def _dispatch(self, worker: Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "log":
            _reemit(message[1], worker.pid)
        elif kind == "stats":
            if message[1] in STAT_NAMES:
                getattr(worker.stats, message[1])(*message[2:])
        elif kind == "drop":
            track, reason, session_id = message[1:]
            with structlog.contextvars.bound_contextvars(session_id=session_id):
                self._catalog.drop(track, reason)
        else:
            mixer = worker.mixers.get(message[1])
            if mixer is not None:
                mixer.received(kind, message[2:])

    async def _follow_catalog(self) -> None:
        """Send the catalog's tracks to every worker whenever they change (a rescan, a drop)."""
        while True:
            await asyncio.sleep(CATALOG_POLL_SECONDS)
            tracks = self._catalog.tracks()
            if tracks is not self._sent_tracks:
                self._sent_tracks = tracks
                for worker in self._workers:
                    worker.send("tracks", tracks)


def _reemit(record: dict[str, Any], pid: int) -> None:
    """Log a worker's record as this process's own: one log, each line with its session_id."""
    level = logging.getLevelName(str(record.pop("level", "info")).upper())
    event = record.pop("event", "worker.log")
    log.log(level if isinstance(level, int) else logging.INFO, event, worker_pid=pid, **record)


def _import_path() -> str:
    """PYTHONPATH for a worker: radiod's own source first, so it runs the parent's code."""
    here = str(Path(__file__).resolve().parents[2])
    inherited = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join(p for p in (here, inherited) if p)
