"""bench/fanout.py's targets (issue 12), its scenarios, and the file-descriptor limit it needs.

Each target is printed beside radiod's figure on each event loop and Icecast's from the same
run, with a verdict, so a run says by itself what is met and what is not.
"""

from __future__ import annotations

import importlib.util
import resource
import statistics
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fanout import Result, Window

# Every radiod run is made on both loops (uvloop only when it is installed).
LOOPS = ["asyncio", *(["uvloop"] if importlib.util.find_spec("uvloop") else [])]
# `--all`: one session to 1,000 and 4,000 listeners, and 200 sessions of 20 listeners.
SCENARIOS = [(1000, 1), (4000, 1), (4000, 200)]
BYTES_PER_SECOND = 16_000
SHORT_FRACTION = 0.95
RSS_TARGET_KB = 4.0
ATTACH_TARGET = (4000, 10.0)  # listeners, seconds
HEALTHZ_P99_TARGET_MS = 50.0
# Each listener is a socket in the server and one in the load generator, plus what the
# servers and Python hold themselves.
FDS_PER_LISTENER = 2
FDS_SPARE = 1024


def raise_nofile(listeners: int) -> str:
    """Raise this process's RLIMIT_NOFILE (its children inherit it) to fit `listeners`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = listeners * FDS_PER_LISTENER + FDS_SPARE
    if hard != resource.RLIM_INFINITY and want > hard:
        return f"RLIMIT_NOFILE hard limit {hard} is below the {want} descriptors needed"
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        inherit = "radiod, Icecast and the load generator inherit it"
        return f"RLIMIT_NOFILE raised from {soft} to {want} ({inherit})"
    return f"RLIMIT_NOFILE is {soft}: enough for {listeners} listeners"


def healthz_p99_ms(window: Window) -> float | None:
    if not window.latencies:
        return None
    ms = sorted(1000 * x for x in window.latencies)
    return ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]


def short_listeners(window: Window) -> int:
    """Listeners below 95% of the bitrate over the window, or disconnected by its end."""
    return sum(r < BYTES_PER_SECOND * SHORT_FRACTION for r in window.rates) + window.dropped


def _attach_seconds(r: Result) -> float:
    return sum(a["seconds"] for a in r.attach)


def _verdict(ok: bool | None) -> str:
    return {True: "met", False: "MISSED", None: ""}[ok]


Row = tuple[str, Callable[["Result"], str], Callable[["Result"], "bool | None"]]


def _rows(icecast: Result | None) -> list[Row]:
    ice_cpu = icecast.ms_per_listener_s if icecast is not None else None
    count, limit = ATTACH_TARGET

    def attach_ok(r: Result) -> bool | None:
        if r.listeners < count:
            return None  # the target is about 4,000
        return _attach_seconds(r) < limit and not sum(a["failed"] for a in r.attach)

    def p99(r: Result) -> str:
        value = healthz_p99_ms(r.full)
        return "-" if value is None else f"{value:.0f} ms"

    def p99_ok(r: Result) -> bool | None:
        value = healthz_p99_ms(r.full)
        return None if value is None else value < HEALTHZ_P99_TARGET_MS

    return [
        (
            "CPU ms per listener-second <= Icecast's",
            lambda r: f"{r.ms_per_listener_s:.4f}",
            lambda r: None if ice_cpu is None else r.ms_per_listener_s <= ice_cpu,
        ),
        (
            f"RSS kB per listener <= {RSS_TARGET_KB:.0f}",
            lambda r: f"{r.kb_per_listener:.1f}",
            lambda r: r.kb_per_listener <= RSS_TARGET_KB,
        ),
        (
            f"{count:,} attached in < {limit:.0f} s",
            lambda r: f"{r.listeners} in {_attach_seconds(r):.1f} s",
            attach_ok,
        ),
        (
            f"listeners < {SHORT_FRACTION:.0%} of the bitrate: none",
            lambda r: str(short_listeners(r.full)),
            lambda r: short_listeners(r.full) == 0,
        ),
        (
            f"/healthz p99 < {HEALTHZ_P99_TARGET_MS:.0f} ms",
            p99,
            p99_ok,
        ),
    ]


def targets_table(radiods: list[Result], icecast: Result | str) -> str:
    """The issue's targets: each radiod run's figure and verdict, and Icecast's figure."""
    ice = icecast if not isinstance(icecast, str) else None
    columns = [*radiods, *([ice] if ice is not None else [])]
    width = 42
    head = "target".ljust(width) + "".join(f"{c.name:>24}" for c in columns)
    lines = ["targets (issue 12), this run:", head]
    for label, figure, ok in _rows(ice):
        cells = [f"{figure(r)} {_verdict(ok(r))}".rstrip() for r in radiods]
        if ice is not None:
            cells.append(figure(ice))
        lines.append(label.ljust(width) + "".join(f"{cell:>24}" for cell in cells))
    loads = ", ".join(
        f"{r.name} {100 * statistics.fmean([r.base.loadgen_cpu, r.full.loadgen_cpu]):.0f}%"
        for r in columns
    )
    lines.append(f"load generator's own CPU (not counted as the server's), % of a core: {loads}")
    return "\n".join(lines)
