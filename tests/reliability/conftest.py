"""Load and fault tests' tools: a real `radiod serve` process, /proc figures, a real-time reader.

The server runs as its own process so the load generator (this test process) neither shares
its GIL nor its CPU account; what the tests read from /proc is the server's alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from radiod.config import Config

# 128 kb/s CBR MP3, the default codec: bytes turn into seconds of audio without decoding.
BYTES_PER_SECOND = 128_000 // 8
# A listener whose received audio falls this far behind the wall clock heard a gap.
GAP_SECONDS = 0.25
# `[limits]` keys another part of issue 10 adds; 0 turns each off. Written only when the
# config knows them, since an unknown key stops the server at start-up.
LIMITS_OFF = {"create_burst": 0, "connections_per_ip": 0}


def limits_off() -> dict[str, int]:
    """The per-IP limits this branch's config knows, each set to 0 (off)."""
    sections = {f.name: f.default_factory for f in dataclasses.fields(Config)}
    section = sections.get("limits")
    if section is None:
        return {}
    known = {f.name for f in dataclasses.fields(section)}  # type: ignore[arg-type]
    return {key: value for key, value in LIMITS_OFF.items() if key in known}


def _toml(sections: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
    return "\n".join(lines) + "\n"


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float,
    what: str | Callable[[], str],
) -> None:
    """Poll `condition` until true; fail naming `what` (or what it returns) after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            described = what if isinstance(what, str) else what()
            pytest.fail(f"timed out after {timeout} s waiting for {described}")
        await asyncio.sleep(0.05)


class RadiodProcess:
    """A `radiod serve` subprocess on a free port, logging JSON lines to a file."""

    def __init__(
        self,
        tmp_path: Path,
        library: Path,
        *,
        argv_prefix: tuple[str, ...] = (),
        **sections: dict[str, Any],
    ) -> None:
        """Start it; `argv_prefix` runs it through another command (`ip netns exec NAME`)."""
        tmp_path.mkdir(exist_ok=True)
        self.log_path = tmp_path / "radiod.log"
        config: dict[str, dict[str, Any]] = {
            "server": {"port": 0},
            "library": {"path": str(library)},
            "log": {"file": str(self.log_path)},
        }
        if limits := limits_off():
            config["limits"] = limits
        for name, values in sections.items():
            config.setdefault(name, {}).update(values)
        config_path = tmp_path / "radiod.toml"
        config_path.write_text(_toml(config))
        self.process = subprocess.Popen(
            [*argv_prefix, sys.executable, "-m", "radiod", "serve", "--config", str(config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.pid = self.process.pid
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def started(self) -> None:
        """Wait for `server.started` and take the port from it."""

        def has_port() -> bool:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read() if self.process.stderr else ""
                pytest.fail(f"radiod exited with {self.process.returncode}: {stderr}")
            for record in self.log_lines():
                if record.get("event") == "server.started":
                    self.port = record["port"]
                    return True
            return False

        await wait_for(has_port, 60, "server.started")

    def log_lines(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        lines = []
        for line in self.log_path.read_text().splitlines():
            with contextlib.suppress(ValueError):  # the last line may be half written
                lines.append(json.loads(line))
        return lines

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.log_lines() if line.get("event") == name]

    def status(self) -> dict[str, int]:
        """VmRSS (kB) and Threads from /proc/PID/status, and open file descriptors."""
        figures = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "Threads"):
                figures[key] = int(value.split()[0])
        return {
            "rss_kb": figures["VmRSS"],
            "threads": figures["Threads"],
            "fds": len(os.listdir(f"/proc/{self.pid}/fd")),
        }

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not go within 20 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()


RadiodFactory = Callable[..., Awaitable[RadiodProcess]]


@pytest.fixture
async def radiod_process(
    tmp_path: Path, demo_library: Path, loudness_cache: Path
) -> AsyncIterator[RadiodFactory]:
    """`await radiod_process(session={...})`: a started server, stopped after the test."""
    processes: list[RadiodProcess] = []

    async def start(**sections: dict[str, Any]) -> RadiodProcess:
        audio = {"loudness_cache": str(loudness_cache), **sections.pop("audio", {})}
        server = RadiodProcess(
            tmp_path / f"server{len(processes)}", demo_library, audio=audio, **sections
        )
        processes.append(server)
        await server.started()
        return server

    yield start
    for server in processes:
        await asyncio.to_thread(server.stop)


@dataclass
class Gap:
    """Received audio fell `seconds` behind the wall clock at `at` (seconds since the start)."""

    at: float
    seconds: float


@dataclass
class RealtimeReader:
    """Reads one audio response as fast as it comes and records every gap over GAP_SECONDS.

    The listener's lead is the audio received minus the wall-clock time since its first
    byte. Right after the burst it is the burst; a stream that keeps real time keeps it
    there, give or take one chunk (the mixer sends ~250 ms at a time). So the reference is
    the lead measured just *before* each arrival (when the last chunk is used up), at its
    best so far; an arrival that finds the lead more than GAP_SECONDS below that is a gap:
    the audio came that much later than the stream's own pace.
    """

    response: aiohttp.ClientResponse
    keep_bytes: int = 64_000  # the first bytes, kept to prove they decode
    head: bytearray = field(default_factory=bytearray)
    received: int = 0
    gaps: list[Gap] = field(default_factory=list)
    ended: bool = False
    error: str = ""
    _start: float | None = None
    _best: float | None = None

    def _lead(self, now: float, received: int) -> float:
        assert self._start is not None
        return received / BYTES_PER_SECOND - (now - self._start)

    def _check(self, now: float) -> None:
        lead = self._lead(now, self.received)
        if self._best is None or lead > self._best:
            self._best = lead
        elif self._best - lead > GAP_SECONDS:
            self.gaps.append(Gap(round(now - (self._start or now), 3), round(self._best - lead, 3)))
            self._best = lead  # one gap is recorded once, not at every later arrival

    async def run(self) -> None:
        try:
            while data := await self.response.content.readany():
                now = time.monotonic()
                if self._start is None:
                    self._start = now
                else:
                    self._check(now)
                self.received += len(data)
                if len(self.head) < self.keep_bytes:
                    self.head += data[: self.keep_bytes - len(self.head)]
            self.ended = True
        except (aiohttp.ClientError, ConnectionError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"

    def restart(self) -> None:
        """Forget the gaps so far and measure the pace afresh from the next arrival."""
        self.gaps = []
        self._best = None

    def finish(self) -> list[Gap]:
        """The gaps, including one still open now (no audio for a while)."""
        if self._start is not None and not self.ended:
            self._check(time.monotonic())
        return self.gaps

    @property
    def seconds(self) -> float:
        return self.received / BYTES_PER_SECOND


async def listen(
    http: aiohttp.ClientSession | TestClient, session_id: str
) -> tuple[RealtimeReader, asyncio.Task[None]]:
    """Open `/stream` for `session_id` and read it in real time; (reader, its task)."""
    response = await http.get(f"/stream?session={session_id}")
    assert response.status == 200, await response.text()
    reader = RealtimeReader(response)
    return reader, asyncio.create_task(reader.run())


async def raw_get(
    port: int, path: str, *, rcvbuf: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A bare HTTP/1.1 GET over a socket the test controls (buffer size, shutdown, linger)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        # Before connect, so the window the server sees is small: backpressure comes at once
        # instead of after megabytes of kernel buffers.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def require_real_time(readers: list[RealtimeReader], seconds: float = 4.0) -> None:
    """Skip the test when its first listeners cannot keep real time before any load is added.

    A real-time assertion judges the server only on a machine that gives it the CPU it asks
    for. On the shared development machine, with other suites running (load average 6), even
    10 sessions at 0.2 cores see gaps; that says nothing about admission control.
    """
    for reader in readers:
        reader.restart()
    start = time.monotonic()
    await wait_for(lambda: time.monotonic() - start > seconds, seconds + 10, "a quiet spell")
    gaps = [gap for reader in readers for gap in reader.finish()]
    if gaps:
        pytest.skip(f"machine too busy to judge real time: gaps before any load: {gaps}")
    for reader in readers:
        reader.restart()


class ListenersApart:
    """Real-time readers in a process of their own, as listeners on other machines are.

    A test process that also plays hundreds of clients stops its event loop for a full
    garbage collection of everything pytest has loaded: 0.13-0.2 s measured during
    `test_storm`'s storm. Readers on that loop would date the server's chunks that much
    late and blame it for a gap it never made. Apart, they date what the server sent.
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def _ask(self, command: str) -> Any:
        def ask() -> Any:
            self._connection.send(command)
            return self._connection.recv()

        return await asyncio.to_thread(ask)

    async def seconds(self) -> float:
        """The least audio any of them has received, in seconds."""
        return float(await self._ask("seconds"))

    async def require_real_time(self) -> None:
        """`require_real_time`, run where the readers are; skips the test the same way."""
        if reason := await self._ask("real_time"):
            pytest.skip(reason)

    async def finish(self) -> list[tuple[list[Gap], str]]:
        """Each reader's gaps and error, as `RealtimeReader.finish` and `.error` give them."""
        return list(await self._ask("finish"))


@contextlib.asynccontextmanager
async def listening_apart(url: str, session_ids: list[str]) -> AsyncIterator[ListenersApart]:
    """One process reading `/stream` of each of `session_ids` in real time until closed."""
    context = multiprocessing.get_context("spawn")  # not a fork of this loop and its sockets
    ours, theirs = context.Pipe()
    process = context.Process(target=_listen_apart, args=(url, session_ids, theirs))
    process.start()
    theirs.close()
    try:
        yield ListenersApart(ours)
    finally:
        ours.close()  # its next read ends: it closes its streams and exits
        await asyncio.to_thread(process.join, 10)
        if process.is_alive():
            process.kill()
            await asyncio.to_thread(process.join)


def _listen_apart(url: str, session_ids: list[str], connection: Connection) -> None:
    asyncio.run(_answer_apart(url, session_ids, connection))


async def _answer_apart(url: str, session_ids: list[str], connection: Connection) -> None:
    async with aiohttp.ClientSession(url) as http:
        listening = [await listen(http, session_id) for session_id in session_ids]
        readers = [reader for reader, _ in listening]
        gc.freeze()  # what is loaded now is never collected: no long pause of its own
        while True:
            try:
                command = await asyncio.to_thread(connection.recv)
            except EOFError:
                break
            if command == "seconds":
                connection.send(min(reader.seconds for reader in readers))
            elif command == "real_time":
                try:
                    await require_real_time(readers)
                    connection.send("")
                except pytest.skip.Exception as skipped:
                    connection.send(str(skipped))
            elif command == "finish":
                connection.send([(reader.finish(), reader.error) for reader in readers])
        for _, task in listening:
            task.cancel()
