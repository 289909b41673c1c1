"""2,000 connects and disconnects, rude ones included, leave nothing behind.

Audio and events connections end every way a network ends them: a graceful close, a reset
mid-stream (SO_LINGER 0), a half-closed socket (shutdown(SHUT_WR)) that is closed later, and
a reset before the response began. Afterwards listeners, event clients, asyncio tasks and
sockets are back where they were. The server runs in this process, so its tasks can be
counted (and its sockets are this process's).
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections import Counter

from aiohttp.test_utils import TestClient

from tests.conftest import ClientFactory, LogCapture, create_session
from tests.reliability.conftest import listen, raw_get, wait_for

CYCLES = 2_000
CONCURRENCY = 40
SESSIONS = 3  # the start pace admits three a second
KINDS = (
    "stream-close",
    "stream-reset",
    "stream-half-close",
    "stream-reset-before-response",
    "events-close",
    "events-reset",
    "events-half-close",
)


def _sockets() -> int:
    """Open sockets of this process (files come and go as the mixers change tracks)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue  # closed while listing
    return count


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST instead of a FIN: what a crashed client or a middlebox does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _cycle(port: int, session_id: str, kind: str) -> None:
    channel = "events" if kind.startswith("events") else "stream"
    reader, writer = await raw_get(port, f"/{channel}?session={session_id}")
    try:
        if kind == "stream-reset-before-response":
            _reset(writer)
            return
        await reader.readuntil(b"\r\n\r\n")  # the response head
        await reader.read(1024)  # mid-stream: some audio, or the `connected` event
        if kind.endswith("-reset"):
            _reset(writer)
        elif kind.endswith("-half-close"):
            writer.write_eof()
            await reader.read(1024)  # the server may go on sending; the client closes later
            writer.close()
        else:
            writer.close()
    except (ConnectionError, asyncio.IncompleteReadError):
        writer.close()


async def _follow_events(client: TestClient, session_id: str, connects: Counter[str]) -> None:
    """An events client that reads all along and reconnects when dropped, as the page does."""
    while True:
        connects[session_id] += 1
        async with client.get(f"/events?session={session_id}") as response:
            while await response.content.readany():
                pass


async def _counts(client: TestClient) -> tuple[int, int, int, int]:
    health = await (await client.get("/healthz")).json()
    return health["listeners"], health["eventClients"], len(asyncio.all_tasks()), _sockets()


async def test_rude_disconnects_leak_no_listener_task_or_socket(
    radiod_client: ClientFactory, log_capture: LogCapture
) -> None:
    client = await radiod_client()
    port = client.server.port
    assert port is not None
    sessions = [await create_session(client) for _ in range(SESSIONS)]
    # One steady listener and events client per session: the mixers keep running throughout.
    steady = [await listen(client, sid) for sid in sessions]
    connects: Counter[str] = Counter()
    events = [asyncio.create_task(_follow_events(client, sid, connects)) for sid in sessions]
    await wait_for(lambda: all(r.seconds > 4 for r, _ in steady), 30, "steady listeners")
    await wait_for(lambda: len(log_capture.events("events.connected")) == SESSIONS, 30, "events")
    before = await _counts(client)

    done: Counter[str] = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(CYCLES):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            kind = KINDS[i % len(KINDS)]
            await _cycle(port, sessions[i % SESSIONS], kind)
            done[kind] += 1

    async with asyncio.timeout(120):
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    assert sum(done.values()) == CYCLES

    last: list[tuple[int, int, int, int]] = []

    async def settled() -> bool:
        last[:] = [await _counts(client)]
        return last[0] == before

    await wait_for(
        settled, 30, lambda: f"listeners, event clients, tasks, sockets {last} back to {before}"
    )
    lagged = log_capture.events("events.client_lagged")
    print(f"{dict(done)}; before and after {before}; steady SSE clients lagged {len(lagged)}")
    # The flood of listener events never costs the steady events clients their connection.
    assert connects == dict.fromkeys(sessions, 1)
    for reader, task in steady:
        # Still connected. Its pace is not judged: the churn runs on this same event loop.
        assert not reader.error and not reader.ended
        task.cancel()
    for task in events:
        task.cancel()
