"""Does radiod stay flat over a long run? Sessions, listeners, SSE, churn and skips for N minutes.

    .venv/bin/python bench/soak.py [--minutes 30] [--sessions 50]

A real `radiod serve` subprocess with the default config (admission control on) serves the
built-in demo library. This process is the load: `--sessions` sessions, each with one
listener read by the tests' real-time reader (tests/reliability/conftest.py: every gap over
250 ms is an underrun) and one SSE client that reads all along and reconnects when dropped,
as the page does. Every `CHURN_SECONDS` one session is left (its clients close; the server
reaps it after `idle_timeout_seconds`) and a new one is created; every `SKIP_SECONDS` a
random session skips a track. A create answered 503 is retried after its `Retry-After`.

Every minute it prints the server's RSS, file descriptors, threads (/proc/PID) and asyncio
tasks (`GET /healthz`), the sessions and clients it counts, and the underruns. At the end: the
slope of RSS per minute (least squares over samples every `SAMPLE_SECONDS`, from when all
sessions were first admitted: RSS grows with them before) and the total underruns, beside
the targets: RSS flat, 0 underruns.

Underruns measure the machine as much as radiod: on the shared 2-core development machine,
with other test suites running (load average 6), even 10 sessions at 0.2 cores see gaps.
Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from radiod.demo import default_demo_dir, generate_demo_library
from tests.reliability.conftest import RadiodProcess, RealtimeReader

CHURN_SECONDS = 6.0
SKIP_SECONDS = 2.0
SAMPLE_SECONDS = 10.0
IDLE_TIMEOUT_SECONDS = 20.0  # churned sessions are reaped this soon after their clients left
CREATE_GIVE_UP_SECONDS = 120.0
TARGET_RSS_SLOPE_MB = 0.5  # per minute; "flat" with the allocator's noise


@dataclass
class Clients:
    """One session and what this bench keeps attached to it."""

    session_id: str
    reader: RealtimeReader
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.reader.response.close()


@dataclass
class Tally:
    underruns: int = 0  # gaps of sessions already closed; open ones are counted live
    worst_gap: float = 0.0
    refused: int = 0
    sse_drops: int = 0
    skips: int = 0
    churned: int = 0


async def _create(http: aiohttp.ClientSession, tally: Tally) -> str:
    """A new session, waiting out 503s as their Retry-After says."""
    deadline = time.monotonic() + CREATE_GIVE_UP_SECONDS
    while True:
        async with http.post("/create-session") as response:
            if response.status == 201:
                return (await response.json())["sessionId"]
            if response.status != 503 or time.monotonic() > deadline:
                raise RuntimeError(f"create-session: {response.status} {await response.text()}")
            tally.refused += 1
            await asyncio.sleep(float(response.headers.get("Retry-After", "1")))


async def _follow_events(http: aiohttp.ClientSession, session_id: str, tally: Tally) -> None:
    """Read SSE all along; reconnect (as the page does) when the server ends it."""
    while True:
        async with http.get(f"/events?session={session_id}") as response:
            while await response.content.readany():
                pass
        tally.sse_drops += 1
        await asyncio.sleep(2.0)


async def _open(http: aiohttp.ClientSession, tally: Tally) -> Clients:
    session_id = await _create(http, tally)
    response = await http.get(f"/stream?session={session_id}")
    reader = RealtimeReader(response, keep_bytes=0)
    clients = Clients(session_id, reader)
    clients.tasks = [
        asyncio.create_task(reader.run()),
        asyncio.create_task(_follow_events(http, session_id, tally)),
    ]
    return clients


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


async def soak(minutes: float, sessions: int) -> int:
    library = default_demo_dir()
    generate_demo_library(library)
    with tempfile.TemporaryDirectory(prefix="radiod-soak-") as tmp:
        server = RadiodProcess(
            Path(tmp),
            library,
            session={
                "max_sessions": sessions * 4,
                "idle_timeout_seconds": IDLE_TIMEOUT_SECONDS,
            },
        )
        try:
            await server.started()
            return await _run(server, minutes, sessions)
        finally:
            await asyncio.to_thread(server.stop)


async def _run(server: RadiodProcess, minutes: float, sessions: int) -> int:
    tally = Tally()
    rng = random.Random(1)
    live: list[Clients] = []
    rss: list[tuple[float, float]] = []
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(server.url, connector=connector, timeout=timeout) as http:
        start = time.monotonic()
        print(f"radiod pid {server.pid} at {server.url}; {sessions} sessions, {minutes:g} min")
        print(
            " min  rss MB  fds  threads  tasks  sessions  listeners  sse  "
            "underruns (min/total)  503s  sse drops  skips  churned"
        )

        def underruns() -> int:
            for clients in live:
                for gap in clients.reader.finish():
                    tally.worst_gap = max(tally.worst_gap, gap.seconds)
            return tally.underruns + sum(len(c.reader.gaps) for c in live)

        async def fill() -> None:
            while len(live) < sessions:
                live.append(await _open(http, tally))

        filling = asyncio.create_task(fill())
        end = start + minutes * 60
        next_churn = start + CHURN_SECONDS
        next_skip = start + SKIP_SECONDS
        next_sample = start
        next_row = start + 60
        filled_at: float | None = None
        row_underruns = 0
        while (now := time.monotonic()) < end:
            if filled_at is None and len(live) == sessions:
                filled_at = (now - start) / 60
            if now >= next_sample:
                rss.append(((now - start) / 60, server.status()["rss_kb"] / 1024))
                next_sample += SAMPLE_SECONDS
            if now >= next_skip and live:
                async with http.post(f"/sessions/{rng.choice(live).session_id}/skip") as response:
                    tally.skips += response.status == 202
                next_skip += SKIP_SECONDS
            if now >= next_churn and filling.done() and live:
                leaving = live.pop(rng.randrange(len(live)))
                tally.underruns += len(leaving.reader.gaps)
                leaving.close()
                tally.churned += 1
                filling = asyncio.create_task(fill())
                next_churn += CHURN_SECONDS
            if now >= next_row:
                status = server.status()
                async with http.get("/healthz") as response:
                    health = await response.json()
                total = underruns()
                print(
                    f"{(now - start) / 60:4.0f}  {status['rss_kb'] / 1024:6.1f}  "
                    f"{status['fds']:3d}  {status['threads']:7d}  {health['tasks']:5d}  "
                    f"{health['sessions']:8d}  {health['listeners']:9d}  "
                    f"{health['eventClients']:3d}  {total - row_underruns:9d} / {total:<9d}  "
                    f"{tally.refused:4d}  {tally.sse_drops:9d}  {tally.skips:5d}  "
                    f"{tally.churned:7d}",
                    flush=True,
                )
                row_underruns = total
                next_row += 60
            await asyncio.sleep(0.1)
        total = underruns()
        filling.cancel()
        with contextlib.suppress(asyncio.CancelledError, RuntimeError):
            await filling
        for clients in live:
            clients.close()

    since = filled_at if filled_at is not None else 0.0
    steady = [(m, mb) for m, mb in rss if m >= since]
    slope = _slope(steady)
    refusals = Counter(line["reason"] for line in server.events("session.admission_refused"))
    print()
    print(
        f"RSS slope: {slope:+.3f} MB/min from minute {since:.1f} (all {sessions} sessions "
        f"admitted), {len(steady)} samples; RSS {steady[0][1]:.1f} -> {steady[-1][1]:.1f} MB"
    )
    print(f"           target: flat (|slope| < {TARGET_RSS_SLOPE_MB} MB/min)")
    print(f"underruns: {total}, worst {tally.worst_gap:.2f} s (target: 0)")
    print(f"admission refusals by reason: {dict(refusals)}")
    return 0 if total == 0 and abs(slope) < TARGET_RSS_SLOPE_MB else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long (default 30)")
    parser.add_argument("--sessions", type=int, default=50, help="sessions kept live (50)")
    args = parser.parse_args()
    return asyncio.run(soak(args.minutes, args.sessions))


if __name__ == "__main__":
    sys.exit(main())
