"""`POST /sessions/ID/health`: the page's reports: logged with their session, counted, bounded."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession, web
from hypothesis import given, settings
from hypothesis import strategies as st

from radiod.app import create_app
from radiod.library import Track
from radiod.web.health_reports import CLIENT_BURST, KINDS, ReportError, parse_report
from tests.conftest import ClientFactory, LogCapture, create_session, make_config
from tests.test_metrics import scrape, value

RESTART = {"kind": "restart", "reason": "no-progress", "attempt": 1, "delayMs": 1000}


async def test_a_report_is_logged_with_its_session_and_client_and_counted(
    radiod_client: ClientFactory, log_capture: LogCapture
) -> None:
    client = await radiod_client()
    session_id = await create_session(client)
    answer = await client.post(
        f"/sessions/{session_id}/health", json={**RESTART, "listenerId": "L1"}
    )
    assert answer.status == 202 and await answer.json() == {"accepted": "restart"}
    # sendBeacon with a string body: text/plain, the same JSON.
    beacon = await client.post(
        f"/sessions/{session_id}/health",
        data=json.dumps({"kind": "buffering", "ms": 2500}),
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    assert beacon.status == 202

    (line,) = log_capture.events("client.restart")
    assert line["session_id"] == session_id and line["client_id"]
    assert (line["reason"], line["attempt"], line["delay_ms"], line["listener_id"]) == (
        "no-progress",
        1,
        1000,
        "L1",
    )
    assert log_capture.events("client.buffering")[0]["ms"] == 2500
    samples = await scrape(client)
    assert value(samples, "radiod_client_reports_total", kind="restart") == 1
    assert value(samples, "radiod_client_restarts_total", reason="no-progress") == 1
    assert value(samples, "radiod_client_stall_seconds_total") == 2.5


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"{", 400, "Malformed report: expected a JSON object"),
        (b"[1]", 400, "Malformed report: expected a JSON object"),
        (b'{"kind": "lol"}', 400, "kind: expected one of buffering, degraded, dead"),
        (b'{"kind": "buffering"}', 400, "buffering: missing ms"),
        (b'{"kind": "buffering", "ms": -1}', 400, "ms: expected an integer between 0"),
        (b'{"kind": "buffering", "ms": true}', 400, "ms: expected an integer"),
        (b'{"kind": "buffering", "ms": 1.5}', 400, "ms: expected an integer"),
        (b'{"kind": "dead", "reason": "bored"}', 400, "reason: expected one of ended, error"),
        (b'{"kind": "play_refused", "x": 1}', 400, "play_refused: unexpected field(s)"),
        (b'{"kind": "degraded", "listenerId": "a b"}', 400, "listenerId: expected 1-64"),
        (b'{"kind": "degraded", "pad": "' + b"x" * 2000 + b'"}', 413, "Report too large"),
    ],
)
async def test_what_is_not_a_report_gets_a_clear_json_error(
    radiod_client: ClientFactory, body: bytes, status: int, error: str
) -> None:
    client = await radiod_client()
    session_id = await create_session(client)
    answer = await client.post(
        f"/sessions/{session_id}/health",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status == status
    assert (await answer.json())["error"].startswith(error)


async def test_unknown_and_malformed_sessions_and_wrong_types_are_refused(
    radiod_client: ClientFactory,
) -> None:
    client = await radiod_client()
    unknown = await client.post("/sessions/session_nobody/health", json=RESTART)
    assert unknown.status == 404 and await unknown.json() == {"error": "Session not found"}
    malformed = await client.post("/sessions/no%20way/health", json=RESTART)
    assert malformed.status == 400 and "Malformed session id" in (await malformed.json())["error"]
    session_id = await create_session(client)
    form = await client.post(f"/sessions/{session_id}/health", data={"kind": "dead"})
    assert form.status == 415 and "Content-Type" in (await form.json())["error"]


async def test_reports_are_rate_limited_per_client_and_per_session(
    radiod_client: ClientFactory, log_capture: LogCapture
) -> None:
    client = await radiod_client()
    session_id = await create_session(client)
    url = f"/sessions/{session_id}/health"
    statuses = [(await client.post(url, json=RESTART)).status for _ in range(CLIENT_BURST)]
    assert statuses == [202] * CLIENT_BURST
    refused = await client.post(url, json=RESTART)
    assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "Too many health reports" in (await refused.json())["error"]
    for _ in range(5):
        assert (await client.post(url, json=RESTART)).status == 429
    # Another device on the same session still reports: the limit is this client's.
    async with ClientSession(client.make_url("/")) as other:
        assert (await other.post(url, json=RESTART)).status == 202
    assert len(log_capture.events("client.restart")) == CLIENT_BURST + 1
    # Six refusals, one line: a flood does not flood the log.
    assert len(log_capture.events("health_report.refused")) == 1
    samples = await scrape(client)
    assert value(samples, "radiod_client_reports_refused_total", reason="rate_limited") == 6


# -- hostile input -----------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
FIELDS = st.sampled_from(["ms", "reason", "attempt", "delayMs", "listenerId", "x"])
# Near-misses: a known kind with fields of random names and values, the likeliest bugs.
REPORTS = st.builds(
    lambda kind, extra: {"kind": kind, **extra},
    st.sampled_from([*KINDS, "", "restart "]),
    st.dictionaries(FIELDS, JSON | st.sampled_from(["no-progress", "error", 0, 2**70]), max_size=4),
)
BODIES = (
    st.binary(max_size=300)
    | JSON.map(lambda v: json.dumps(v).encode())
    | REPORTS.map(lambda v: json.dumps(v).encode())
)


@settings(max_examples=500, deadline=None)
@given(BODIES)
def test_parsing_any_body_gives_a_report_or_a_report_error(body: bytes) -> None:
    try:
        report = parse_report(body)
    except ReportError as exc:
        assert exc.status == 400 and str(exc)
        return
    assert report.kind in KINDS
    assert all(type(v) in (int, str) for v in report.fields.values())


class ThreadServer:
    """The real app on a loopback port, served from a thread of its own (for sync tests)."""

    def __init__(self, tracks: list[Track]) -> None:
        self.port = 0
        self.session_id: str | None = None
        self._tracks = tracks
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = create_app(make_config(limits={"create_burst": 0}), self._tracks)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = self._runner.addresses[0][1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())

    def __enter__(self) -> ThreadServer:
        self._thread.start()
        assert self._ready.wait(30)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def post(self, path: str, body: bytes, content_type: str) -> tuple[int, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("POST", path, body, {"Content-Type": content_type})
            response = connection.getresponse()
            return response.status, orjson.loads(response.read())
        finally:
            connection.close()

    def report(self, body: bytes, content_type: str) -> tuple[int, Any]:
        """Post a report to this server's session; one whose reports are used up is replaced."""
        for _ in range(2):
            if self.session_id is None:
                status, created = self.post("/create-session", b"", "application/json")
                assert status == 201
                self.session_id = created["sessionId"]
            status, answer = self.post(f"/sessions/{self.session_id}/health", body, content_type)
            if status != 429:
                return status, answer
            self.session_id = None
        raise AssertionError("a fresh session was rate-limited at once")


@pytest.fixture(scope="module")
def thread_server(demo_tracks: list[Track]) -> Iterator[ThreadServer]:
    with ThreadServer(demo_tracks) as server:
        yield server


@settings(max_examples=300, deadline=None)
@given(body=BODIES, content_type=st.sampled_from(["application/json", "text/plain", "x/y"]))
def test_random_bodies_never_get_a_server_error(
    thread_server: ThreadServer, body: bytes, content_type: str
) -> None:
    status, answer = thread_server.report(body, content_type)
    assert status in (202, 400, 413, 415), (status, answer)
    assert ("accepted" if status == 202 else "error") in answer
