"""SIGTERM with 200 live listeners: every response ends cleanly and the server exits 0 in 5 s."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp

from tests.reliability.conftest import RadiodFactory, wait_for

LISTENERS = 200
SESSIONS = 3  # the start pace admits three a second
STOP_LIMIT_SECONDS = 5.0


async def _listen_to_the_end(response: aiohttp.ClientResponse) -> str:
    """Read until the response ends; "" when it ended well (chunked terminator seen)."""
    try:
        while await response.content.readany():
            pass
    except (aiohttp.ClientError, ConnectionError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


async def test_sigterm_with_200_listeners_ends_every_response_and_exits_cleanly(
    radiod_process: RadiodFactory,
) -> None:
    server = await radiod_process()
    async with aiohttp.ClientSession(server.url, connector=aiohttp.TCPConnector(limit=0)) as http:
        sessions = []
        for _ in range(SESSIONS):
            async with http.post("/create-session") as response:
                sessions.append((await response.json())["sessionId"])
        responses = [
            await http.get(f"/stream?session={sessions[i % SESSIONS]}") for i in range(LISTENERS)
        ]
        assert {r.status for r in responses} == {200}
        endings = [asyncio.create_task(_listen_to_the_end(r)) for r in responses]

        async def all_attached() -> bool:
            return (await (await http.get("/healthz")).json())["listeners"] == LISTENERS

        await wait_for(all_attached, 30, f"{LISTENERS} listeners")
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        returncode = await asyncio.to_thread(server.process.wait, 30)
        stopped_in = time.monotonic() - signalled
        async with asyncio.timeout(10):
            errors = await asyncio.gather(*endings)

    print(f"stopped in {stopped_in:.2f} s")
    assert returncode == 0
    stderr = server.process.stderr.read() if server.process.stderr else ""
    assert "Traceback" not in stderr
    assert stopped_in < STOP_LIMIT_SECONDS
    assert [e for e in errors if e] == [], "a response was cut instead of ended"
    events = [line["event"] for line in server.log_lines()]
    assert events[-1] == "server.stopped"
    assert events.count("stream.closed") == LISTENERS
