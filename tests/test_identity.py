"""Identity that cannot be confused or forged: listener names, half-made attaches, cookies."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading

from aiohttp import ClientSession, DummyCookieJar
from aiohttp.test_utils import TestClient

from radiod.audit import audit_lines
from radiod.web.context import CLIENT_COOKIE, verified_client_id
from tests.conftest import ClientFactory, LogCapture, create_session, decode_audio, read_bytes

BURST_BYTES_128K = 4 * 128_000 // 8
# asyncio's default executor never has more workers than this (min(32, cpus + 4)).
DEFAULT_EXECUTOR_MAX_WORKERS = 32


async def _listeners(client: TestClient, session_id: str) -> int:
    return (await (await client.get(f"/sessions/{session_id}")).json())["listeners"]


async def _wait_listeners(client: TestClient, session_id: str, count: int) -> None:
    async with asyncio.timeout(10):
        while await _listeners(client, session_id) != count:
            await asyncio.sleep(0.02)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _reset(sock: socket.socket) -> None:
    """Close with an RST, as a browser tab that is killed does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def test_two_connections_with_one_listener_name_never_starve_each_other(
    radiod_client: ClientFactory,
) -> None:
    # A short grace: if the session believed it had no listener, its mixer would stop at once.
    client = await radiod_client(stream={"stop_grace_seconds": 0.2})
    session_id = await create_session(client)
    first = await client.get(f"/stream?session={session_id}&listener=same")
    await read_bytes(first, BURST_BYTES_128K)
    second = await client.get(f"/stream?session={session_id}&listener=same")
    await read_bytes(second, 8000)
    assert await _listeners(client, session_id) == 2

    second.close()
    await _wait_listeners(client, session_id, 1)
    # Three more seconds, paced live: only a mixer that still runs can send them.
    decode_audio(await read_bytes(first, 3 * 16_000, timeout=15))
    assert await _listeners(client, session_id) == 1

    first.close()
    await _wait_listeners(client, session_id, 0)


async def test_a_client_that_leaves_while_attaching_leaves_nothing_registered(
    radiod_client: ClientFactory,
) -> None:
    """The window: a listener arrives while the mixer is stopping and leaves before it has.

    The stop runs in the loop's default executor; keeping that executor busy (as other
    sessions' stops and closes do under load) holds the window open for as long as needed.
    """
    client = await radiod_client(stream={"stop_grace_seconds": 0.0})
    session_id = await create_session(client)
    stream = await client.get(f"/stream?session={session_id}")
    await read_bytes(stream, 8000)
    await _listeners(client, session_id)  # the pooled API connection exists from here on
    tasks_before, fds_before = len(asyncio.all_tasks()), _open_fds()

    loop = asyncio.get_running_loop()
    busy = threading.Event()
    blockers = [
        loop.run_in_executor(None, busy.wait, 30) for _ in range(DEFAULT_EXECUTOR_MAX_WORKERS)
    ]
    try:
        stream.close()
        await _wait_listeners(client, session_id, 0)  # the stop is now queued
        leaving = socket.create_connection(("127.0.0.1", client.port))
        request = f"GET /stream?session={session_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        leaving.sendall(request.encode())
        await _wait_listeners(client, session_id, 1)  # attached, waiting for the stop
        _reset(leaving)
        await _wait_listeners(client, session_id, 0)
    finally:
        busy.set()
        await asyncio.gather(*blockers)

    async with asyncio.timeout(10):
        while len(asyncio.all_tasks()) > tasks_before or _open_fds() > fds_before:
            await asyncio.sleep(0.02)
    # And the session still serves: the mixer restarts for the next listener.
    again = await client.get(f"/stream?session={session_id}")
    decode_audio(await read_bytes(again, 16_000))


async def test_clients_that_reset_at_any_moment_leak_nothing(
    radiod_client: ClientFactory,
) -> None:
    client = await radiod_client(stream={"stop_grace_seconds": 0.0})
    session_id = await create_session(client)
    # Once played, a session's paused pipeline keeps its track open: count from there on.
    first = await client.get(f"/stream?session={session_id}")
    await read_bytes(first, 8000)
    first.close()
    async with asyncio.timeout(10):
        while (await (await client.get(f"/sessions/{session_id}")).json())["playing"]:
            await asyncio.sleep(0.02)
    tasks_before, fds_before = len(asyncio.all_tasks()), _open_fds()
    request = f"GET /stream?session={session_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    for cycle in range(40):
        sock = socket.create_connection(("127.0.0.1", client.port))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_sendall(sock, request)
        if cycle % 2:  # half of them wait for the first audio bytes, half leave at once
            await asyncio.get_running_loop().sock_recv(sock, 1)
        _reset(sock)
    await _wait_listeners(client, session_id, 0)
    async with asyncio.timeout(10):
        while len(asyncio.all_tasks()) > tasks_before or _open_fds() > fds_before:
            await asyncio.sleep(0.02)


async def test_a_forged_cookie_is_replaced_and_steers_nothing(
    radiod_client: ClientFactory, log_capture: LogCapture
) -> None:
    client = await radiod_client()
    created = await client.post("/create-session")
    victim_session = (await created.json())["sessionId"]
    cookie = created.cookies[CLIENT_COOKIE].value
    victim_id = log_capture.events("session.created")[0]["client_id"]
    assert verified_client_id("", cookie) == victim_id  # signed, and carries the logged id
    assert cookie.startswith(victim_id + ".")

    forgeries = [
        victim_id,  # the bare id, as an unsigned cookie used to be
        victim_id + "." + cookie.rsplit(".", 1)[1][::-1],  # a tampered signature
        "forged-client-id",
        "x" * 40 + ".\u00b2",  # a non-ASCII "signature"
    ]
    attacker_sessions = []
    url = str(client.make_url("/"))
    for forged in forgeries:
        headers = {"Cookie": f"{CLIENT_COOKIE}={forged}"}
        async with ClientSession(base_url=url, cookie_jar=DummyCookieJar()) as attacker:
            response = await attacker.post("/create-session", headers=headers)
            assert response.status == 201
            fresh = response.cookies[CLIENT_COOKIE].value
            assert fresh != forged and verified_client_id("", fresh) not in (None, victim_id)
            sid = (await response.json())["sessionId"]
            attacker_sessions.append(sid)
            # Its events channel on its own session, at the same time as the victim's audio.
            events = await attacker.get(f"/events?session={sid}", headers=headers)
            await events.content.readline()
            victim_stream = await client.get("/stream")  # no ?session=: follows the binding
            await read_bytes(victim_stream, 4000)
            assert await _listeners(client, victim_session) == 1
            assert await _listeners(client, sid) == 0
            victim_stream.close()
            await _wait_listeners(client, victim_session, 0)
            events.close()

    logged = {line.get("client_id") for line in log_capture.lines()}
    assert not logged & {forged for forged in forgeries if forged != victim_id}
    attacker_ids = {
        line["client_id"]
        for line in log_capture.events("session.created")
        if line["session_id"] in attacker_sessions
    }
    assert len(attacker_ids) == len(forgeries) and victim_id not in attacker_ids
    assert not log_capture.events("split_session.detected")
    report = audit_lines(log_capture.buffer.getvalue().splitlines())
    assert report.clean and report.summary.splits == 0


async def test_instances_that_share_server_secret_accept_each_others_cookies(
    radiod_client: ClientFactory, log_capture: LogCapture
) -> None:
    shared = {"secret": "one secret for every instance behind the proxy"}
    first = await radiod_client(server=shared)
    second = await radiod_client(server=shared)
    stranger = await radiod_client(server={"secret": "another"})
    cookie = (await first.post("/create-session")).cookies[CLIENT_COOKIE].value
    client_id = cookie.split(".", 1)[0]
    headers = {"Cookie": f"{CLIENT_COOKIE}={cookie}"}
    for node, accepted in ((second, True), (stranger, False)):
        url = str(node.make_url("/"))
        async with ClientSession(base_url=url, cookie_jar=DummyCookieJar()) as browser:
            response = await browser.post("/create-session", headers=headers)
            assert (CLIENT_COOKIE not in response.cookies) is accepted
    created = log_capture.events("session.created")
    assert [line["client_id"] == client_id for line in created] == [True, True, False]
