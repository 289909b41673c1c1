"""`GET /metrics` on a real server: the figures move with what happens, and strangers get none."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from radiod.app import create_app
from radiod.audio import fanout
from radiod.audio.ring import Chunk, Ring
from radiod.audio.stats import LeadWatch
from radiod.config import ConfigError, parse_config
from radiod.library import Track
from radiod.metrics import Metrics
from tests.conftest import (
    ClientFactory,
    LogCapture,
    create_session,
    make_config,
    read_bytes,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
DASHBOARD = Path(__file__).resolve().parents[1] / "contrib" / "grafana-dashboard.json"


def parse(text: str) -> Samples:
    """Prometheus text as {(sample name, sorted labels): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(client: TestClient, **headers: str) -> Samples:
    response = await client.get("/metrics", headers=headers)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return parse(await response.text())


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def eventually(
    client: TestClient, check: Callable[[Samples], bool], timeout: float = 20.0
) -> Samples:
    """Scrape until `check` holds; TimeoutError after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not check(samples := await scrape(client)):
            await asyncio.sleep(0.05)
    return samples


async def test_listener_gauge_follows_a_listener_and_chunks_are_counted(
    radiod_client: ClientFactory,
) -> None:
    client = await radiod_client()
    before = await scrape(client)
    assert value(before, "radiod_sessions") == 0 and value(before, "radiod_listeners") == 0
    session_id = await create_session(client)
    stream = await client.get(f"/stream?session={session_id}")
    await read_bytes(stream, 32_000)
    during = await scrape(client)
    assert value(during, "radiod_sessions") == 1
    assert value(during, "radiod_listeners") == 1
    assert value(during, "radiod_chunks_produced_total", worker="inline") >= 8  # 2 s of audio
    # The burst is encoded as fast as the machine can: far faster than real time.
    assert value(during, "radiod_encode_realtime_factor", worker="inline") > 1
    assert value(during, "radiod_encode_audio_seconds_total", worker="inline") >= 1.5
    events = await client.get(f"/events?session={session_id}")
    await eventually(client, lambda s: value(s, "radiod_event_clients") == 1)
    stream.close()
    events.close()
    after = await eventually(
        client,
        lambda s: value(s, "radiod_listeners") == 0 and value(s, "radiod_event_clients") == 0,
    )
    assert value(after, "radiod_sessions") == 1  # the session outlives its listener


async def test_answers_are_counted_by_route_template_and_status(
    radiod_client: ClientFactory,
) -> None:
    client = await radiod_client(limits={"create_burst": 2, "create_per_minute": 1})
    for _ in range(3):
        await client.post("/create-session")  # 201, 201, then 429
    session_id = await create_session(await radiod_client())  # not this server's
    assert (await client.get(f"/sessions/{session_id}")).status == 404
    assert (await client.get("/sessions/session_abc")).status == 404
    assert (await client.get("/no/such/page?x=1")).status == 404
    samples = await scrape(client)
    assert value(samples, "radiod_create_session_responses_total", status="201") == 2
    assert value(samples, "radiod_create_session_responses_total", status="429") == 1
    http = "radiod_http_responses_total"
    assert value(samples, http, route="/create-session", status="429") == 1
    assert value(samples, http, route="/sessions/{session_id}", status="404") == 2
    assert value(samples, http, route="unmatched", status="404") == 1
    routes = {dict(labels)["route"] for name, labels in samples if name == http}
    assert routes == {"/create-session", "/sessions/{session_id}", "unmatched"}  # no raw URL


async def test_loopback_reads_metrics_and_others_need_the_token(
    radiod_client: ClientFactory,
) -> None:
    open_to_loopback = await radiod_client()
    assert (await open_to_loopback.get("/metrics")).status == 200

    closed = await radiod_client(metrics={"allowed_ips": ["10.0.0.0/8"]})
    refused = await closed.get("/metrics")
    assert refused.status == 403
    assert await refused.json() == {
        "error": "Metrics are not served to this address (metrics.allowed_ips)"
    }

    with_token = await radiod_client(metrics={"allowed_ips": [], "token": "s3cret-token"})
    anonymous = await with_token.get("/metrics")
    assert anonymous.status == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await anonymous.json())["error"] == "Metrics need a bearer token"
    wrong = await with_token.get("/metrics", headers={"Authorization": "Bearer guess"})
    assert wrong.status == 401 and (await wrong.json())["error"] == "Invalid metrics token"
    samples = await scrape(with_token, Authorization="Bearer s3cret-token")
    http = "radiod_http_responses_total"
    assert value(samples, http, route="/metrics", status="401") == 2


async def test_a_skipped_reader_is_counted() -> None:
    metrics = Metrics()
    ring = Ring(ring_seconds=5, burst_seconds=1, on_skip=metrics.listener_skipped)
    ring.push(Chunk(0, 0.0, 1.0, b"a"))
    reader = ring.reader()
    await reader.read()
    for seq in range(1, 12):  # 11 s more: the reader is past the ring's tail
        ring.push(Chunk(seq, float(seq), 1.0, b"a"))
    await reader.read()
    samples = parse(generate_latest(metrics.registry).decode())
    assert value(samples, "radiod_listener_skips_total") == 1
    assert value(samples, "radiod_listener_skipped_seconds_total") > 5


def exposed_names(text: str) -> set[str]:
    """Every series name the exposition declares, with or without samples yet."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(f"{family.name}_total" if family.type == "counter" else family.name)
        names.update(sample.name for sample in family.samples)
    return names


def dashboard_metric_names(dashboard: dict) -> set[str]:
    """Every `radiod_…` name the dashboard's expressions use."""
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    return {name for expr in exprs for name in re.findall(r"\bradiod_[a-z_]+", expr)}


async def test_the_grafana_dashboard_names_only_metrics_the_server_exposes(
    radiod_client: ClientFactory,
) -> None:
    client = await radiod_client()
    exposed = exposed_names(await (await client.get("/metrics")).text())
    names = dashboard_metric_names(json.loads(DASHBOARD.read_text()))
    assert len(names) >= 15, "the dashboard should show most of what radiod counts"
    assert names <= exposed, f"not exposed: {sorted(names - exposed)}"


def test_a_worker_feeds_its_speed_and_underruns_under_its_own_label() -> None:
    metrics = Metrics()
    pool = metrics.worker("pool-1")  # what a mixer worker process's figures are fed into
    assert metrics.worker("pool-1") is pool
    pool.chunk_produced(audio_seconds=1.0, busy_seconds=0.04)
    pool.chunk_produced(audio_seconds=1.0, busy_seconds=0.06)
    watch = LeadWatch()  # how a producer decides an underrun, from its lead over the clock
    # A cold start behind the clock before it ever led; ahead; behind (listeners run dry);
    # still the same spell; ahead; a second spell.
    for lead in (-0.25, 0.5, -0.25, -0.5, 5.0, -1.0):
        pool.chunk_produced(audio_seconds=0.25, busy_seconds=0.0)
        if watch.fell_behind(lead):
            pool.underrun()
    samples = parse(generate_latest(metrics.registry).decode())
    assert value(samples, "radiod_mixer_underruns_total", worker="pool-1") == 2
    assert value(samples, "radiod_chunks_produced_total", worker="pool-1") == 8
    factor = value(samples, "radiod_encode_realtime_factor", worker="pool-1")
    assert 30 < factor <= 35  # 3.5 s of audio over 0.1 s of work (and six instant chunks)
    assert ("radiod_encode_realtime_factor", (("worker", "inline"),)) not in samples


def test_metrics_config_names_the_key_and_what_it_expects() -> None:
    with pytest.raises(ConfigError, match=r"metrics.allowed_ips: 'nope': expected an IP address"):
        parse_config({"metrics": {"allowed_ips": ["10.0.0.0/8", "nope"]}})
    with pytest.raises(ConfigError, match=r"metrics.allowed_ips = '::1': expected a list"):
        parse_config({"metrics": {"allowed_ips": "::1"}})
    assert parse_config({}).metrics.allowed_ips == ("127.0.0.1", "::1")


async def _small_send_buffer(request: web.Request, response: web.StreamResponse) -> None:
    """A slow link: the server's socket buffers little, so a stuck client blocks it soon."""
    if request.path == "/stream" and request.transport is not None:
        sock = request.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)


async def test_a_client_that_takes_nothing_is_dropped_and_counted(
    demo_tracks: list[Track], log_capture: LogCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fan-out drops a listener that took nothing for the ring's length (at least
    # MIN_DROP_SECONDS): both as short as they go, so the test waits 5 s, not 30.
    monkeypatch.setattr(fanout, "MIN_DROP_SECONDS", 1.0)
    app = create_app(make_config(stream={"ring_seconds": 5}), demo_tracks)
    app.on_response_prepare.append(_small_send_buffer)
    async with TestClient(TestServer(app)) as client:
        session_id = await create_session(client)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", client.port))
        request = f"GET /stream?session={session_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        await asyncio.get_running_loop().sock_sendall(sock, request.encode())
        # It never reads: once the buffers are full, a write waits past the timeout.
        drops = "radiod_slow_client_drops_total"
        samples = await eventually(client, lambda s: value(s, drops, channel="audio") == 1)
        sock.close()
    assert value(samples, drops, channel="events") == 0
    (line,) = log_capture.events("stream.slow_client_dropped")
    assert line["session_id"] == session_id
