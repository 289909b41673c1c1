"""SIGTERM and SIGINT end every open response cleanly and exit 0 with `server.stopped`."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import read_sse


def _start(tmp_path: Path, library: Path) -> tuple[subprocess.Popen[str], Path]:
    log_path = tmp_path / "radiod.log"
    config = tmp_path / "radiod.toml"
    config.write_text(
        f'[server]\nport = 0\n[library]\npath = "{library}"\n[log]\nfile = "{log_path}"\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "radiod", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, log_path


async def _wait_for_port(log_path: Path, process: subprocess.Popen[str]) -> int:
    async with asyncio.timeout(60):
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            if log_path.exists():
                for line in log_path.read_text().splitlines():
                    record = json.loads(line)
                    if record["event"] == "server.started":
                        return record["port"]
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_ends_open_streams_and_exits_cleanly(
    tmp_path: Path, demo_library: Path, signum: signal.Signals
) -> None:
    process, log_path = _start(tmp_path, demo_library)
    try:
        port = await _wait_for_port(log_path, process)
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            session_id = (await (await http.post("/create-session")).json())["sessionId"]
            events = await http.get(f"/events?session={session_id}")
            await read_sse(events, 1)
            stream = await http.get(f"/stream?session={session_id}")
            await stream.content.readexactly(4096)
            process.send_signal(signum)
            async with asyncio.timeout(20):
                # Both responses end (EOF) instead of hanging or being reset mid-chunk.
                while await stream.content.read(65536):
                    pass
                await events.read()
        returncode = await asyncio.to_thread(process.wait, 20)
    finally:
        if process.poll() is None:
            process.kill()
    stderr = process.stderr.read() if process.stderr else ""
    assert returncode == 0, stderr
    assert "Traceback" not in stderr
    events_logged = [json.loads(line)["event"] for line in log_path.read_text().splitlines()]
    assert events_logged[-1] == "server.stopped"
    assert "session.reaped" in events_logged
