"""The broadcast step: one pass per chunk writes the shared bytes to every listener's socket.

Over real loopback sockets: listeners of one session get identical bytes; a listener that
stops reading costs the others nothing, is skipped forward when it comes back after falling
off the ring, and is dropped once it takes nothing for `drop_after`; streaming creates no
task per chunk; and listeners that leave leave no descriptor, task or registration behind.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Callable

import pytest
import structlog

from radiod.audio.fanout import HIGH_WATER, Fanout, Outlet
from radiod.audio.ring import Chunk, Ring
from radiod.loops import loop_factory
from radiod.sessions import Listener
from radiod.web.keys import REGISTRY
from tests.conftest import ClientFactory, create_session, decode_audio, read_bytes, wait_until

CHUNK_BYTES = 16_384
CHUNK_SECONDS = 0.25
BURST_BYTES_128K = 4 * 16_000


def chunk(seq: int) -> Chunk:
    """A chunk whose bytes say which one it is: its seq, repeated."""
    data = seq.to_bytes(4, "big") * (CHUNK_BYTES // 4)
    return Chunk(seq=seq, stream_time=seq * CHUNK_SECONDS, duration=CHUNK_SECONDS, data=data)


class _ServerSide(asyncio.Protocol):
    def __init__(self, made: asyncio.Queue[asyncio.Transport]) -> None:
        self._made = made
        self.lost = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # uvloop's transports are no asyncio.Transport subclasses, hence no isinstance.
        # A small send buffer, so a client that stops reading fills it quickly.
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        self._made.put_nowait(transport)


class Loopback:
    """A loopback server whose connections' server-side transports the test writes to."""

    def __init__(self) -> None:
        self._made: asyncio.Queue[asyncio.Transport] = asyncio.Queue()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ServerSide(self._made), "127.0.0.1", 0)

    async def connect(self) -> tuple[asyncio.Transport, asyncio.StreamReader]:
        """(server-side transport, client reader) of a new connection."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a tiny receive buffer
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=CHUNK_BYTES * 2)
        self._writers.append(writer)
        return await self._made.get(), reader

    async def close_one(self, index: int) -> None:
        """The client of connection `index` leaves."""
        self._writers[index].close()
        await self._writers[index].wait_closed()

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[], asyncio.Future]]:
    """`await connect()`: (server-side transport, client StreamReader)."""
    loopback = Loopback()
    await loopback.start()
    yield loopback.connect  # type: ignore[misc]
    await loopback.close()


async def test_chunks_written_a_slice_per_loop_turn_stay_in_order(
    connect: Callable[[], asyncio.Future],
) -> None:
    ring = Ring(ring_seconds=5.0, burst_seconds=CHUNK_SECONDS)
    fanout = Fanout(ring, slice_size=3)
    ring.push(chunk(0))
    pairs = [await connect() for _ in range(10)]
    listeners = [Listener(f"l{i}", "c") for i in range(10)]
    tasks = [serve(fanout, ring, t, x) for (t, _), x in zip(pairs, listeners, strict=True)]
    for _, reader in pairs:
        await reader.readexactly(CHUNK_BYTES)
    ring.push(chunk(1))
    assert [x.last_seq for x in listeners].count(1) == 3  # one slice now, the rest later
    ring.push(chunk(2))  # before the loop turned: chunk 1's last slices go out first
    assert [x.last_seq for x in listeners].count(1) == 7
    assert [x.last_seq for x in listeners].count(2) == 3
    for _, reader in pairs:
        seen: list[int] = []
        await asyncio.wait_for(read_seqs(reader, seen, 2), 5)
        assert seen == [1, 2]
    assert [x.last_seq for x in listeners] == [2] * 10
    ring.close()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)


def serve(
    fanout: Fanout, ring: Ring, transport: asyncio.Transport, listener: Listener | None = None
) -> asyncio.Task[None]:
    listener = listener or Listener("l", "c")
    outlet = Outlet(transport, ring.reader(), listener, chunked=False, first=lambda c: b"")
    return asyncio.ensure_future(fanout.serve(outlet))


async def read_seqs(reader: asyncio.StreamReader, into: list[int], count: int) -> None:
    for _ in range(count):
        block = await reader.readexactly(CHUNK_BYTES)
        into.append(int.from_bytes(block[:4], "big"))


async def test_a_stalled_listener_costs_the_others_nothing_then_is_skipped_and_dropped(
    connect: Callable[[], asyncio.Future],
) -> None:
    ring = Ring(ring_seconds=1.0, burst_seconds=CHUNK_SECONDS)
    fanout = Fanout(ring, drop_after=1.0)
    healthy_transport, healthy = await connect()
    stalled_transport, stalled = await connect()
    ring.push(chunk(0))
    healthy_task = serve(fanout, ring, healthy_transport)
    stalled_task = serve(fanout, ring, stalled_transport)
    seen: list[int] = []
    with structlog.testing.capture_logs() as logs:
        # The stalled client reads nothing while 6 s of stream (ring: 1 s) go out.
        for seq in range(1, 25):
            ring.push(chunk(seq))
            await read_seqs(healthy, seen, 1 if seq > 1 else 2)
        assert stalled_transport.get_write_buffer_size() > HIGH_WATER - CHUNK_BYTES
        # It comes back: it drains its socket, and is moved to the live point.
        drained = await stalled.read(1 << 20)
        while len(drained) < 4 or stalled_transport.get_write_buffer_size():
            drained += await asyncio.wait_for(stalled.read(1 << 20), 5)
        ring.push(chunk(25))
        await read_seqs(healthy, seen, 1)
        await wait_until(lambda: any(e["event"] == "stream.reader_skipped" for e in logs), 5)
        # And stops again, for longer than drop_after: dropped, while the other goes on.
        started = time.monotonic()
        seq = 26
        while not stalled_task.done():
            assert time.monotonic() - started < 10, "the stalled listener was never dropped"
            ring.push(chunk(seq))
            await read_seqs(healthy, seen, 1)
            seq += 1
            await asyncio.sleep(0.05)
    with pytest.raises(TimeoutError):
        await stalled_task
    assert time.monotonic() - started >= 1.0  # not before drop_after
    assert seen == list(range(seq))  # every chunk, in order, none held back
    assert len(fanout) == 1
    ring.close()
    await asyncio.wait_for(healthy_task, 5)
    assert len(fanout) == 0


async def test_streaming_creates_no_task_per_chunk(connect: Callable[[], asyncio.Future]) -> None:
    ring = Ring(ring_seconds=5.0, burst_seconds=CHUNK_SECONDS)
    fanout = Fanout(ring)
    ring.push(chunk(0))
    pairs = [await connect() for _ in range(20)]
    tasks = [serve(fanout, ring, transport) for transport, _ in pairs]
    for _, reader in pairs:
        await reader.readexactly(CHUNK_BYTES)  # each got its burst
    loop = asyncio.get_running_loop()
    created = 0
    default = loop.get_task_factory()

    def counting(loop: asyncio.AbstractEventLoop, coro, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal created
        created += 1
        return default(loop, coro, **kwargs) if default else asyncio.Task(coro, loop=loop)

    loop.set_task_factory(counting)
    try:
        before = len(asyncio.all_tasks())
        for seq in range(1, 41):
            ring.push(chunk(seq))
            for _, reader in pairs:
                await reader.readexactly(CHUNK_BYTES)
        assert created == 0
        assert len(asyncio.all_tasks()) == before
    finally:
        loop.set_task_factory(default)
    ring.close()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)


async def test_listeners_of_one_session_hear_the_same_decodable_bytes(
    radiod_client: ClientFactory,
) -> None:
    client = await radiod_client()
    session_id = await create_session(client)
    responses = [await client.get(f"/stream?session={session_id}") for _ in range(6)]
    streams = [await read_bytes(r, BURST_BYTES_128K + 32_000) for r in responses]
    last = streams[-1]
    for data in streams:
        start = data.find(last[:4096])
        assert start >= 0, "a listener's bytes are not part of the others' stream"
        overlap = min(len(data) - start, len(last))
        assert overlap > 16_000
        assert data[start : start + overlap] == last[:overlap]
        decode_audio(data)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_listeners_that_leave_leave_nothing_behind(radiod_client: ClientFactory) -> None:
    client = await radiod_client()
    session_id = await create_session(client)
    first = await client.get(f"/stream?session={session_id}")
    await read_bytes(first, 8000)
    session = client.app[REGISTRY].get(session_id)
    fds, tasks = _open_fds(), len(asyncio.all_tasks())
    others = [await client.get(f"/stream?session={session_id}") for _ in range(30)]
    for response in others:
        await read_bytes(response, 8000)
    assert len(session.fanout) == 31
    for response in others:
        response.close()
    await wait_until(lambda: session.listener_count == 1 and len(session.fanout) == 1, 10)
    await wait_until(lambda: _open_fds() <= fds and len(asyncio.all_tasks()) <= tasks, 10)
    await read_bytes(first, 16_000)  # the one that stayed still hears the stream


async def _a_closed_connection_costs_the_others_nothing() -> None:
    loopback = Loopback()
    await loopback.start()
    ring = Ring(ring_seconds=5.0, burst_seconds=CHUNK_SECONDS)
    fanout = Fanout(ring)
    ring.push(chunk(0))
    (gone, gone_reader), (stays, stays_reader) = [await loopback.connect() for _ in range(2)]
    tasks = [serve(fanout, ring, gone), serve(fanout, ring, stays)]
    for reader in (gone_reader, stays_reader):
        await reader.readexactly(CHUNK_BYTES)
    server_side = gone.get_protocol()
    await loopback.close_one(0)
    await wait_until(lambda: server_side.lost, 5)  # type: ignore[attr-defined]
    ring.push(chunk(1))  # uvloop raises on a write to a closed transport: none is made
    seen: list[int] = []
    await asyncio.wait_for(read_seqs(stays_reader, seen, 1), 5)
    assert seen == [1]
    ring.close()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    await loopback.close()


def test_a_closed_connection_costs_the_others_nothing_on_either_loop() -> None:
    """Between a disconnect and its handler's removal, the step must skip that transport."""
    asyncio.run(_a_closed_connection_costs_the_others_nothing())
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_a_closed_connection_costs_the_others_nothing())


def test_the_event_loop_is_asyncio_s_unless_uvloop_is_chosen() -> None:
    assert loop_factory("asyncio") == ("asyncio", None)
    uvloop = pytest.importorskip("uvloop")
    assert loop_factory("uvloop") == ("uvloop", uvloop.new_event_loop)
    assert loop_factory("auto")[0] == "uvloop"
