"""Abuse limits: foreign hosts and origins, session floods, hoarded and stalled sockets.

Request rules run against the real app on a real socket (`radiod_client`); socket rules
(connection caps, header and keep-alive timeouts) against `start_server`, the very setup
`radiod serve` uses, or a `radiod serve` subprocess where the process's own fd limit matters.
Loopback is all of 127.0.0.0/8 on Linux, so "another client address" is 127.0.0.2.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from radiod.app import create_app
from radiod.cli import start_server
from radiod.library import Track
from radiod.logs import ACCEPT_ERROR, AcceptErrorFilter, Throttle, configure_logging
from radiod.web.guards import ConnectionGuard, GuardedSite, TokenBuckets, client_address
from tests.conftest import (
    ClientFactory,
    LogCapture,
    create_session,
    make_config,
    read_bytes,
    read_sse,
    wait_until,
)

OTHER_ADDRESS = "127.0.0.2"
# Generous bounds for a shared two-core machine; every wait ends as soon as its condition holds.
WAIT = 20.0


async def post_from(
    address: str, client: TestClient, path: str, cookie: str | None = None
) -> aiohttp.ClientResponse:
    """POST from another loopback address (and optionally with a given client cookie)."""
    headers = {"Cookie": f"radiod_client={cookie}"} if cookie else {}
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        response = await session.post(client.make_url(path), headers=headers)
        await response.read()
        return response


# -- POST /create-session rate limits ------------------------------------------------------


async def test_create_session_allows_a_burst_then_429_with_retry_after(
    radiod_client: ClientFactory, log_capture: LogCapture
) -> None:
    client = await radiod_client(limits={"create_burst": 3, "create_per_minute": 1})
    first = await client.post("/create-session")
    assert first.status == 201
    cookie = first.cookies["radiod_client"].value
    await create_session(client)
    await create_session(client)

    refused = await client.post("/create-session")
    assert refused.status == 429
    # One token a minute, just spent: the next one is (almost) a minute away.
    retry_after = int(refused.headers["Retry-After"])
    assert 50 <= retry_after <= 60
    assert f"retry in {retry_after} s" in (await refused.json())["error"]
    (line,) = log_capture.events("session.rate_limited")
    assert (line["rejected"], line["retry_after"]) == ("rate_limited", retry_after)
    assert "session_id" not in line

    # Another address is not affected; the same cookie from another address still is.
    assert (await post_from(OTHER_ADDRESS, client, "/create-session")).status == 201
    roaming = await post_from("127.0.0.3", client, "/create-session", cookie=cookie)
    assert roaming.status == 429
    assert log_capture.events("session.rate_limited")[-1]["limit"] == "client"


async def test_fresh_cookies_from_one_address_are_still_limited(
    radiod_client: ClientFactory, log_capture: LogCapture
) -> None:
    client = await radiod_client(limits={"create_burst": 3, "create_per_minute": 1})
    statuses = []
    for _ in range(5):
        client.session.cookie_jar.clear()  # a new client cookie every time
        statuses.append((await client.post("/create-session")).status)
    assert statuses == [201, 201, 201, 429, 429]
    assert {line["limit"] for line in log_capture.events("session.rate_limited")} == {"address"}


async def test_zero_turns_the_create_limit_off(radiod_client: ClientFactory) -> None:
    client = await radiod_client(limits={"create_burst": 0})
    for _ in range(25):  # beyond the default burst of 20
        await create_session(client)


def test_token_buckets_refill_at_the_configured_rate_and_never_beyond_the_burst() -> None:
    now = [0.0]
    buckets = TokenBuckets(burst=2, per_minute=6, clock=lambda: now[0])  # a token per 10 s
    for _ in range(2):
        assert buckets.wait("a") == 0
        buckets.take("a")
    assert buckets.wait("a") == pytest.approx(10.0)
    now[0] += 4
    assert buckets.wait("a") == pytest.approx(6.0)
    now[0] += 6
    assert buckets.wait("a") == 0
    now[0] += 1000  # a long pause refills to the burst, no more
    buckets.take("a")
    buckets.take("a")
    assert buckets.wait("a") > 0


def test_token_buckets_forget_the_least_recently_used_beyond_their_bound() -> None:
    buckets = TokenBuckets(burst=1, per_minute=1, max_keys=100)
    for n in range(10_000):  # a flood of distinct cookies
        buckets.take(f"cookie-{n}")
    assert len(buckets) == 100


def test_an_ipv6_subscriber_counts_as_one_address() -> None:
    assert client_address("2001:db8:1:2:aaaa::1") == client_address("2001:db8:1:2:bbbb::2")
    assert client_address("2001:db8:1:3::1") != client_address("2001:db8:1:2::1")
    assert client_address("::ffff:10.0.0.1") == client_address("10.0.0.1") == "10.0.0.1"


# -- sessions never attached ----------------------------------------------------------------


async def test_a_session_never_attached_is_reaped_soon_and_an_attached_one_is_not(
    radiod_client: ClientFactory, log_capture: LogCapture
) -> None:
    client = await radiod_client(session={"unattached_timeout_seconds": 0.3})
    abandoned = await create_session(client)
    kept = await create_session(client)
    events = await client.get(f"/events?session={kept}")
    assert (await read_sse(events, 1))[0]["data"]["type"] == "connected"

    await wait_until(lambda: bool(log_capture.events("session.reaped")))
    (reaped,) = log_capture.events("session.reaped")
    assert (reaped["session_id"], reaped["reason"]) == (abandoned, "unattached")
    assert (await client.get(f"/sessions/{abandoned}")).status == 404
    assert (await client.get(f"/sessions/{kept}")).status == 200
    events.close()


# -- Host and Origin ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/healthz", "/events", "/stream", "/create-session"])
async def test_an_unknown_host_gets_421_on_every_route(
    radiod_client: ClientFactory, log_capture: LogCapture, path: str
) -> None:
    client = await radiod_client()
    session_id = await create_session(client)
    method = "POST" if path == "/create-session" else "GET"
    response = await client.request(
        method, f"{path}?session={session_id}", headers={"Host": f"rebound.example:{client.port}"}
    )
    assert response.status == 421
    assert response.content_type == "application/json"
    assert "unknown Host" in (await response.json())["error"]
    (line,) = log_capture.events("request.rejected")
    assert (line["rejected"], line["host"]) == ("unknown_host", f"rebound.example:{client.port}")


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:{port}", "localhost:{port}", "localhost", "[::1]:8000", "10.1.2.3", "LOCALHOST."],
)
async def test_own_names_and_ip_literals_are_known_hosts(
    radiod_client: ClientFactory, host: str
) -> None:
    client = await radiod_client()
    response = await client.get("/healthz", headers={"Host": host.format(port=client.port)})
    assert response.status == 200


async def test_configured_hosts_are_known_and_a_star_allows_any(
    radiod_client: ClientFactory,
) -> None:
    client = await radiod_client(server={"allowed_hosts": ["radio.example.com"]})
    assert (await client.get("/", headers={"Host": "radio.example.com:8443"})).status == 200
    assert (await client.get("/", headers={"Host": "other.example.com"})).status == 421
    anything = await radiod_client(server={"allowed_hosts": ["*"]})
    assert (await anything.get("/", headers={"Host": "other.example.com"})).status == 200


async def test_only_http_1_0_may_leave_host_out(radiod_client: ClientFactory) -> None:
    client = await radiod_client()
    for version, status in ((b"1.0", b" 200 "), (b"1.1", b" 400 ")):
        reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
        writer.write(b"GET /healthz HTTP/" + version + b"\r\n\r\n")
        async with asyncio.timeout(WAIT):
            assert status in await reader.readline()
        writer.close()


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("http://127.0.0.1:{port}", 201),
        ("http://evil.example", 403),
        ("http://127.0.0.1:1", 403),  # another port is another origin
        ("https://127.0.0.1:{port}", 403),
        ("null", 403),  # sandboxed frames and file: pages
        ("https://radio.example.com", 201),  # server.allowed_origins
    ],
)
async def test_state_changing_requests_from_foreign_origins_get_403(
    radiod_client: ClientFactory, origin: str, status: int
) -> None:
    client = await radiod_client(server={"allowed_origins": ["https://radio.example.com"]})
    headers = {"Origin": origin.format(port=client.port)}
    response = await client.post("/create-session", headers=headers)
    assert response.status == status
    if status == 403:
        assert (await response.json())["error"] == "Cross-origin request refused"


async def test_reads_from_foreign_origins_pass_and_controls_do_not(
    radiod_client: ClientFactory,
) -> None:
    client = await radiod_client()
    session_id = await create_session(client)
    foreign = {"Origin": "http://evil.example"}
    assert (await client.get(f"/sessions/{session_id}", headers=foreign)).status == 200
    assert (await client.post(f"/sessions/{session_id}/skip", headers=foreign)).status == 403
    assert (await client.post(f"/sessions/{session_id}/skip")).status == 202


# -- connections: the setup `radiod serve` uses ----------------------------------------------

ServerFactory = Callable[..., Awaitable[tuple[int, ConnectionGuard]]]


@pytest.fixture
async def guarded_server(demo_tracks: list[Track]) -> AsyncIterator[ServerFactory]:
    """`await guarded_server(limits={...})` -> (port, guard) of a server started by start_server."""
    runners: list[web.AppRunner] = []

    async def start(**sections: dict[str, Any]) -> tuple[int, ConnectionGuard]:
        sections.setdefault("server", {})["port"] = 0
        config = make_config(**sections)
        runner = await start_server(create_app(config, demo_tracks), config)
        runners.append(runner)
        (site,) = runner.sites
        assert isinstance(site, GuardedSite)
        return runner.addresses[0][1], site.guard

    yield start
    for runner in runners:
        await runner.cleanup()


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = WAIT) -> bytes:
    """Everything the server sent until it closed the connection (EOF or reset)."""
    data = b""
    async with asyncio.timeout(timeout):
        with contextlib.suppress(ConnectionResetError):
            while chunk := await reader.read(65536):
                data += chunk
    return data


def abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset, as a crashed client or a dropped network does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def test_connections_per_ip_are_capped_and_counted_back_to_zero(
    guarded_server: ServerFactory, log_capture: LogCapture
) -> None:
    port, guard = await guarded_server(limits={"connections_per_ip": 4})
    async with aiohttp.ClientSession() as http:
        created = await http.post(f"http://127.0.0.1:{port}/create-session")
        session_id = (await created.json())["sessionId"]
    # Four connections from one address: a listener mid-stream and three idle sockets.
    stream, listener = await asyncio.open_connection("127.0.0.1", port)
    listener.write(f"GET /stream?session={session_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await asyncio.wait_for(stream.readexactly(4096), WAIT)
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    await wait_until(lambda: guard.open_connections() == {"127.0.0.1": 4})

    # Over the cap: closed at once, before a byte is answered; logged once, not per attempt.
    for _ in range(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert await closed_by_server(reader) == b""
        writer.close()
    assert len(log_capture.events("connection.rejected")) == 1
    assert guard.open_connections() == {"127.0.0.1": 4}

    # Another address is not affected.
    connector = aiohttp.TCPConnector(local_addr=(OTHER_ADDRESS, 0))
    async with aiohttp.ClientSession(connector=connector) as other:
        assert (await other.get(f"http://127.0.0.1:{port}/healthz")).status == 200

    # Closed every way a client can leave: reset mid-stream, gracefully, reset while idle.
    abort(listener)
    idle[0][1].close()
    abort(idle[1][1])
    abort(idle[2][1])
    await wait_until(lambda: guard.open_connections() == {})


async def test_keep_alive_requests_count_as_one_connection(guarded_server: ServerFactory) -> None:
    port, guard = await guarded_server(limits={"connections_per_ip": 1})
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as http:
        for _ in range(5):
            assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status == 200
        assert guard.open_connections() == {"127.0.0.1": 1}


async def test_a_half_sent_request_is_closed_after_the_header_timeout(
    guarded_server: ServerFactory, log_capture: LogCapture
) -> None:
    # keep-alive far longer than the header timeout: only the header timeout can close it.
    port, guard = await guarded_server(
        server={"header_timeout_seconds": 1.0, "keepalive_timeout_seconds": 60.0}
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # ... and nothing more
    assert await closed_by_server(reader) == b""
    assert 0.9 <= loop.time() - started < 1.0 + 5.0
    (line,) = log_capture.events("connection.header_timeout")
    assert line["remote"] == "127.0.0.1"
    await wait_until(lambda: guard.open_connections() == {})
    writer.close()


async def test_headers_split_anywhere_are_complete_and_long_responses_outlive_the_timeout(
    guarded_server: ServerFactory,
) -> None:
    port, _ = await guarded_server(
        server={"header_timeout_seconds": 1.0, "keepalive_timeout_seconds": 60.0}
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /create-session HTTP/1.1\r\nHost: 127.0.0.1\r\n\r")
    await writer.drain()
    writer.write(b"\n")  # the blank line's last byte in a packet of its own
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    assert head.startswith(b"HTTP/1.1 201")
    writer.close()

    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{port}"
        session_id = (await (await http.post(f"{url}/create-session")).json())["sessionId"]
        stream = await http.get(f"{url}/stream?session={session_id}")
        # The 4 s burst, then 3 s more paced live: the stream outlives the 1 s header timeout.
        burst_and_three_seconds = (4 + 3) * 16_000
        assert len(await read_bytes(stream, burst_and_three_seconds)) == burst_and_three_seconds
        stream.close()


async def test_an_idle_or_half_sent_kept_alive_connection_closes_after_keepalive_timeout(
    guarded_server: ServerFactory,
) -> None:
    port, _ = await guarded_server(
        server={"header_timeout_seconds": 60.0, "keepalive_timeout_seconds": 1.0}
    )
    loop = asyncio.get_running_loop()
    for second_request in (b"", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        length = int(next(h for h in head.split(b"\r\n") if h.startswith(b"Content-Length"))[15:])
        await reader.readexactly(length)
        started = loop.time()
        writer.write(second_request)
        assert await closed_by_server(reader) == b""
        assert loop.time() - started < 1.0 + 5.0  # aiohttp's default: an hour
        writer.close()


# -- accept() out of file descriptors ------------------------------------------------------------


def test_repeated_accept_errors_log_once_per_interval_with_a_count() -> None:
    now = [0.0]
    capture = LogCapture()
    configure_logging(stream=capture.buffer)
    # A logger of its own, with a clock of its own (the `radiod serve` test below covers the
    # filter configure_logging puts on asyncio's logger).
    aio = logging.getLogger("radiod.test.asyncio")
    throttled = AcceptErrorFilter(lambda: Throttle(interval=10.0, clock=lambda: now[0]))
    aio.addFilter(throttled)
    error = OSError(24, "Too many open files")
    for second in range(30):  # asyncio's pattern: a burst of the backlog every second
        now[0] = float(second)
        for _ in range(100):
            aio.error(f"{ACCEPT_ERROR}\nsocket: <fd=6>", exc_info=(OSError, error, None))
    aio.removeFilter(throttled)
    lines = capture.events(ACCEPT_ERROR)
    assert [line["suppressed"] for line in lines] == [0, 999, 999]
    assert lines[0]["error"] == "[Errno 24] Too many open files"
    assert "exception" not in lines[0]


@contextlib.contextmanager
def radiod_serve(
    workdir: Path, library: Path, max_fds: int, **sections: dict[str, Any]
) -> Iterator[tuple[int, Path]]:
    """A `radiod serve` subprocess limited to `max_fds` descriptors: (port, log path)."""
    log_path = workdir / "server.log"
    sections = {
        "server": {"port": 0},
        "library": {"path": str(library)},
        "log": {"file": str(log_path)},
        **sections,
    }
    config = workdir / "config.toml"
    config.write_text(
        "".join(
            f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
            for name, table in sections.items()
        )
    )

    def limit_fds() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max_fds, max_fds))

    process = subprocess.Popen(
        [sys.executable, "-m", "radiod", "serve", "--config", str(config)],
        stderr=subprocess.DEVNULL,
        preexec_fn=limit_fds,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        deadline = time.monotonic() + 60
        while '"server.started"' not in (log_path.read_text() if log_path.exists() else ""):
            assert process.poll() is None and time.monotonic() < deadline, "radiod did not start"
            time.sleep(0.05)
        started = next(json.loads(x) for x in log_path.open() if '"server.started"' in x)
        yield started["port"], log_path
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)


def healthz(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status
    except OSError:
        return None


# The flood's duration: every second of it asyncio retries accept() and fails again.
FLOOD_SECONDS = 3.0


def test_out_of_file_descriptors_logs_once_and_the_server_recovers(
    tmp_path: Path, demo_library: Path
) -> None:
    # An idle server holds ~10 descriptors: 32 leave room for ~20 connections, not 60.
    with radiod_serve(
        tmp_path,
        demo_library,
        max_fds=32,
        limits={"connections_per_ip": 0},
        server={"header_timeout_seconds": 60.0},
    ) as (port, log_path):
        flood = [socket.create_connection(("127.0.0.1", port)) for _ in range(60)]
        deadline = time.monotonic() + WAIT
        while ACCEPT_ERROR not in log_path.read_text():
            assert time.monotonic() < deadline, "the server never ran out of descriptors"
            time.sleep(0.05)
        time.sleep(FLOOD_SECONDS)
        for sock in flood:
            sock.close()
        deadline = time.monotonic() + WAIT
        while healthz(port) != 200:
            assert time.monotonic() < deadline, "the server did not recover"
            time.sleep(0.1)
        text = log_path.read_text()
    errors = [json.loads(x) for x in text.splitlines() if ACCEPT_ERROR in x]
    assert len(errors) == 1, errors
    assert "Too many open files" in errors[0]["error"]
    assert len(text) < 20_000
