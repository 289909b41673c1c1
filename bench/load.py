"""What the load benchmarks (sessions.py, latency.py) share: a bench server, listeners, /proc.

The server is tests/reliability/conftest.py's `RadiodProcess` (a real `radiod serve` on a free
port, its own config file and JSON log), and every listener is its `RealtimeReader` (an
underrun is received audio falling more than 250 ms behind the wall clock), as in soak.py:
one definition of "kept real time" for the tests and every benchmark.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.transcode import audio_config, ffmpeg_per_hour
from radiod.config import AudioConfig
from radiod.demo import default_demo_dir, generate_demo_library
from tests.reliability.conftest import RadiodProcess, RealtimeReader

WORKERS_ENV = "RADIOD_AUDIO__WORKERS"


def quiet_logs() -> None:
    """This process's own radiod log lines (demo generation, scans) are not the bench's output."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only


def bench_server(tmp: Path, **sections: dict[str, Any]) -> RadiodProcess:
    """A `radiod serve` on the demo library with admission control off and room for any
    number of sessions: the benchmarks measure the machine, not the limits."""
    library = default_demo_dir()
    generate_demo_library(library)
    session = {"max_encoder_load": 0, "max_sessions": 100_000, **sections.pop("session", {})}
    return RadiodProcess(tmp, library, session=session, **sections)


def workers_note() -> str:
    """`audio.workers` reaches the server through the environment (RADIOD_AUDIO__WORKERS), so
    this bench runs against versions of radiod with and without the key."""
    known = {f.name for f in dataclasses.fields(AudioConfig)}
    if "workers" not in known:
        if WORKERS_ENV in os.environ:
            del os.environ[WORKERS_ENV]  # an unknown key would stop the server at start-up
            return "audio.workers: not in this version (ignored)"
        return "audio.workers: not in this version (mixers are threads)"
    value = os.environ.get(WORKERS_ENV)
    return f"audio.workers = {value}" if value else "audio.workers: the default"


@dataclass(frozen=True)
class Bound:
    """The machine's bound: how many sessions the `ffmpeg` CLI could encode on every core."""

    cores: int
    ffmpeg_per_hour: float  # CPU s per hour of audio, demo library, the server's codec

    @property
    def sessions(self) -> float:
        return self.cores * 3600 / self.ffmpeg_per_hour


def measure_bound(repeat: int = 2) -> Bound:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SystemExit("ffmpeg CLI not found (the reference): apt-get install -y ffmpeg")
    defaults = AudioConfig()
    audio = audio_config(defaults.codec, defaults.bitrate, defaults.mp3_quality)
    return Bound(os.cpu_count() or 1, ffmpeg_per_hour(ffmpeg, audio, repeat))


# -- the server's processes, from /proc -----------------------------------------------------
def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (worker processes, if any) now."""
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                queue.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the server and its children (live ones and reaped ones)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for each in _tree(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / ticks


def memory_mb(pid: int) -> float:
    """Proportional set size of the server and its children (shared pages counted once)."""
    total_kb = 0
    for each in _tree(pid):
        try:
            text = Path(f"/proc/{each}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                total_kb += int(line.split()[1])
    return total_kb / 1024


# -- clients ----------------------------------------------------------------------------------
def client(url: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        url,
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
    )


async def create_session(http: aiohttp.ClientSession) -> str:
    async with http.post("/create-session") as response:
        if response.status != 201:
            raise RuntimeError(f"create-session: {response.status} {await response.text()}")
        return (await response.json())["sessionId"]


@dataclass
class Listener:
    """A session with one real-time reader on its stream."""

    session_id: str
    reader: RealtimeReader
    task: asyncio.Task[None]

    def close(self) -> None:
        self.task.cancel()
        self.reader.response.close()


async def add_listener(http: aiohttp.ClientSession) -> Listener:
    session_id = await create_session(http)
    response = await http.get(f"/stream?session={session_id}")
    if response.status != 200:
        raise RuntimeError(f"stream: {response.status} {await response.text()}")
    reader = RealtimeReader(response, keep_bytes=0)
    return Listener(session_id, reader, asyncio.create_task(reader.run()))
