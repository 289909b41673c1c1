"""Listeners at half the bitrate and listeners that never read, beside a healthy one.

The slow ones may only cost themselves: the healthy listener of the same session keeps real
time, and the server's memory stays bounded while they hang on.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from tests.reliability.conftest import (
    BYTES_PER_SECOND,
    RadiodFactory,
    listen,
    raw_get,
    require_real_time,
    wait_for,
)

HALF_RATE_LISTENERS = 20
STALLED_LISTENERS = 100
WATCH_SECONDS = 15.0
# A stalled listener may hold aiohttp's write buffer (~64 kB) and one batch; a server that
# buffered for it without bound would grow by 16 kB/s each (24 MB over the watch).
RSS_GROWTH_LIMIT_KB = 16_000
SMALL_RCVBUF = 4096


async def _read_at_half_rate(reader: asyncio.StreamReader, counts: list[int], i: int) -> None:
    step = 0.25
    while True:
        data = await reader.read(int(BYTES_PER_SECOND / 2 * step))
        if not data:
            return
        counts[i] += len(data)
        await asyncio.sleep(step)


async def test_slow_and_stalled_listeners_cost_only_themselves(
    radiod_process: RadiodFactory,
) -> None:
    # The shortest ring, so a half-rate reader that falls off its tail is skipped, not kept.
    server = await radiod_process(stream={"ring_seconds": 5.0})
    async with aiohttp.ClientSession(server.url) as http:
        async with http.post("/create-session") as response:
            session_id = (await response.json())["sessionId"]
        healthy, healthy_task = await listen(http, session_id)
        await wait_for(lambda: healthy.seconds > 5, 30, "the healthy listener's burst")
        await require_real_time([healthy])
        baseline = server.status()["rss_kb"]

        path = f"/stream?session={session_id}"
        stalled = [
            await raw_get(server.port, path, rcvbuf=SMALL_RCVBUF) for _ in range(STALLED_LISTENERS)
        ]
        half = [
            await raw_get(server.port, path, rcvbuf=SMALL_RCVBUF)
            for _ in range(HALF_RATE_LISTENERS)
        ]
        counts = [0] * len(half)
        readers = [
            asyncio.create_task(_read_at_half_rate(reader, counts, i))
            for i, (reader, _) in enumerate(half)
        ]
        start = time.monotonic()
        peak = baseline
        while time.monotonic() - start < WATCH_SECONDS:
            peak = max(peak, server.status()["rss_kb"])
            await asyncio.sleep(0.5)
        listeners = (await (await http.get("/healthz")).json())["listeners"]
        gaps = healthy.finish()
        elapsed = time.monotonic() - start
        for task in [*readers, healthy_task]:
            task.cancel()
        for _, writer in [*stalled, *half]:
            writer.close()

    skipped = server.events("stream.reader_skipped")
    print(
        f"rss {baseline} -> peak {peak} kB; half-rate got {min(counts)}-{max(counts)} B "
        f"in {elapsed:.1f} s; {len(skipped)} skips; healthy gaps {gaps}"
    )
    assert gaps == [], "the healthy listener fell behind real time"
    assert listeners == 1 + STALLED_LISTENERS + HALF_RATE_LISTENERS  # none was lost or doubled
    # Each half-rate reader kept receiving (about half the bitrate, after its burst).
    assert min(counts) > BYTES_PER_SECOND / 2 * elapsed * 0.5
    assert peak - baseline < RSS_GROWTH_LIMIT_KB
