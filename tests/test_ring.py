"""The ring on its own: synthetic chunks, real event loop, no codecs."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from radiod.audio.ring import Chunk, Ring

CHUNK = 0.25


def chunk(seq: int) -> Chunk:
    return Chunk(seq=seq, stream_time=seq * CHUNK, duration=CHUNK, data=seq.to_bytes(4, "big"))


def fill(ring: Ring, start: int, stop: int) -> None:
    for seq in range(start, stop):
        ring.push(chunk(seq))


async def test_new_reader_gets_a_burst_starting_on_a_chunk() -> None:
    ring = Ring(ring_seconds=10, burst_seconds=2)
    fill(ring, 0, 40)  # 10 s
    reader = ring.reader()
    burst = await reader.read()
    assert burst is not None
    assert [c.seq for c in burst] == list(range(32, 40))
    assert burst[0].stream_time == 8.0
    assert burst[-1].end_time - burst[0].stream_time == pytest.approx(2.0)


async def test_burst_covers_at_least_burst_seconds_when_chunks_are_uneven() -> None:
    ring = Ring(ring_seconds=10, burst_seconds=1)
    t = 0.0
    for seq, duration in enumerate([0.3, 0.3, 0.3, 0.3, 0.3, 0.3]):
        ring.push(Chunk(seq, t, duration, b"x"))
        t += duration
    burst = await ring.reader().read()
    assert burst is not None
    assert burst[-1].end_time - burst[0].stream_time >= 1.0
    assert burst[-1].end_time - burst[0].stream_time < 1.0 + 0.3


async def test_reader_on_an_empty_ring_starts_with_the_first_chunk() -> None:
    ring = Ring(ring_seconds=10, burst_seconds=4)
    reader = ring.reader()
    pending = asyncio.ensure_future(reader.read())
    await asyncio.sleep(0)
    assert not pending.done()
    fill(ring, 0, 1)
    assert [c.seq for c in await pending] == [0]


async def test_two_readers_get_the_same_chunks_from_one_wakeup() -> None:
    ring = Ring(ring_seconds=10, burst_seconds=1)
    fill(ring, 0, 8)
    a, b = ring.reader(), ring.reader()
    assert [c.seq for c in await a.read()] == [c.seq for c in await b.read()]
    waits = [asyncio.ensure_future(a.read()), asyncio.ensure_future(b.read())]
    await asyncio.sleep(0)
    shared = ring._wakeup
    assert shared is not None  # both readers wait on this one future
    fill(ring, 8, 9)
    got_a, got_b = await asyncio.gather(*waits)
    assert got_a == got_b
    assert got_a[0] is got_b[0]  # the same bytes object, not a copy per reader
    assert shared.done()


async def test_stalled_reader_jumps_to_live_and_others_see_no_gap() -> None:
    ring = Ring(ring_seconds=5, burst_seconds=1)
    fill(ring, 0, 8)
    steady, stalled = ring.reader(), ring.reader()
    seen = [c.seq for c in await steady.read()]
    first_stalled = await stalled.read()
    assert first_stalled is not None
    with structlog.testing.capture_logs() as logs:
        for seq in range(8, 60):  # 13 s more, far beyond ring_seconds
            ring.push(chunk(seq))
            seen += [c.seq for c in await steady.read()]
        resumed = await stalled.read()
    assert seen == list(range(seen[0], 60))  # contiguous: nobody held it back
    assert resumed is not None
    assert resumed[0].stream_time == pytest.approx(ring.head_time - 1.0)
    skipped = [e for e in logs if e["event"] == "stream.reader_skipped"]
    assert len(skipped) == 1
    assert skipped[0]["skipped_seconds"] == pytest.approx(resumed[0].stream_time - 2.0)


async def test_ring_keeps_only_ring_seconds() -> None:
    ring = Ring(ring_seconds=5, burst_seconds=1)
    fill(ring, 0, 1000)
    assert len(ring._chunks) <= 5 / CHUNK + 1
    assert ring.head_time - ring.tail_time >= 5
    assert ring.head_time == pytest.approx(250.0)


async def test_close_lets_readers_drain_then_ends_them() -> None:
    ring = Ring(ring_seconds=10, burst_seconds=1)
    fill(ring, 0, 4)
    reader = ring.reader()
    waiting = ring.reader()
    await waiting.read()
    pending = asyncio.ensure_future(waiting.read())
    await asyncio.sleep(0)
    ring.close()
    assert await pending is None
    assert await reader.read() is not None  # what was there is still delivered
    assert await reader.read() is None


async def test_cancelling_one_waiting_reader_leaves_the_others_waiting() -> None:
    ring = Ring(ring_seconds=10, burst_seconds=1)
    fill(ring, 0, 4)
    a, b = ring.reader(), ring.reader()
    await a.read()
    await b.read()
    wait_a, wait_b = asyncio.ensure_future(a.read()), asyncio.ensure_future(b.read())
    await asyncio.sleep(0)
    wait_a.cancel()
    await asyncio.sleep(0)
    assert not wait_b.done()
    fill(ring, 4, 5)
    assert [c.seq for c in await wait_b] == [4]


async def test_header_comes_with_the_reader_and_is_fixed_at_its_first_read() -> None:
    ring = Ring(ring_seconds=10, burst_seconds=1)
    reader = ring.reader()
    ring.set_header(b"OggS-head")
    fill(ring, 0, 2)
    await reader.read()
    assert reader.header == b"OggS-head"


async def test_closed_reader_reads_none() -> None:
    ring = Ring(ring_seconds=10, burst_seconds=1)
    fill(ring, 0, 4)
    reader = ring.reader()
    reader.close()
    assert await reader.read() is None


async def test_closing_a_waiting_reader_wakes_it_with_none() -> None:
    ring = Ring(ring_seconds=10, burst_seconds=1)
    fill(ring, 0, 4)
    closing, other = ring.reader(), ring.reader()
    await closing.read()
    await other.read()
    wait_closing = asyncio.ensure_future(closing.read())
    wait_other = asyncio.ensure_future(other.read())
    await asyncio.sleep(0)
    closing.close()
    assert await wait_closing is None
    assert not wait_other.done()
    fill(ring, 4, 5)
    assert [c.seq for c in await wait_other] == [4]
