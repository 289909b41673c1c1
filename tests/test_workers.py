"""Mixers in worker processes (`audio.workers`), over real sockets, with real processes.

Sessions play, skip and announce tracks exactly as with in-process mixers; a worker killed
with SIGKILL is replaced and its sessions' listeners keep hearing a contiguous stream (or,
for Ogg, get a clean `session_ended`); the other worker's sessions never notice; fifty
sessions started together each get a first chunk before any gets a third; and shutdown
leaves no process, descriptor or task behind.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from radiod.audio.pool import WorkerPool
from radiod.audio.ring import Chunk
from radiod.catalog import FixedCatalog
from radiod.library import Track
from radiod.metrics import Metrics
from radiod.sessions import Session
from radiod.web.keys import MIXERS, REGISTRY
from tests.conftest import (
    ClientFactory,
    LogCapture,
    PageListener,
    create_session,
    decode_audio,
    make_config,
    wait_until,
)

WORKERS = {"workers": 2, "crossfade_seconds": 0.5}


def pool_of(client: TestClient) -> WorkerPool:
    pool = client.server.app[MIXERS]
    assert isinstance(pool, WorkerPool)
    return pool


def session_of(client: TestClient, session_id: str) -> Session:
    session = client.server.app[REGISTRY].get(session_id)
    assert session is not None
    return session


def assert_contiguous_ring(session: Session) -> None:
    """The ring's chunks follow each other in sequence and in stream time."""
    chunks: list[Chunk] = list(session.ring._chunks)
    assert chunks
    for before, after in itertools.pairwise(chunks):
        assert after.seq == before.seq + 1
        assert after.stream_time == pytest.approx(before.end_time, abs=0.03)


async def test_worker_sessions_play_skip_and_announce_tracks(
    radiod_client: ClientFactory, log_capture: LogCapture
) -> None:
    client = await radiod_client(audio=WORKERS)
    pool = pool_of(client)
    ids = [await create_session(client) for _ in range(2)]
    assert {pool.pid_of(i) for i in ids} == set(pool.pids())  # one on each worker
    listeners = [await PageListener(client, i).start() for i in ids]
    try:
        for listener in listeners:
            await listener.hears(6)
            await wait_until(lambda listener=listener: listener.tracks() != [])
        first = listeners[0]
        before = first.tracks()[-1]["nowPlaying"]["trackId"]
        assert (await client.post(f"/sessions/{first.session_id}/skip")).status == 202
        await wait_until(lambda: first.tracks()[-1]["nowPlaying"]["trackId"] != before)
    finally:
        for listener in listeners:
            await listener.stop()
    for listener in listeners:
        decode_audio(bytes(listener.audio))
        assert_contiguous_ring(session_of(client, listener.session_id))
    started = log_capture.events("mixer.track_started")
    assert {line["session_id"] for line in started} == set(ids)
    assert {line["worker_pid"] for line in started} == set(pool.pids())


async def test_a_killed_worker_is_replaced_and_its_listeners_keep_hearing(
    radiod_client: ClientFactory, log_capture: LogCapture
) -> None:
    client = await radiod_client(audio=WORKERS)
    pool = pool_of(client)
    victim_id, other_id = [await create_session(client) for _ in range(2)]
    victim, other = PageListener(client, victim_id), PageListener(client, other_id)
    await victim.start()
    await other.start()
    try:
        await victim.hears(5)
        await other.hears(5)
        killed = pool.pid_of(victim_id)
        survivor = pool.pid_of(other_id)
        assert killed is not None and killed != survivor
        os.kill(killed, signal.SIGKILL)
        await wait_until(lambda: log_capture.events("worker.started")[2:] != [])
        # Well past the burst the listener had in hand: the stream really goes on.
        await victim.hears(8)
        await other.hears(2)
    finally:
        await victim.stop()
        await other.stop()
    (died,) = log_capture.events("worker.died")
    assert (died["pid"], died["exit_code"]) == (killed, -signal.SIGKILL)
    assert killed not in pool.pids() and len(pool.pids()) == 2
    assert pool.pid_of(other_id) == survivor  # the other worker's session never moved
    (moved,) = log_capture.events("mixer.moved")
    assert moved["session_id"] == victim_id
    decode_audio(bytes(victim.audio))
    assert_contiguous_ring(session_of(client, victim_id))
    assert not victim.ended.is_set()


async def test_an_ogg_session_on_a_killed_worker_ends_cleanly(
    radiod_client: ClientFactory, log_capture: LogCapture
) -> None:
    """An Ogg stream cannot continue under a new encoder: it ends with session_ended."""
    client = await radiod_client(audio={**WORKERS, "codec": "opus", "sample_rate": 48000})
    pool = pool_of(client)
    session_id = await create_session(client)
    listener = await PageListener(client, session_id).start()
    try:
        await wait_until(lambda: len(listener.audio) > 8000)
        pid = pool.pid_of(session_id)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        async with asyncio.timeout(20):
            await listener.ended.wait()
        await wait_until(
            lambda: listener.events[-1:] != [] and listener.events[-1]["type"] == "error"
        )
    finally:
        await listener.stop()
    assert listener.events[-1] == {
        "type": "error",
        "message": "session_ended",
        "reason": "worker_died",
    }
    (failed,) = log_capture.events("session.failed")
    assert failed["session_id"] == session_id
    await wait_until(lambda: log_capture.events("session.reaped") != [])


class RecordingSink:
    """A `MixerSink` that records which session got which chunk, in arrival order."""

    def __init__(self, session_id: str, arrivals: list[tuple[str, int]]) -> None:
        self._id, self._arrivals = session_id, arrivals

    def on_chunk(self, chunk: Chunk) -> None:
        self._arrivals.append((self._id, chunk.seq))

    def on_header(self, header: bytes) -> None: ...
    def on_track(self, event: object) -> None: ...
    def on_next(self, track: Track) -> None: ...
    def on_track_failed(self, track: Track, reason: str, count: int) -> None: ...
    def on_failed(self, reason: str) -> None: ...


async def test_fifty_sessions_started_together_each_get_a_first_chunk_before_any_a_third(
    demo_tracks: list[Track],
) -> None:
    metrics = Metrics()
    pool = WorkerPool(make_config(audio=WORKERS), FixedCatalog(demo_tracks), 2, metrics)
    await pool.start()
    arrivals: list[tuple[str, int]] = []
    try:
        mixers = [pool.mixer(f"s{i}", RecordingSink(f"s{i}", arrivals)) for i in range(50)]
        for mixer in mixers:
            mixer.start()
        await wait_until(lambda: all(m.next_seq >= 3 for m in mixers), timeout=60)

        def counted() -> list[float]:
            return [
                metrics.registry.get_sample_value("radiod_chunks_produced_total", {"worker": name})
                or 0
                for name in ("worker-0", "worker-1")
            ]

        # Each worker's figures reach this process's metrics under its slot's label, summed
        # over a second (RelayStats) while the bursts are still being made.
        await wait_until(lambda: all(counted()) and sum(counted()) >= 50 * 3, timeout=10)
        for mixer in mixers:
            mixer.close()
    finally:
        await pool.close()
    third = next(i for i, (_, seq) in enumerate(arrivals) if seq == 2)
    assert {sid for sid, seq in arrivals[:third] if seq == 0} == {f"s{i}" for i in range(50)}
    # Within one worker the order is the scheduler's own: every first before any second.
    for pid_sessions in ({f"s{i}" for i in range(0, 50, 2)}, {f"s{i}" for i in range(1, 50, 2)}):
        mine = [seq for sid, seq in arrivals if sid in pid_sessions]
        assert mine[: len(pid_sessions)] == [0] * len(pid_sessions)


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def test_shutdown_leaves_no_worker_descriptor_or_task(
    radiod_client: ClientFactory, log_capture: LogCapture, tmp_path: Path
) -> None:
    fds_before = _open_fds()
    client = await radiod_client(audio=WORKERS)
    pids = pool_of(client).pids()
    session_id = await create_session(client)
    listener = await PageListener(client, session_id).start()
    await listener.hears(2)
    await listener.stop()
    await client.close()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} left behind"
    assert [line["exit_code"] for line in log_capture.events("worker.stopped")] == [0, 0]
    assert _open_fds() <= fds_before
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    # Every line a worker logged carries its session, and the audit finds the log clean.
    from_workers = [line for line in log_capture.lines() if "worker_pid" in line]
    assert from_workers and all(line["session_id"] == session_id for line in from_workers)
    log_path = tmp_path / "radiod.log"
    log_path.write_text(log_capture.buffer.getvalue())
    audit = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "radiod", "audit", str(log_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
