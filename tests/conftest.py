"""Shared fixtures: a demo library, a JSON log capture, a running app over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from radiod.app import create_app
from radiod.config import Config, parse_config
from radiod.demo import generate_demo_library
from radiod.library import Track, scan_library
from radiod.logs import configure_logging
from tests.oddlib import OddLibrary, generate_odd_library

# Short tracks keep tests that cross track boundaries quick; the generator is the real one.
TEST_TRACK_SECONDS = 8.0


def free_ports(count: int = 1) -> int:
    """The first of `count` consecutive loopback ports free now, below the kernel's ephemeral
    range; `free_ports()` is one free port.

    A port the kernel picked for `bind(0)` is ephemeral, and so is the one after it: any
    outgoing connection may be handed either at any moment (seen: `radiod cluster`'s second
    instance, on the first port + 1, found it taken). Below the range only an explicit bind
    takes a port.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(100):
        first = random.randrange(10_000, low - count)
        try:
            with contextlib.ExitStack() as stack:
                for port in range(first, first + count):
                    stack.enter_context(socket.socket()).bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError(f"no {count} free consecutive ports below {low}")


@pytest.fixture(scope="session")
def demo_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("demo")
    generate_demo_library(dest, seconds=TEST_TRACK_SECONDS)
    return dest


@pytest.fixture(scope="session")
def loudness_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The loudness cache of the servers a test run starts: each library is measured once per
    run, and never into the user's own ~/.cache."""
    return tmp_path_factory.mktemp("loudness") / "loudness.sqlite3"


@pytest.fixture(scope="session")
def odd_library(tmp_path_factory: pytest.TempPathFactory) -> OddLibrary:
    """What real folders hold (jingles, silence, odd formats and tags, debris); see oddlib."""
    return generate_odd_library(tmp_path_factory.mktemp("odd"))


@pytest.fixture(scope="session")
def demo_tracks(demo_library: Path) -> list[Track]:
    return scan_library(demo_library)


class LogCapture:
    """The JSON lines radiod wrote during a test, parsed."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.buffer.getvalue().splitlines()]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line["event"] == name]


@pytest.fixture
def log_capture() -> LogCapture:
    capture = LogCapture()
    configure_logging(stream=capture.buffer, level="debug")
    return capture


def make_config(**sections: dict[str, Any]) -> Config:
    """A validated Config: defaults plus the given sections; fault hooks on, admission off."""
    # Admission control (proven in tests/reliability) would refuse the many sessions a
    # second these tests create; it is off unless a test asks for it.
    # Loudness normalisation (proven in test_loudness) would measure the library into the
    # user's cache and change levels the timing tests fit waveforms to; off unless asked for.
    # Mixers run as threads of the test process (audio.workers = 0) unless a test asks for
    # worker processes: quicker to start, and a test can reach into them (monkeypatching).
    # RADIOD_TEST_WORKERS=2 runs a file's tests with a pool of two instead.
    raw: dict[str, dict[str, Any]] = {
        "testing": {"fault_hooks": True},
        "session": {"max_encoder_load": 0},
        "audio": {"loudness": False, "workers": int(os.environ.get("RADIOD_TEST_WORKERS", "0"))},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return parse_config(raw)


ClientFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def radiod_client(demo_tracks: list[Track]) -> AsyncIterator[ClientFactory]:
    """Start the real app on a real loopback socket: `await radiod_client(stream={...})`."""
    clients: list[TestClient] = []

    async def start(**sections: dict[str, Any]) -> TestClient:
        app = create_app(make_config(**sections), demo_tracks)
        server = TestServer(app, handler_cancellation=True)
        client = TestClient(server)
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


def decode_audio(data: bytes, fmt: str = "mp3") -> tuple[np.ndarray, int]:
    """Decode `data` with PyAV, strictly; returns (samples as float32 [channels, n], rate)."""
    blocks: list[np.ndarray] = []
    rate = 0
    with av.open(io.BytesIO(data), format=fmt) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp")
        for frame in container.decode(stream):
            rate = frame.sample_rate
            for out in resampler.resample(frame):
                blocks.append(out.to_ndarray())
    assert blocks, "no audio frames decoded"
    return np.concatenate(blocks, axis=1), rate


async def create_session(client: TestClient) -> str:
    """`POST /create-session` as a page does; the new session's ID."""
    response = await client.post("/create-session")
    assert response.status == 201
    return (await response.json())["sessionId"]


async def read_bytes(response: ClientResponse, count: int, timeout: float = 30.0) -> bytes:
    """Up to `count` bytes of a streaming body (fewer only if it ends)."""
    data = bytearray()
    async with asyncio.timeout(timeout):
        while len(data) < count:
            chunk = await response.content.read(count - len(data))
            if not chunk:
                break
            data += chunk
    return bytes(data)


async def read_sse(response: ClientResponse, count: int, timeout: float = 20.0) -> list[dict]:
    """Read `count` SSE messages (comments skipped) as dicts with `id` and `data` (parsed)."""
    messages: list[dict] = []
    current: dict[str, Any] = {}
    async with asyncio.timeout(timeout):
        while len(messages) < count:
            raw = await response.content.readline()
            if not raw:
                break
            line = raw.decode().rstrip("\n")
            if not line:
                if current:
                    messages.append(current)
                current = {}
            elif line.startswith(":"):
                continue
            else:
                key, _, value = line.partition(": ")
                current[key] = json.loads(value) if key == "data" else value
    return messages


async def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll `condition` until it holds; TimeoutError after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def collect_sse(response: ClientResponse, into: list[dict]) -> None:
    """Append every SSE message's data (parsed) to `into` until the response ends."""
    data: dict | None = None
    while line := await response.content.readline():
        text = line.decode().rstrip("\n")
        if text.startswith("data: "):
            data = json.loads(text[len("data: ") :])
        elif not text and data is not None:
            into.append(data)
            data = None


class PageListener:
    """One session's audio and events, read in the background as a page would."""

    def __init__(self, client: TestClient, session_id: str) -> None:
        self.client, self.session_id = client, session_id
        self.audio = bytearray()
        self.events: list[dict] = []
        self.ended = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> PageListener:
        events = await self.client.get(f"/events?session={self.session_id}")
        audio = await self.client.get(f"/stream?session={self.session_id}")
        assert audio.status == 200
        self._tasks = [
            asyncio.create_task(collect_sse(events, self.events)),
            asyncio.create_task(self._read(audio)),
        ]
        return self

    async def _read(self, response: ClientResponse) -> None:
        while chunk := await response.content.read(4096):
            self.audio += chunk
        self.ended.set()

    async def hears(self, seconds: float) -> None:
        """Wait for `seconds` more audio (at the default 128 kb/s) than received so far."""
        target = len(self.audio) + seconds * 128_000 / 8
        await wait_until(lambda: len(self.audio) >= target, timeout=seconds + 30)

    def tracks(self) -> list[dict]:
        return [e for e in self.events if e["type"] == "track"]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
