"""How many live sessions does radiod hold in real time, beside what the machine could encode?

    .venv/bin/python bench/sessions.py [--quick] [--hold 60] [--step N] [--workers N]

Starts a real `radiod serve` (its own config: admission control off, `max_sessions` high, the
demo library; `--workers` sets `audio.workers` through RADIOD_AUDIO__WORKERS when this
version has it) and ramps sessions, each with one real-time reader (bench/load.py: an
underrun is received audio falling more than 250 ms behind the wall clock). At every step it
adds `--step` sessions, lets their first bursts pass, then listens for `--hold` seconds and
prints underruns, the worst lag, the server's CPU (process + children) and memory (PSS). It
stops at the first step with an underrun: the capacity is the step before.

The reference, measured in the same run: the machine's bound, cores x 3600 / the `ffmpeg`
CLI's CPU seconds per hour of audio (same demo files, codec and bitrate). Target (issue 11):
capacity >= 0.85 x the bound. `--quick` holds each step 10 s instead of 60 (a first look;
the figures for docs/performance.md come from the full run). The result is also written to
bench/out/sessions.json, where bench/latency.py finds the capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.load import (
    WORKERS_ENV,
    Bound,
    Listener,
    add_listener,
    bench_server,
    client,
    cpu_seconds,
    measure_bound,
    memory_mb,
    quiet_logs,
    workers_note,
)

TARGET = 0.85
SETTLE_SECONDS = 5.0  # after adding sessions: their first bursts are not the steady state
RESULTS = Path(__file__).resolve().parent / "out" / "sessions.json"


@dataclass
class Step:
    sessions: int
    underran: int  # sessions with at least one underrun during the hold
    worst_lag: float  # seconds
    cores: float  # server CPU during the hold, in cores
    memory_mb: float


async def hold(pid: int, listeners: list[Listener], seconds: float) -> Step:
    """Listen for `seconds` from a fresh start of every reader; what the step measured."""
    for listener in listeners:
        listener.reader.restart()
    cpu_before, start = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    cores = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - start)
    gaps = [listener.reader.finish() for listener in listeners]
    lags = [gap.seconds for found in gaps for gap in found]
    return Step(len(listeners), sum(1 for found in gaps if found), max(lags, default=0.0),
                cores, memory_mb(pid))  # fmt: skip


async def ramp(url: str, pid: int, step: int, limit: int, seconds: float) -> list[Step]:
    steps: list[Step] = []
    listeners: list[Listener] = []
    print(" sessions  underran  worst lag  server CPU (cores)  memory (MB)")
    async with client(url) as http:
        try:
            while len(listeners) + step <= limit:
                listeners += await asyncio.gather(*(add_listener(http) for _ in range(step)))
                await asyncio.sleep(SETTLE_SECONDS)
                result = await hold(pid, listeners, seconds)
                steps.append(result)
                print(f"{result.sessions:9d}  {result.underran:8d}  {result.worst_lag:8.2f}s"
                      f"  {result.cores:18.2f}  {result.memory_mb:11.0f}", flush=True)  # fmt: skip
                if result.underran:
                    break
        finally:
            for listener in listeners:
                listener.close()
    return steps


def report(steps: list[Step], bound: Bound, seconds: float) -> dict[str, object]:
    held = [s for s in steps if not s.underran]
    capacity = held[-1].sessions if held else 0
    ratio = capacity / bound.sessions
    print()
    print(f"ffmpeg CLI: {bound.ffmpeg_per_hour:.1f} CPU s per hour of audio; {bound.cores} cores "
          f"-> the machine's bound: {bound.sessions:.0f} sessions")  # fmt: skip
    verdict = "ok" if ratio >= TARGET else "under the target"
    print(f"radiod: {capacity} sessions with zero underruns over {seconds:g} s = "
          f"{ratio:.2f} of the bound (target >= {TARGET}: {verdict})")  # fmt: skip
    if held:
        top = held[-1]
        print(f"        at {top.sessions}: {top.cores:.2f} cores, {top.memory_mb:.0f} MB "
              f"({top.memory_mb / top.sessions:.1f} MB per session)")  # fmt: skip
    return {"capacity": capacity, "bound": bound.sessions, "ratio": ratio,
            "hold_seconds": seconds, "steps": [asdict(s) for s in steps]}  # fmt: skip


async def main_async(args: argparse.Namespace) -> int:
    print("measuring the ffmpeg CLI on the demo library (the reference)...", flush=True)
    bound = measure_bound()
    step = args.step or max(1, round(bound.sessions / 10))
    limit = args.max or round(bound.sessions * 1.5)
    print(f"{workers_note()}; steps of {step} up to {limit}, {args.hold:g} s each")
    with tempfile.TemporaryDirectory(prefix="radiod-bench-sessions-") as tmp:
        server = bench_server(Path(tmp))
        try:
            await server.started()
            steps = await ramp(server.url, server.pid, step, limit, args.hold)
        finally:
            await asyncio.to_thread(server.stop)
    result = report(steps, bound, args.hold)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="hold each step 10 s, not 60")
    parser.add_argument("--hold", type=float, default=60.0, help="seconds listened per step")
    parser.add_argument("--step", type=int, help="sessions added per step (default: bound/10)")
    parser.add_argument("--max", type=int, help="stop here (default: 1.5 x the bound)")
    parser.add_argument("--workers", type=int, help=f"audio.workers (sets {WORKERS_ENV})")
    args = parser.parse_args()
    if args.quick:
        args.hold = 10.0
    quiet_logs()
    if args.workers is not None:
        os.environ[WORKERS_ENV] = str(args.workers)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
