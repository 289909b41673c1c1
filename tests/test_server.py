"""Sessions and the two channels over real sockets, with the real mixer and PyAV audio."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import ClientSession

from tests.conftest import (
    ClientFactory,
    LogCapture,
    create_session,
    decode_audio,
    read_bytes,
    read_sse,
    wait_until,
)

BURST_BYTES_128K = 4 * 128_000 // 8


async def test_create_events_and_stream_share_one_session_id(
    radiod_client: ClientFactory, log_capture: LogCapture
) -> None:
    client = await radiod_client()
    session_id = await create_session(client)
    assert session_id.startswith("session_") and len(session_id) >= 8 + 22

    events = await client.get(f"/events?session={session_id}")
    assert events.headers["Content-Type"] == "text/event-stream"
    assert events.headers["Cache-Control"] == "no-cache"
    (connected,) = await read_sse(events, 1)
    assert connected["data"] == {"type": "connected", "sessionId": session_id}

    stream = await client.get(f"/stream?session={session_id}&listener=L1")
    assert stream.status == 200
    assert stream.headers["Content-Type"] == "audio/mpeg"
    assert stream.headers["Cache-Control"] == "no-store"
    assert "Content-Length" not in stream.headers
    data = await read_bytes(stream, BURST_BYTES_128K)
    samples, rate = decode_audio(data)
    assert rate == 44100
    assert samples.shape[1] / rate > 3.0  # the burst: about 4 s at once
    assert abs(samples).max() > 0.01  # music, not silence

    messages = await read_sse(events, 2)
    kinds = {m["data"]["type"] for m in messages}
    assert kinds == {"track", "listener"}
    listener = next(m["data"] for m in messages if m["data"]["type"] == "listener")
    assert listener["listenerId"] == "L1" and listener["action"] == "attached"
    stream.close()
    events.close()
    await asyncio.sleep(0)

    created = log_capture.events("session.created")
    assert [line["session_id"] for line in created] == [session_id]
    for name in ("events.connected", "stream.connected", "mixer.track_started"):
        lines = log_capture.events(name)
        assert lines, name
        assert {line["session_id"] for line in lines} == {session_id}, name
    client_ids = {
        line["client_id"]
        for line in log_capture.lines()
        if line["event"] in ("session.created", "events.connected", "stream.connected")
    }
    assert len(client_ids) == 1  # one browser cookie throughout
    assert not log_capture.events("split_session.detected")


async def test_two_listeners_of_one_session_hear_identical_bytes(
    radiod_client: ClientFactory,
) -> None:
    client = await radiod_client()
    session_id = await create_session(client)
    first = await client.get(f"/stream?session={session_id}")
    head = await read_bytes(first, 8000)
    second = await client.get(f"/stream?session={session_id}")
    rest_of_first = await read_bytes(first, BURST_BYTES_128K * 2)
    of_second = await read_bytes(second, BURST_BYTES_128K)
    whole_first = head + rest_of_first
    start = whole_first.find(of_second[:4096])
    assert start >= 0, "the second listener's bytes are not part of the first's stream"
    overlap = min(len(whole_first) - start, len(of_second))
    assert overlap > 16_000
    assert whole_first[start : start + overlap] == of_second[:overlap]
    decode_audio(of_second)  # a late joiner starts on a frame boundary


async def test_skip_changes_track_for_every_channel(
    radiod_client: ClientFactory, log_capture: LogCapture
) -> None:
    client = await radiod_client()
    session_id = await create_session(client)
    events = await client.get(f"/events?session={session_id}")
    await read_sse(events, 1)
    listeners = [await client.get(f"/stream?session={session_id}") for _ in range(2)]
    for listener in listeners:
        await read_bytes(listener, 16000)
    first_track = None
    while first_track is None:
        (message,) = await read_sse(events, 1)
        if message["data"]["type"] == "track" and message["data"]["nowPlaying"]:
            first_track = message["data"]["nowPlaying"]["trackId"]
    response = await client.post(f"/sessions/{session_id}/skip")
    assert response.status == 202
    new_track = None
    while new_track is None:
        (message,) = await read_sse(events, 1)
        data = message["data"]
        if data["type"] == "track" and data["nowPlaying"]["trackId"] != first_track:
            new_track = data
    assert "id" in message
    status = await (await client.get(f"/sessions/{session_id}")).json()
    assert status["nowPlaying"]["trackId"] == new_track["nowPlaying"]["trackId"]
    assert status["listeners"] == 2
    for listener in listeners:
        decode_audio(await read_bytes(listener, 32000))
    started = log_capture.events("mixer.track_started")
    assert {line["session_id"] for line in started} == {session_id}


@pytest.mark.parametrize(
    ("query", "status", "body"),
    [
        ("session=session_doesnotexist", 404, {"error": "Session not found"}),
        ("session=", 400, None),
        ("session=" + "a" * 129, 400, None),
        ("session=bad%20id%3Cscript%3E", 400, None),
        ("session=..%2F..%2Fetc", 400, None),
    ],
)
async def test_stream_rejects_unknown_and_malformed_ids(
    radiod_client: ClientFactory, log_capture: LogCapture, query: str, status: int, body
) -> None:
    client = await radiod_client()
    response = await client.get(f"/stream?{query}")
    assert response.status == status
    assert response.content_type == "application/json"
    payload = await response.json()
    if body is not None:
        assert payload == body
    else:
        assert "Malformed session id" in payload["error"]
    assert "<script>" not in log_capture.buffer.getvalue()


async def test_events_for_an_unknown_session_send_one_error_and_end(
    radiod_client: ClientFactory,
) -> None:
    client = await radiod_client()
    response = await client.get("/events?session=session_gone")
    assert response.status == 200
    body = await asyncio.wait_for(response.text(), 10)
    assert body == 'data: {"type":"error","message":"session_not_found"}\n\n'
    malformed = await client.get("/events?session=%22%3E%3Cx")
    assert malformed.status == 400


async def test_control_endpoints_answer_json_and_405(radiod_client: ClientFactory) -> None:
    client = await radiod_client()
    assert (await client.post("/sessions/session_nope/skip")).status == 404
    assert (await (await client.get("/sessions/session_nope")).json()) == {
        "error": "Session not found"
    }
    wrong = await client.get("/create-session")
    assert wrong.status == 405
    assert wrong.content_type == "application/json"
    assert (await client.delete("/stream")).status == 405
    health = await (await client.get("/healthz")).json()
    assert health["status"] == "ok"


async def test_head_and_range_probes(radiod_client: ClientFactory) -> None:
    client = await radiod_client()
    session_id = await create_session(client)
    head = await client.head(f"/stream?session={session_id}")
    assert head.status == 200
    assert head.headers["Content-Type"] == "audio/mpeg"
    assert await head.read() == b""
    probe = await client.get(f"/stream?session={session_id}", headers={"Range": "bytes=0-1"})
    assert probe.status == 206
    assert probe.headers["Content-Range"] == "bytes 0-1/*"
    assert len(await asyncio.wait_for(probe.read(), 15)) == 2
    full = await client.get(f"/stream?session={session_id}", headers={"Range": "bytes=0-"})
    assert full.status == 200
    decode_audio(await read_bytes(full, 16000))
    full.close()
    resumed = await client.get(f"/stream?session={session_id}", headers={"Range": "bytes=50000-"})
    assert resumed.status == 206
    assert resumed.headers["Content-Range"].startswith("bytes 50000-")
    decode_audio(await read_bytes(resumed, 16000))  # from the live point, on a frame boundary


async def test_cookie_binding_lets_a_sessionless_stream_find_its_session(
    radiod_client: ClientFactory,
) -> None:
    client = await radiod_client()
    response = await client.post("/create-session")
    cookie = response.cookies["radiod_client"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    session_id = (await response.json())["sessionId"]
    stream = await client.get("/stream")
    assert stream.status == 200
    await read_bytes(stream, 8000)
    status = await (await client.get(f"/sessions/{session_id}")).json()
    assert status["listeners"] == 1
    async with ClientSession(base_url=str(client.make_url("/"))) as stranger:
        assert (await stranger.get("/stream")).status == 404


async def test_a_split_client_is_detected_the_moment_it_happens(
    radiod_client: ClientFactory, log_capture: LogCapture
) -> None:
    client = await radiod_client()
    session_a = await create_session(client)
    session_b = await create_session(client)
    events = await client.get(f"/events?session={session_a}")
    await read_sse(events, 1)
    assert not log_capture.events("split_session.detected")
    stream = await client.get(f"/stream?session={session_b}")
    await read_bytes(stream, 4000)
    (split,) = log_capture.events("split_session.detected")
    assert split["level"] == "warning"
    assert split["audio_session_id"] == session_b
    assert split["events_session_id"] == session_a
    assert split["channel"] == "audio"
    assert split["client_id"] == log_capture.events("session.created")[0]["client_id"]


async def test_disconnected_clients_are_removed_at_once(radiod_client: ClientFactory) -> None:
    client = await radiod_client()
    session_id = await create_session(client)
    events = await client.get(f"/events?session={session_id}")
    await read_sse(events, 1)
    stream = await client.get(f"/stream?session={session_id}")
    await read_bytes(stream, 8000)
    status = await (await client.get(f"/sessions/{session_id}")).json()
    assert (status["listeners"], status["eventClients"]) == (1, 1)
    stream.close()
    events.close()
    async with asyncio.timeout(10):
        while status["listeners"] or status["eventClients"]:
            await asyncio.sleep(0.05)
            status = await (await client.get(f"/sessions/{session_id}")).json()


async def test_idle_sessions_are_reaped_and_mixers_stop(
    radiod_client: ClientFactory, log_capture: LogCapture
) -> None:
    client = await radiod_client(
        session={"idle_timeout_seconds": 0.5}, stream={"stop_grace_seconds": 0.2}
    )
    session_id = await create_session(client)
    stream = await client.get(f"/stream?session={session_id}")
    await read_bytes(stream, 8000)
    stream.close()
    async with asyncio.timeout(15):
        while not log_capture.events("session.reaped"):
            await asyncio.sleep(0.05)
    (reaped,) = log_capture.events("session.reaped")
    assert reaped["session_id"] == session_id
    assert (await client.get(f"/sessions/{session_id}")).status == 404
    assert log_capture.events("mixer.stopped")


async def test_max_sessions_gives_503(radiod_client: ClientFactory) -> None:
    client = await radiod_client(session={"max_sessions": 2})
    await create_session(client)
    await create_session(client)
    response = await client.post("/create-session")
    assert response.status == 503
    assert "limit of 2 sessions" in (await response.json())["error"]


async def test_sse_reconnect_with_last_event_id_gets_no_duplicates(
    radiod_client: ClientFactory,
) -> None:
    client = await radiod_client()
    session_id = await create_session(client)
    events = await client.get(f"/events?session={session_id}")
    await read_sse(events, 1)
    stream = await client.get(f"/stream?session={session_id}")
    await read_bytes(stream, 8000)
    seen = await read_sse(events, 2)
    last_id = max(int(m["id"]) for m in seen)
    events.close()
    await client.post(f"/sessions/{session_id}/skip")
    again = await client.get(
        f"/events?session={session_id}", headers={"Last-Event-ID": str(last_id)}
    )
    replay = await read_sse(again, 2)
    assert replay[0]["data"]["type"] == "connected"
    assert int(replay[1]["id"]) > last_id


async def test_the_mixer_stops_after_the_grace_period_and_resumes_the_stream(
    radiod_client: ClientFactory, log_capture: LogCapture
) -> None:
    client = await radiod_client(stream={"stop_grace_seconds": 0.3})
    session_id = await create_session(client)
    stream = await client.get(f"/stream?session={session_id}")
    await read_bytes(stream, 16000)
    stream.close()
    # "playing" turns false when the stop is asked for; the stop is over (and logged) when the
    # mixer has let go, a moment later: wait for that, not for the flag.
    await wait_until(lambda: log_capture.events("mixer.stopped"), timeout=10)
    status = await (await client.get(f"/sessions/{session_id}")).json()
    assert not status["playing"]
    (stopped,) = log_capture.events("mixer.stopped")
    assert stopped["session_id"] == session_id
    again = await client.get(f"/stream?session={session_id}")
    decode_audio(await read_bytes(again, 16000))
    restarted = log_capture.events("mixer.started")
    assert len(restarted) == 2
    assert restarted[1]["stream_time"] >= stopped["stream_time"]  # the stream continues


async def test_a_new_events_client_gets_now_playing_however_busy_the_session(
    radiod_client: ClientFactory,
) -> None:
    client = await radiod_client()
    session_id = await create_session(client)
    keep = await client.get(f"/stream?session={session_id}")
    await read_bytes(keep, 8000)
    for _ in range(40):  # 80 listener events: more than the replay backlog holds
        churn = await client.get(f"/stream?session={session_id}")
        await read_bytes(churn, 2000)
        churn.close()
    events = await client.get(f"/events?session={session_id}")
    connected, *snapshot = await read_sse(events, 3)
    assert connected["data"]["type"] == "connected"
    kinds = {m["data"]["type"] for m in snapshot}
    assert kinds == {"track", "listener"}
    track = next(m["data"] for m in snapshot if m["data"]["type"] == "track")
    assert track["nowPlaying"]["trackId"]


async def test_a_stuck_client_does_not_hold_back_another_listener(
    radiod_client: ClientFactory,
) -> None:
    client = await radiod_client()
    session_id = await create_session(client)
    # A client that asks for the stream and then never reads a byte.
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(("127.0.0.1", client.port))
    stuck.sendall(f"GET /stream?session={session_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    try:
        listener = await client.get(f"/stream?session={session_id}")
        burst = await read_bytes(listener, BURST_BYTES_128K)
        loop = asyncio.get_running_loop()
        started = loop.time()
        later = await read_bytes(listener, 3 * 16_000)  # three more seconds, paced live
        elapsed = loop.time() - started
        decode_audio(burst + later)
        assert elapsed < 10, "the healthy listener was held back"
        status = await (await client.get(f"/sessions/{session_id}")).json()
        assert status["listeners"] == 2  # the stuck one is still attached, just not read
    finally:
        stuck.close()


async def test_a_dropped_connection_resumes_byte_exactly_beside_a_twin_of_its_name(
    radiod_client: ClientFactory, log_capture: LogCapture
) -> None:
    """Chromium re-requests a dropped stream with `Range: bytes=N-`: the new connection goes
    on exactly where the old one stopped, even while another connection shares its name."""
    client = await radiod_client()
    session_id = await create_session(client)
    witness = await client.get(f"/stream?session={session_id}&listener=W")
    seen = await read_bytes(witness, 8000)
    dropped = await client.get(f"/stream?session={session_id}&listener=L")
    head = await read_bytes(dropped, BURST_BYTES_128K)
    twin = await client.get(f"/stream?session={session_id}&listener=L")
    await read_bytes(twin, 8000)
    dropped.close()
    async with asyncio.timeout(10):
        while not log_capture.events("stream.closed"):
            await asyncio.sleep(0.02)
    (closed,) = log_capture.events("stream.closed")
    assert closed["listener_id"] == "L"
    sent = closed["bytes_sent"]

    resumed = await client.get(
        f"/stream?session={session_id}&listener=L", headers={"Range": f"bytes={sent}-"}
    )
    assert resumed.status == 206
    assert resumed.headers["Content-Range"].startswith(f"bytes {sent}-")
    more = await read_bytes(resumed, 16_000)
    assert log_capture.events("stream.connected")[-1]["resumed"] is True
    status = await (await client.get(f"/sessions/{session_id}")).json()
    assert status["listeners"] == 3  # the witness, the twin and the resumed connection

    start = seen.find(head[:4096]) if len(seen) >= 4096 else -1
    while start < 0:
        seen += await read_bytes(witness, 16_000)
        start = seen.find(head[:4096])
    seen += await read_bytes(witness, start + sent + len(more) - len(seen))
    assert seen[start : start + len(head)] == head
    assert seen[start + sent : start + sent + len(more)] == more  # not a byte lost or repeated
