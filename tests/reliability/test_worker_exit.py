"""`radiod serve` with its default worker pool: SIGTERM or SIGINT leaves no worker behind,
and neither does a server that is killed outright (workers end when their channel does)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from tests.reliability.conftest import RadiodFactory, wait_for


def _alive(pid: int) -> bool:
    """Whether `pid` is a process that has not exited (a zombie counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
async def test_no_worker_outlives_the_server(radiod_process: RadiodFactory, signum: int) -> None:
    server = await radiod_process()
    workers = [line["pid"] for line in server.events("worker.started")]
    assert len(workers) >= 1 and all(_alive(pid) for pid in workers)
    async with aiohttp.ClientSession(server.url) as http:
        async with http.post("/create-session") as response:
            session_id = (await response.json())["sessionId"]
        async with http.get(f"/stream?session={session_id}") as stream:
            await stream.content.readexactly(16_000)  # a worker really encodes for it
            server.process.send_signal(signum)
            await asyncio.to_thread(server.process.wait, 30)
    await wait_for(lambda: not any(_alive(pid) for pid in workers), 10, "workers to exit")
    if signum != signal.SIGKILL:
        assert server.process.returncode == 0
        stopped = {line["pid"] for line in server.events("worker.stopped")}
        assert stopped == set(workers)
