"""Every input parsed strictly: hostile numbers, headers, queries and raw bytes never make a
500, a traceback, or a log line a client can forge."""

from __future__ import annotations

import asyncio
import io
import json
import socket

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radiod.audit import audit_lines
from radiod.logs import configure_logging
from radiod.web.audio_response import parse_range
from radiod.web.context import sign_client_id, verified_client_id
from radiod.web.events import parse_event_id
from tests.conftest import ClientFactory, LogCapture, create_session, read_bytes, read_sse

# Any text a URL can carry (no lone surrogates: they cannot be percent-encoded).
URL_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
# Any text an HTTP client library lets into a header value.
HEADER_TEXT = st.text(st.characters(codec="latin-1", exclude_categories=("Cc",)), max_size=40)
# With a server fixture reused across examples: the examples share one server on purpose.
SERVER_EXAMPLES = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _assert_no_traceback(log_capture: LogCapture) -> None:
    lines = log_capture.lines()
    assert not [x for x in lines if "exception" in x or x["level"] == "error"]


# -- the parsers ---------------------------------------------------------------------------


@given(st.text(max_size=40))
def test_parse_event_id_takes_ascii_digits_only(raw: str) -> None:
    value = parse_event_id(raw)
    if value is None:
        assert not (raw.isascii() and raw.isdecimal() and len(raw) <= 18)
    else:
        assert raw.isascii() and str(value) == raw.lstrip("0").rjust(1, "0")


@given(st.text(max_size=40))
def test_parse_range_takes_ascii_digits_only(raw: str) -> None:
    parsed = parse_range(raw)
    if parsed is not None:
        assert raw.isascii()
        start, end = parsed
        assert start >= 0 and (end is None or end >= start)


NOT_NUMBERS = ["²", "٣", "\uff11", "1²", "-1", "+1", " 1", "1_0", "0x1", "9" * 19]


@pytest.mark.parametrize("raw", NOT_NUMBERS)
def test_unicode_and_signed_digits_are_not_numbers(raw: str) -> None:
    assert parse_event_id(raw) is None
    assert parse_range(f"bytes={raw}-") is None


def test_ranges_and_event_ids_that_are_numbers() -> None:
    assert parse_event_id("0") == 0 and parse_event_id("42") == 42
    assert parse_range("bytes=0-1") == (0, 1)
    assert parse_range(" bytes=50000- ") == (50000, None)
    assert parse_range("bytes=5-1") is None


@given(st.text(max_size=80))
def test_only_cookies_we_signed_verify(raw: str) -> None:
    assert verified_client_id("s3cret", raw) is None
    assert verified_client_id("s3cret", sign_client_id("s3cret", "abc")) == "abc"
    assert verified_client_id("other", sign_client_id("s3cret", "abc")) is None


# -- the real server ---------------------------------------------------------------------------


async def test_last_event_id_superscript_two_gets_a_snapshot_not_a_crash(
    radiod_client: ClientFactory, log_capture: LogCapture
) -> None:
    client = await radiod_client()
    session_id = await create_session(client)
    for how in ({"params": {"lastEventId": "²"}}, {"headers": {"Last-Event-ID": "١٢"}}):
        events = await client.get(f"/events?session={session_id}", **how)
        assert events.status == 200
        (connected,) = await read_sse(events, 1)
        assert connected["data"]["type"] == "connected"
        events.close()
    _assert_no_traceback(log_capture)


@pytest.fixture
async def hostile_target(radiod_client: ClientFactory) -> tuple[TestClient, str]:
    client = await radiod_client()
    return client, await create_session(client)


@SERVER_EXAMPLES
@given(
    session=st.none() | URL_TEXT,
    listener=URL_TEXT,
    last_id=URL_TEXT,
    byte_range=HEADER_TEXT,
    header_id=HEADER_TEXT,
)
async def test_random_queries_and_headers_never_make_a_500_or_a_traceback(
    hostile_target: tuple[TestClient, str],
    log_capture: LogCapture,
    session: str | None,
    listener: str,
    last_id: str,
    byte_range: str,
    header_id: str,
) -> None:
    client, known = hostile_target
    for sid in ({} if session is None else {"session": session}, {"session": known}):
        stream = await client.get(
            "/stream", params={**sid, "listener": listener}, headers={"Range": byte_range}
        )
        assert stream.status in (200, 206, 400, 404)
        if stream.status in (200, 206):
            assert await read_bytes(stream, 1)
        stream.close()
        events = await client.get(
            "/events", params={**sid, "lastEventId": last_id}, headers={"Last-Event-ID": header_id}
        )
        assert events.status in (200, 400)
        if events.status == 200:
            assert (await events.content.readline()).startswith(b"data: ")
        events.close()
    status = await client.get(f"/sessions/{session or ''}x")
    assert status.status in (400, 404, 405)
    _assert_no_traceback(log_capture)


# -- malformed HTTP, on raw sockets ------------------------------------------------------------

MALFORMED = {
    "bad request line": b"GARBAGE\r\n\r\n",
    "bad method": b"G\x01T / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "bad header": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n",
    "oversized header": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: " + b"a" * 20_000 + b"\r\n\r\n",
    "invalid UTF-8 path": b"GET /\xff\xfe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "NUL in a header": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\x00b\r\n\r\n",
    "escape in User-Agent": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: \x1b[2J\r\n\r\n",
    "newline in the path": b"GET /x\nforged HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
}


async def _send_raw(client: TestClient, data: bytes) -> bytes:
    """Send `data` on a fresh connection; the answer, up to the server closing it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read(200)
    finally:
        writer.close()


@pytest.mark.parametrize("name", MALFORMED)
async def test_a_malformed_request_is_one_line_not_a_stack(
    radiod_client: ClientFactory, log_capture: LogCapture, name: str
) -> None:
    client = await radiod_client()
    start = len(log_capture.buffer.getvalue())
    answer = await _send_raw(client, MALFORMED[name])
    assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")
    async with asyncio.timeout(10):
        while len(log_capture.buffer.getvalue()) == start:
            await asyncio.sleep(0.02)
    _assert_no_traceback(log_capture)
    text = log_capture.buffer.getvalue()[start:]
    assert len(text.splitlines()) <= 2  # the one line, and maybe aiohttp's access line
    assert "\x1b" not in text and "forged" not in text.replace('"forged', "")
    bad = log_capture.events("http.bad_request")
    if bad:  # aiohttp answers some (an unknown method) itself, with its access line only
        (line,) = bad
        assert line["level"] in ("debug", "info") and line["http_status"] == 400
        assert len(line["reason"]) < 80


@SERVER_EXAMPLES
@given(
    path=st.sampled_from(["/stream", "/events"]),
    query=st.binary(max_size=60),
    value=st.binary(max_size=60),
)
async def test_random_bytes_in_the_request_line_and_headers_never_make_a_traceback(
    hostile_target: tuple[TestClient, str],
    log_capture: LogCapture,
    path: str,
    query: bytes,
    value: bytes,
) -> None:
    client, known = hostile_target
    request = b"".join(
        [
            f"GET {path}?session={known}&lastEventId=".encode(),
            query,
            b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nRange: ",
            value,
            b"\r\nLast-Event-ID: ",
            value,
            b"\r\n\r\n",
        ]
    )
    answer = await _send_raw(client, request)
    status = answer.split(b"\r\n", 1)[0]
    assert status[9:12] in (b"200", b"206", b"400", b"404"), status
    _assert_no_traceback(log_capture)


# -- control characters in logged client values ---------------------------------------------

# Bytes the HTTP parser lets through in a header value that are line breaks or terminal
# controls once decoded (NEL U+0085, LINE SEPARATOR U+2028, a C1 CSI), or not UTF-8 at all.
SNEAKY_RANGE = b"bytes=1-\xc2\x85\xe2\x80\xa8\xc2\x9b2J\x80\xff forged"


@pytest.mark.parametrize("fmt", ["json", "console"])
async def test_control_characters_from_a_client_cannot_forge_a_log_line(
    radiod_client: ClientFactory, fmt: str
) -> None:
    client = await radiod_client()
    session_id = await create_session(client)
    buffer = io.StringIO()
    configure_logging(stream=buffer, fmt=fmt, level="debug")
    headers = b"Range: " + SNEAKY_RANGE + b"\r\nUser-Agent: " + SNEAKY_RANGE + b"\r\n\r\n"
    sock = socket.create_connection(("127.0.0.1", client.port))
    try:
        start = f"GET /stream?session={session_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        sock.sendall(start.encode() + headers)
        async with asyncio.timeout(10):
            while "stream.connected" not in buffer.getvalue():
                await asyncio.sleep(0.02)
    finally:
        sock.close()
    # A whole request, so its access-log line (which quotes the User-Agent here) is written.
    start = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    await _send_raw(client, start + headers)
    async with asyncio.timeout(10):
        while "GET /healthz" not in buffer.getvalue():
            await asyncio.sleep(0.02)
    text = buffer.getvalue()
    lines = text.splitlines()  # splits on NEL and U+2028 too, as many log tools do
    assert len(lines) == len(text.split("\n")) - 1
    assert not set(text) & {"\x85", "\u2028", "\udc80"}
    (connected,) = [x for x in lines if "stream.connected" in x]
    (access,) = [x for x in lines if "GET /healthz" in x]
    assert "forged" in connected and "forged" in access  # there, escaped, on their own lines
    if fmt == "json":
        assert json.loads(connected)["range"] == "bytes=1-\x85\u2028\x9b2J\\x80\\xff forged"
    else:
        assert "\x9b" not in text


# -- what the audit is told ----------------------------------------------------------------------


async def test_the_servers_own_rejections_are_tagged_for_the_audit(
    radiod_client: ClientFactory, log_capture: LogCapture
) -> None:
    client = await radiod_client(session={"max_sessions": 1})
    await create_session(client)
    assert (await client.post("/create-session")).status == 503
    assert (await client.delete("/stream")).status == 405
    assert (await client.post("/events")).status == 405
    (limit,) = log_capture.events("session.limit_reached")
    assert limit["rejected"] == "session_limit"
    report = audit_lines(log_capture.buffer.getvalue().splitlines())
    assert report.untagged_count == 0, report.untagged_examples
