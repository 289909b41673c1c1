"""radiod instances behind a real nginx: sessions spread, every channel lands on the node in
its session ID, the cookie fallback crosses the proxy, a killed node's listeners move to the
other while its listeners hear no gap, a draining node keeps its listeners to the deadline,
and `radiod audit` over every node's log is clean."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from radiod.cluster.proxy import Upstream
from tests.conftest import collect_sse, read_bytes
from tests.reliability.conftest import RadiodProcess, RealtimeReader, require_real_time, wait_for
from tests.reliability.proxy import (
    NETNS_PORT,
    Cluster,
    Instance,
    Namespaces,
    Nginx,
    instance_sections,
)

NODE_RE = re.compile(r"session_([a-z0-9-]+)_")
DRAIN_SECONDS = 8.0
StartCluster = Callable[..., Awaitable[Cluster]]


def node_of(session_id: str) -> str:
    match = NODE_RE.match(session_id)
    assert match is not None, session_id
    return match[1]


@pytest.fixture
async def radiod_cluster(tmp_path: Path, demo_library: Path) -> AsyncIterator[StartCluster]:
    """`await radiod_cluster(netns=False, server={...})`: two instances behind nginx."""
    processes: list[RadiodProcess] = []
    proxies: list[Nginx] = []
    namespaces = Namespaces()

    def launch(index: int, node: str, host: str, port: int, **sections: Any) -> RadiodProcess:
        prefix, trusted = (), "127.0.0.1"
        if namespaces.names:
            prefix = ("ip", "netns", "exec", namespaces.names[index])
            trusted = namespaces.host_addresses[index]
        merged = instance_sections(node, trusted, **sections)
        merged["server"].update(host=host, port=port)
        process = RadiodProcess(
            tmp_path / f"node{index}", demo_library, argv_prefix=prefix, **merged
        )
        processes.append(process)
        return process

    async def start(count: int = 2, *, netns: bool = False, **sections: Any) -> Cluster:
        if netns and (why := Namespaces.available()) is not None:
            pytest.skip(f"instances in network namespaces: {why}")
        instances = []
        for index in range(count):
            node, host, port = f"node-{'abcdefgh'[index]}", "127.0.0.1", 0
            if netns:
                _, _, host = namespaces.make(index)
                port = NETNS_PORT
            process = launch(index, node, host, port, **sections)
            await process.started()
            instances.append(Instance(node, host, process.port, process))
        upstreams = [Upstream(i.node, i.host, i.port) for i in instances]
        nginx = Nginx(tmp_path / "nginx", upstreams)
        proxies.append(nginx)
        await nginx.started()

        async def restart(old: Instance) -> Instance:
            """Start a killed instance again on its port and log (as systemd would)."""
            index = instances.index(old)
            starts = len(old.process.events("server.started"))
            process = launch(index, old.node, old.host, old.port, **sections)
            await wait_for(
                lambda: len(process.events("server.started")) > starts, 60, "the restart"
            )
            process.port = old.port
            instances[index] = Instance(old.node, old.host, old.port, process)
            return instances[index]

        return Cluster(instances, nginx, restart)

    yield start
    for nginx in proxies:
        await asyncio.to_thread(nginx.stop)
    for process in processes:
        await asyncio.to_thread(process.stop)
    namespaces.remove()


@dataclass
class Page:
    """What the player page does over HTTP: one cookie jar, one session, both channels."""

    http: aiohttp.ClientSession
    session_id: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    reader: RealtimeReader | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def node(self) -> str:
        return node_of(self.session_id)

    async def create(self) -> str:
        async with self.http.post("/create-session") as response:
            assert response.status == 201, await response.text()
            self.session_id = (await response.json())["sessionId"]
        return self.session_id

    async def attach(self, *, named: bool = True) -> None:
        """Events, then audio, read as they come; `named=False`: the cookie fallback."""
        query = f"?session={self.session_id}" if named else ""
        events = await self.http.get(f"/events{query}")
        assert events.status == 200
        self.events = []
        self.tasks.append(asyncio.create_task(collect_sse(events, self.events)))
        await wait_for(lambda: bool(self.events), 20, "the connected event")
        assert self.events[0] == {"type": "connected", "sessionId": self.session_id}
        stream = await self.http.get(f"/stream{query}")
        assert stream.status == 200, await stream.text()
        self.reader = RealtimeReader(stream)
        self.tasks.append(asyncio.create_task(self.reader.run()))
        await wait_for(lambda: self.reader is not None and self.reader.received > 0, 20, "audio")

    async def status(self) -> dict[str, Any]:
        async with self.http.get(f"/sessions/{self.session_id}") as response:
            return await response.json()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.http.close()


@pytest.fixture
async def open_page() -> AsyncIterator[Callable[[str], Awaitable[Page]]]:
    pages: list[Page] = []

    async def open_(url: str) -> Page:
        # unsafe: keep cookies of an IP-literal host (127.0.0.1), as a browser does.
        jar = aiohttp.CookieJar(unsafe=True)
        http = aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=0), cookie_jar=jar)
        page = Page(http)
        pages.append(page)
        return page

    yield open_
    for page in pages:
        await page.close()


async def pages_on_both(
    cluster: Cluster, open_page: Callable[[str], Awaitable[Page]], per_node: int
) -> dict[str, list[Page]]:
    """Create sessions through the proxy until each node holds `per_node` of them."""
    by_node: dict[str, list[Page]] = {i.node: [] for i in cluster.instances}
    for _ in range(per_node * len(by_node) * 4):
        if all(len(pages) >= per_node for pages in by_node.values()):
            break
        page = await open_page(cluster.url)
        await page.create()
        if len(by_node[page.node]) < per_node:
            by_node[page.node].append(page)
    assert all(len(pages) >= per_node for pages in by_node.values()), "sessions not balanced"
    return by_node


def audit(paths: list[Path]) -> dict[str, Any]:
    """`radiod audit --json` over every node's log, as an operator runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "radiod", "audit", "--json", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(result.stdout)
    assert result.returncode == 0, report
    return report


def assert_lines_name_their_node(instance: Instance) -> None:
    lines = instance.process.log_lines()
    assert lines and all(line.get("node") == instance.node for line in lines)
    for line in lines:
        if line.get("event") in ("stream.connected", "events.connected"):
            assert node_of(line["session_id"]) == instance.node, line


async def assert_spread_and_pinned(cluster: Cluster, pages: list[Page]) -> None:
    """Sessions on every node, and each one's audio and events on the node in its ID."""
    counts = {i.node: 0 for i in cluster.instances}
    for page in pages:
        counts[page.node] += 1
    assert all(counts.values()), f"sessions not spread: {counts}"
    for page in pages:
        await page.attach()
    for page in pages:
        status = await page.status()
        assert status["node"] == page.node
        assert (status["listeners"], status["eventClients"]) == (1, 1), status
    for instance in cluster.instances:
        assert_lines_name_their_node(instance)
        connected = {line["session_id"] for line in instance.process.events("stream.connected")}
        assert connected == {p.session_id for p in pages if p.node == instance.node}
    print(f"sessions per node: {counts}")


async def test_twenty_sessions_spread_over_both_nodes_and_each_channel_lands_on_its_node(
    radiod_cluster: StartCluster, open_page: Callable[[str], Awaitable[Page]]
) -> None:
    cluster = await radiod_cluster()
    pages = [await open_page(cluster.url) for _ in range(20)]
    for page in pages:
        await page.create()
    await assert_spread_and_pinned(cluster, pages)
    assert audit(cluster.log_paths())["summary"]["splits"] == 0


async def test_requests_without_a_session_follow_the_cookie_through_the_proxy(
    radiod_cluster: StartCluster, open_page: Callable[[str], Awaitable[Page]]
) -> None:
    cluster = await radiod_cluster()
    by_node = await pages_on_both(cluster, open_page, 1)
    for node, (page, *_) in by_node.items():
        await page.attach(named=False)  # no ?session=: the signed radiod_session cookie
        status = await page.status()
        assert status["node"] == node and status["listeners"] == 1, status
    # A restart onto the other node moves the cookie, and the fallback with it.
    first, second = by_node["node-a"][0], by_node["node-b"][0]
    await first.close()
    first.http = second.http  # the same browser now makes a session on another node
    for _ in range(8):
        await first.create()
        if first.node != second.node:
            break
    assert first.node != second.node
    stream = await first.http.get("/stream")
    await read_bytes(stream, 4000)
    assert (await first.status())["listeners"] == 1
    stream.close()


async def test_a_killed_node_s_listeners_move_to_the_other_which_hears_no_gap(
    radiod_cluster: StartCluster, open_page: Callable[[str], Awaitable[Page]]
) -> None:
    cluster = await radiod_cluster()
    by_node = await pages_on_both(cluster, open_page, 3)
    for page in [p for pages in by_node.values() for p in pages]:
        await page.attach()
    survivors = [p.reader for p in by_node["node-b"] if p.reader is not None]
    await require_real_time(survivors)
    victim = cluster.instance("node-a")
    victim.process.process.send_signal(signal.SIGKILL)
    killed = time.monotonic()

    for page in by_node["node-a"]:
        reader = page.reader
        assert reader is not None
        await wait_for(
            lambda r=reader: r.ended or bool(r.error), 15, "the dead node's audio to end"
        )
        # The page retries its session: the proxy says it is gone, as radiod says of any.
        async with page.http.get(f"/stream?session={page.session_id}") as refused:
            assert refused.status == 404
        async with page.http.get(f"/events?session={page.session_id}") as gone:
            assert b"session_not_found" in await gone.read()
        await page.create()
        assert page.node == "node-b"
        await page.attach()
    moved_in = time.monotonic() - killed
    await wait_for(lambda: time.monotonic() - killed > 5, 10, "five seconds of the survivors")
    gaps = [gap for reader in survivors for gap in reader.finish()]
    print(f"moved {len(by_node['node-a'])} listeners in {moved_in:.2f} s; survivor gaps {gaps}")
    assert gaps == []
    assert all(not r.ended and not r.error for r in survivors)

    # The killed node comes back (systemd would restart it): its log says so, the audit then
    # knows its connections ended, and new sessions reach it again.
    await cluster.restart(victim)
    report = audit(cluster.log_paths())
    assert report["summary"]["splits"] == 0, report


async def test_a_draining_node_keeps_its_listeners_to_the_deadline_then_sends_them_elsewhere(
    radiod_cluster: StartCluster, open_page: Callable[[str], Awaitable[Page]]
) -> None:
    cluster = await radiod_cluster(server={"drain_seconds": DRAIN_SECONDS})
    by_node = await pages_on_both(cluster, open_page, 2)
    draining = by_node["node-a"]
    for page in draining:
        await page.attach()
    readers = [p.reader for p in draining if p.reader is not None]
    await require_real_time(readers)
    node = cluster.instance("node-a")
    node.process.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    await wait_for(lambda: bool(node.process.events("server.draining")), 10, "server.draining")

    async with aiohttp.ClientSession() as direct:
        async with direct.post(f"{node.url}/create-session") as refused:
            assert refused.status == 503 and refused.headers["Retry-After"] == "1"
        async with direct.get(f"{node.url}/healthz") as health:
            assert (health.status, (await health.json())["status"]) == (503, "draining")
    for _ in range(4):  # the proxy retries the refused POST on the other node
        newcomer = await open_page(cluster.url)
        await newcomer.create()
        assert newcomer.node == "node-b"

    before_deadline = signalled + DRAIN_SECONDS - 1.0
    await wait_for(lambda: time.monotonic() > before_deadline, DRAIN_SECONDS + 5, "the deadline")
    gaps = [gap for reader in readers for gap in reader.finish()]
    assert gaps == [] and all(not r.ended and not r.error for r in readers), gaps

    for page in draining:
        await wait_for(
            lambda p=page: len(p.events) > 1 and p.events[-1]["type"] == "error",
            15,
            "session_ended",
        )
        assert page.events[-1] == {
            "type": "error",
            "message": "session_ended",
            "reason": "draining",
        }
        assert page.reader is not None
        await wait_for(lambda r=page.reader: r.ended, 10, "the audio to end")
        assert page.reader.error == ""
    ended_after = time.monotonic() - signalled
    assert ended_after >= DRAIN_SECONDS - 1.0
    assert await asyncio.to_thread(node.process.process.wait, 20) == 0

    for page in draining:  # each page restarts, onto the node that stays
        await page.create()
        assert page.node == "node-b"
        await page.attach()
    report = audit(cluster.log_paths())
    assert report["summary"]["splits"] == 0, report
    assert report["summary"]["restarts"] == len(draining), report["summary"]


async def test_instances_in_separate_network_namespaces_serve_through_the_proxy(
    radiod_cluster: StartCluster, open_page: Callable[[str], Awaitable[Page]]
) -> None:
    cluster = await radiod_cluster(netns=True)
    pages = [await open_page(cluster.url) for _ in range(8)]
    for page in pages:
        await page.create()
    await assert_spread_and_pinned(cluster, pages)
    for instance in cluster.instances:
        # Connections come from the proxy's veth address; the logs name the real client.
        remotes = {line["remote"] for line in instance.process.events("stream.connected")}
        assert remotes == {"127.0.0.1"}, remotes
    assert audit(cluster.log_paths())["summary"]["splits"] == 0
