"""`radiod cluster` (make serve-cluster): nginx and the instances start, serve and stop
together; Ctrl-C leaves no process behind, and neither does killing the supervisor."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import free_ports
from tests.reliability.conftest import wait_for
from tests.reliability.proxy import nginx_or_skip


def _children(pid: int) -> set[int]:
    """Every descendant of `pid` (from /proc), so none can hide as a grandchild."""
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        parent = frontier.pop()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent and int(entry.name) not in found:
                found.add(int(entry.name))
                frontier.add(int(entry.name))
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _start(tmp_path: Path, demo_library: Path) -> tuple[subprocess.Popen[str], int, Path]:
    nginx_or_skip()
    proxy_port, first_port = free_ports(), free_ports(2)
    config = tmp_path / "cluster.toml"
    config.write_text(
        f'[library]\npath = "{demo_library}"\n'
        f"[cluster]\ninstances = 2\nfirst_port = {first_port}\nproxy_port = {proxy_port}\n"
    )
    out = tmp_path / "cluster.out"
    process = subprocess.Popen(
        [sys.executable, "-m", "radiod", "cluster", "--config", str(config)],
        stdout=out.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, proxy_port, out


async def _serving(process: subprocess.Popen[str], port: int, out: Path) -> set[int]:
    """Wait until both instances answer through the proxy; the supervisor's descendants."""
    seen: set[str] = set()

    async def both_nodes() -> bool:
        assert process.poll() is None, out.read_text()
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.post(f"http://127.0.0.1:{port}/create-session") as response,
            ):
                if response.status == 201:
                    seen.add((await response.json())["sessionId"].split("_")[1])
        except aiohttp.ClientError:
            return False
        return seen == {"local-1", "local-2"}

    await wait_for(both_nodes, 60, lambda: f"both instances: {out.read_text()[-2000:]}")
    return _children(process.pid)


async def test_ctrl_c_stops_the_proxy_and_every_instance(
    tmp_path: Path, demo_library: Path
) -> None:
    process, port, out = _start(tmp_path, demo_library)
    try:
        children = await _serving(process, port, out)
        assert len(children) >= 3  # two instances and nginx (with its worker)
        process.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(process.wait, 30) == 0
        await wait_for(lambda: not _alive(children), 10, "every child to exit")
    finally:
        process.kill()
    text = out.read_text()
    for prefix in ("local-1 |", "local-2 |", "cluster |"):
        assert prefix in text
    assert "Traceback" not in text


async def test_a_killed_supervisor_takes_its_children_with_it(
    tmp_path: Path, demo_library: Path
) -> None:
    if not Path("/proc/self").exists():
        pytest.skip("needs Linux /proc")
    process, port, out = _start(tmp_path, demo_library)
    children = await _serving(process, port, out)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    await wait_for(lambda: not _alive(children), 20, lambda: f"orphans {_alive(children)}")
