"""How fast is `radiod audit`? Generate a realistic log, audit it, compare with counting lines.

    PYTHONPATH=src python bench/audit.py [--mb 200] [--keep] [--log EXISTING.log]

The synthetic log is shaped like a busy radiod: listeners arrive, load the page (access
lines), create a session, attach events and audio, hear a track every few minutes, leave;
health probes hit /healthz. A few visits are split (events on a stale session), a few never
press play, and the ring occasionally logs an untagged warning, so every code path runs.
The reference is the floor for reading the same file: `wc -l`, and a pure-Python loop over
the file's lines in binary mode.
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from radiod.audit import LogAuditor

T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
ARRIVAL_SECONDS = 2.0  # a new listener every ~2 s → ~900 concurrent at 30-minute visits
TRACK_SECONDS = 210.0
HEALTHZ_SECONDS = 10.0

Record = tuple[float, dict[str, Any]]


def _ctx(client: str, channel: str, sid: str | None = None, **extra: Any) -> dict[str, Any]:
    ctx = {"client_id": client, "remote": "203.0.113.7", "channel": channel, **extra}
    if sid is not None:
        ctx["session_id"] = sid
    return ctx


def _access(request: str, status: int, size: int, ctx: dict[str, Any]) -> dict[str, Any]:
    return {"event": f'"{request}" {status} {size} 0.000412', **ctx}


def visit(rng: random.Random, n: int, start: float) -> Iterator[Record]:
    """One listener's lines, in time order."""
    client = f"{rng.getrandbits(128):032x}"[:22]
    sid = f"session_{rng.getrandbits(128):032x}"[:30]
    t = start
    page = _ctx(client, "page")
    yield t, _access("GET / HTTP/1.1", 200, 5120, page)
    for asset in ("app.js", "app.css", "favicon.svg"):
        t += rng.uniform(0.01, 0.1)
        yield t, _access(f"GET /static/{asset} HTTP/1.1", 200, 4000, page)
    t += 0.2
    api = _ctx(client, "api", sid)
    yield t, {"session_id": sid, "sessions": 900, "event": "session.created", **api}
    yield t, _access("POST /create-session HTTP/1.1", 201, 120, api)
    ecid, lid = f"{n:012x}", f"L{n:011x}"
    events_sid = sid
    if n % 500 == 7:  # a split: the page's SSE lands on a stale session
        events_sid = f"session_stale{n:017x}"
    ev = _ctx(client, "events", events_sid, event_client_id=ecid)
    t += 0.05
    yield t, {"event": "events.connected", **ev}
    duration = rng.uniform(300, 3300)
    plays = n % 50 != 3  # some never press play
    au = _ctx(client, "audio", sid, listener_id=lid)
    if plays:
        t += rng.uniform(1, 10)
        yield t, {"range": None, "listeners": 1, "event": "stream.connected", **au}
        end = t + duration
        track = 0
        while t + TRACK_SECONDS < end:
            t += TRACK_SECONDS
            track += 1
            yield (
                t,
                {
                    "track_id": f"t{track}",
                    "title": f"Demo track {track}",
                    "starts_at": track * TRACK_SECONDS,
                    "event": "mixer.track_started",
                    "session_id": sid,
                    "level": "info",
                },
            )
            if n % 200 == 11:  # the ring warns from a task without the request context
                yield t, {"skipped_seconds": 1.5, "event": "stream.reader_skipped"}
            if track % 3 == 0:
                yield (
                    t,
                    _access(f"GET /sessions/{sid} HTTP/1.1", 200, 300, _ctx(client, "api", sid)),
                )
        t = end
        yield t, {"bytes_sent": int(duration * 16000), "event": "stream.closed", **au}
        yield t, _access(f"GET /stream?session={sid} HTTP/1.1", 200, int(duration * 16000), au)
    else:
        t += duration
    t += 0.3
    yield t, {"event": "events.closed", **ev}
    yield t, _access(f"GET /events?session={events_sid} HTTP/1.1", 200, 9000, ev)
    t += 60
    yield t, {"session_id": sid, "reason": "idle", "event": "session.reaped"}


def healthz() -> Iterator[Record]:
    t = 0.0
    probe = _ctx("probe", "api")
    while True:
        yield t, _access("GET /healthz HTTP/1.1", 200, 15, probe)
        t += HEALTHZ_SECONDS


def generate(path: Path, megabytes: int, seed: int = 1) -> int:
    """Write about `megabytes` of log to `path`; returns the line count."""
    rng = random.Random(seed)
    target = megabytes * 1024 * 1024
    written = lines = 0
    # Every visit is a generator of its own lines; a heap interleaves them in time order.
    heap: list[tuple[float, int, dict[str, Any], Iterator[Record]]] = []
    seq = 0

    def push(it: Iterator[Record]) -> None:
        nonlocal seq
        item = next(it, None)
        if item is not None:
            seq += 1
            heapq.heappush(heap, (item[0], seq, item[1], it))

    push(healthz())
    next_arrival, visits = 0.0, 0
    with path.open("wb") as out:
        out.write(orjson.dumps({"event": "server.started", "level": "info", "ts": _ts(0)}) + b"\n")
        while written < target:
            if next_arrival <= heap[0][0]:
                push(visit(rng, visits, next_arrival))
                visits += 1
                next_arrival += rng.expovariate(1 / ARRIVAL_SECONDS)
                continue
            t, _, record, rest = heapq.heappop(heap)
            record.setdefault("level", "info")
            record["ts"] = _ts(t)
            data = orjson.dumps(record) + b"\n"
            out.write(data)
            written += len(data)
            lines += 1
            push(rest)
        # The tail a real log ends with: the writer died mid-line.
        out.write(b'{"event":"stream.closed","bytes_sent":12')
    return lines + 2


def _ts(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def python_count(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def audit_once(path: Path) -> dict[str, Any]:
    """One audit, timed, in this process (the parent runs it in a fresh child for a clean RSS)."""
    auditor = LogAuditor()

    def run() -> Any:
        with path.open("rb") as f:
            auditor.feed(f, str(path))
        return auditor.report()

    took, report = timed(run)
    s = report.summary
    return {
        "seconds": took,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "fast_lines": auditor.fast_lines,
        "found": f"{s.sessions:,} sessions, {s.listeners:,} listeners, {s.splits} splits, "
        f"{s.untagged} untagged, {s.skipped_lines} skipped",
    }


def audit_in_child(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--audit-only", str(path)],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    return orjson.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="synthetic log size (default 200)")
    parser.add_argument("--log", type=Path, help="audit this existing log instead")
    parser.add_argument("--keep", action="store_true", help="keep the generated log")
    parser.add_argument("--audit-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.audit_only:
        sys.stdout.buffer.write(orjson.dumps(audit_once(args.audit_only)))
        return 0

    tmpdir = None
    if args.log:
        path = args.log
    else:
        tmpdir = tempfile.mkdtemp(prefix="radiod-audit-bench-")
        path = Path(tmpdir) / "radiod.log"
        took, count = timed(lambda: generate(path, args.mb))
        print(f"generated {path}: {count:,} lines in {took:.1f} s")
    try:
        size_mb = path.stat().st_size / 1024 / 1024
        wc_l = ["wc", "-l", str(path)]
        # Twice each, keep the faster: the first read may come from disk, later ones from cache.
        wc = min(
            timed(lambda: subprocess.run(wc_l, check=True, capture_output=True))[0] for _ in "12"
        )
        py, lines = min(timed(lambda: python_count(path)) for _ in "12")
        best = min((audit_in_child(path) for _ in "12"), key=lambda r: r["seconds"])
        took = best["seconds"]
        print(
            f"log: {size_mb:,.1f} MB, {lines:,} lines ({size_mb * 1024 * 1024 / lines:.0f} B/line)"
        )
        print(
            f"found: {best['found']}; "
            f"{best['fast_lines'] / lines:.0%} of lines took the byte-level fast path"
        )
        print(
            f"audit:        {took:6.2f} s  {lines / took / 1e6:5.2f} M lines/s  "
            f"{size_mb / took:6.1f} MB/s  → 1 GB in {took * 1024 / size_mb:5.1f} s"
        )
        print(f"python count: {py:6.2f} s  (audit is {took / py:.1f}x a bare Python line loop)")
        print(f"wc -l:        {wc:6.2f} s  (audit is {took / wc:.0f}x wc -l)")
        print(
            f"audit peak RSS: {best['rss_mb']:,.0f} MB  "
            f"(Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, one used)"
        )
    finally:
        if tmpdir and not args.keep:
            shutil.rmtree(tmpdir)
        elif tmpdir:
            print(f"kept {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
