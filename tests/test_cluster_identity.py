"""One instance among several: its node name in IDs, logs and status; the session cookie
the proxy routes by; the real client behind a trusted proxy; draining refuses new sessions."""

from __future__ import annotations

import io
import json
import logging
import re

import aiohttp
import pytest
import structlog
from aiohttp import ClientSession, DummyCookieJar

from radiod.app import create_app
from radiod.cli import start_server
from radiod.config import ConfigError, parse_config
from radiod.library import Track
from radiod.logs import configure_logging
from radiod.node import derived_node
from radiod.sessions import valid_session_id
from radiod.web.forwarded import forwarded_client
from radiod.web.keys import REGISTRY
from radiod.web.session_cookie import SESSION_COOKIE, sign_session_id
from tests.conftest import ClientFactory, LogCapture, create_session, make_config, read_bytes

ID_RE = re.compile(r"session_([a-z0-9-]+)_([A-Za-z0-9_-]{22})")


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("radio-a", True),
        ("a", True),
        ("n1", True),
        ("Radio", False),
        ("a_b", False),
        ("-a", False),
        ("a-", False),
        ("x" * 33, False),
        ("a.b", False),
    ],
)
def test_node_names_are_short_lowercase_words(value: str, ok: bool) -> None:
    if ok:
        assert parse_config({"server": {"node": value}}).server.node == value
    else:
        with pytest.raises(ConfigError, match=r"server\.node = .*a-z, 0-9"):
            parse_config({"server": {"node": value}})


def test_the_default_node_comes_from_host_and_port() -> None:
    assert derived_node("127.0.0.1", 8001) == "127-0-0-1-8001"
    assert derived_node("Radio.Example.COM", 80) == "radio-example-com-80"
    assert derived_node("a" * 60, 65535).endswith("-65535")
    assert len(derived_node("a" * 60, 65535)) <= 32
    for host in ("::1", "0.0.0.0", "", "localhost"):
        node = derived_node(host, 0)
        assert parse_config({"server": {"node": node}}).server.node == node


def test_trusted_proxies_and_cluster_nodes_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"server\.trusted_proxies = 'proxy'"):
        parse_config({"server": {"trusted_proxies": ["proxy"]}})
    with pytest.raises(ConfigError, match=r"cluster\.nodes = 'a=10\.0\.0\.1'"):
        parse_config({"cluster": {"nodes": ["a=10.0.0.1"]}})
    config = parse_config({"server": {"trusted_proxies": ["10.0.0.0/8", "::1"]}})
    assert config.server.trusted_proxies == ("10.0.0.0/8", "::1")


def test_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    trusted = ("127.0.0.1", "10.0.0.0/8")
    # From the proxy: the rightmost address that is not a proxy of ours.
    assert forwarded_client("127.0.0.1", "203.0.113.7", trusted) == "203.0.113.7"
    assert forwarded_client("127.0.0.1", "1.2.3.4, 203.0.113.7, 10.1.1.1", trusted) == (
        "203.0.113.7"
    )
    # A client cannot pick its address by sending the header itself...
    assert forwarded_client("198.51.100.9", "203.0.113.7", trusted) == "198.51.100.9"
    assert forwarded_client("127.0.0.1", "1.2.3.4, 203.0.113.7", ()) == "127.0.0.1"
    # ...nor by writing garbage to the left of what the proxy appended.
    assert forwarded_client("127.0.0.1", "evil, 203.0.113.7", trusted) == "203.0.113.7"
    assert forwarded_client("127.0.0.1", "10.0.0.2, nonsense", trusted) == "127.0.0.1"
    assert forwarded_client("127.0.0.1", None, trusted) == "127.0.0.1"


async def test_session_ids_status_and_health_name_the_node(radiod_client: ClientFactory) -> None:
    client = await radiod_client(server={"node": "radio-a"})
    ids = [await create_session(client) for _ in range(20)]
    tokens = set()
    for session_id in ids:
        match = ID_RE.fullmatch(session_id)
        assert match is not None and match[1] == "radio-a", session_id
        assert valid_session_id(session_id)
        tokens.add(match[2])
    assert len(tokens) == len(ids)  # 22 URL-safe characters: 128 random bits each
    status = await (await client.get(f"/sessions/{ids[0]}")).json()
    assert status["node"] == "radio-a" and status["sessionId"] == ids[0]
    health = await (await client.get("/healthz")).json()
    assert health["node"] == "radio-a" and health["status"] == "ok"


def test_every_log_line_carries_the_node() -> None:
    buffer = io.StringIO()
    configure_logging(stream=buffer, node="radio-b")
    structlog.get_logger("t").info("something.happened", session_id="session_radio-b_x")
    logging.getLogger("aiohttp.access").info("a stdlib line")
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert [line["node"] for line in lines] == ["radio-b", "radio-b"]


async def test_the_session_cookie_names_the_session_and_is_the_fallback(
    radiod_client: ClientFactory,
) -> None:
    secret = {"secret": "shared by every instance", "node": "radio-a"}
    client = await radiod_client(server=secret)
    created = await client.post("/create-session")
    session_id = (await created.json())["sessionId"]
    cookie = created.cookies[SESSION_COOKIE].value
    assert cookie == sign_session_id(secret["secret"], session_id)
    assert cookie.startswith(session_id + ".")  # what the proxy's map reads the node from

    url = str(client.make_url("/"))
    # A browser with only the session cookie (no binding to its client id) follows it.
    async with ClientSession(base_url=url, cookie_jar=DummyCookieJar()) as browser:
        stream = await browser.get("/stream", headers={"Cookie": f"{SESSION_COOKIE}={cookie}"})
        assert stream.status == 200
        await read_bytes(stream, 4000)
        status = await (await client.get(f"/sessions/{session_id}")).json()
        assert status["listeners"] == 1
        stream.close()
        # A forged or re-signed cookie steers nothing.
        for forged in (session_id, session_id + ".AAAA", sign_session_id("other", session_id)):
            response = await browser.get(
                "/stream", headers={"Cookie": f"{SESSION_COOKIE}={forged}"}
            )
            assert response.status == 404


async def test_naming_another_session_moves_the_cookie(radiod_client: ClientFactory) -> None:
    client = await radiod_client()
    first = await create_session(client)
    second = await create_session(client)
    events = await client.get(f"/events?session={first}")
    assert events.cookies[SESSION_COOKIE].value.startswith(first + ".")
    events.close()
    response = await client.get(f"/sessions/{second}")
    assert response.cookies[SESSION_COOKIE].value.startswith(second + ".")


async def test_the_proxy_s_client_is_the_one_per_ip_limits_count(
    radiod_client: ClientFactory, log_capture: LogCapture
) -> None:
    client = await radiod_client(
        server={"trusted_proxies": ["127.0.0.1"]},
        limits={"create_burst": 1, "create_per_minute": 1},
    )
    url = str(client.make_url("/"))
    statuses = []
    for address in ("203.0.113.1", "203.0.113.2", "203.0.113.1"):
        async with ClientSession(base_url=url, cookie_jar=DummyCookieJar()) as browser:
            response = await browser.post("/create-session", headers={"X-Forwarded-For": address})
            statuses.append(response.status)
    # Two clients behind one proxy address: each has its own bucket, the repeat is limited.
    assert statuses == [201, 201, 429]
    created = log_capture.events("session.created")
    assert [line["remote"] for line in created] == ["203.0.113.1", "203.0.113.2"]


async def test_a_draining_instance_refuses_new_sessions_with_503(
    radiod_client: ClientFactory,
) -> None:
    client = await radiod_client()
    session_id = await create_session(client)
    client.server.app[REGISTRY].draining = True
    refused = await client.post("/create-session")
    assert refused.status == 503 and refused.headers["Retry-After"] == "1"
    assert "draining" in (await refused.json())["error"]
    health = await client.get("/healthz")
    assert health.status == 503 and (await health.json())["status"] == "draining"
    # Its sessions go on serving.
    stream = await client.get(f"/stream?session={session_id}")
    assert stream.status == 200
    await read_bytes(stream, 4000)


async def _open_streams(port: int, count: int) -> list[int]:
    """Statuses of `count` simultaneous /stream responses from 127.0.0.1 (0: refused)."""
    statuses = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        created = await http.post(f"http://127.0.0.1:{port}/create-session")
        session_id = (await created.json())["sessionId"]
        responses = []
        for _ in range(count):
            try:
                responses.append(
                    await http.get(f"http://127.0.0.1:{port}/stream?session={session_id}")
                )
                statuses.append(responses[-1].status)
            except aiohttp.ClientError:
                statuses.append(0)
        for response in responses:
            response.close()
    return statuses


@pytest.mark.parametrize(
    ("trusted", "expected"), [("127.0.0.1", [200] * 4), ("10.9.9.9", [200, 200, 200, 0])]
)
async def test_the_trusted_proxy_is_spared_the_per_address_connection_cap(
    demo_tracks: list[Track], trusted: str, expected: list[int]
) -> None:
    # Capped at 3 a client address (the create-session connection is reused for a stream).
    config = make_config(
        server={"port": 0, "trusted_proxies": [trusted]}, limits={"connections_per_ip": 3}
    )
    runner = await start_server(create_app(config, demo_tracks), config)
    try:
        # From the proxy's address every connection is served: nginx caps per client.
        assert await _open_streams(runner.addresses[0][1], 4) == expected
    finally:
        await runner.cleanup()
