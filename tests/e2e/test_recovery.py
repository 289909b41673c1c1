"""Audio-first recovery: a stalled stream restarts everything, a cut SSE or TCP drop does not."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.steps import (
    assert_restarted_on,
    audio_changes_since,
    cut_events,
    stall,
    wait_new_session_playing,
)

pytestmark = pytest.mark.e2e


def poll(player: Any, condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Wait for a Python-side condition. `wait_for_timeout` lets Playwright deliver events."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        player.page.wait_for_timeout(100)
    return result


def test_stalled_stream_degrades_dies_and_restarts_without_a_click(radiod, open_player, metrics):
    server = radiod()
    player = open_player(server).open()
    thresholds = player.page.evaluate(
        "JSON.parse(document.getElementById('radiod-config').textContent).health"
    )
    old_session = player.state()["sessionId"]
    player.press_play()
    state = player.wait_playing(seconds=3.0)
    listener = state["listenerId"]

    stalled_at = stall(server, old_session, listener)

    # Degraded, then dead, then back on a new session: no click anywhere.
    player.wait("window.radiod.history.some(h => h.channel === 'audio' && h.status === 'degraded')")
    player.screenshot("degraded.png")
    player.wait("window.radiod.history.some(h => h.channel === 'audio' && h.status === 'dead')")
    assert player.page.text_content("#health-audio .status-text") in {"dead", "reconnecting"} or (
        player.state()["sessionId"] != old_session
    )
    state = wait_new_session_playing(player, old_session)
    new_session = state["sessionId"]

    stall_ms = stalled_at * 1000
    buffering = player.reached("audio", "buffering", stalled_at)["at"]
    degraded = player.reached("audio", "degraded", stalled_at)["at"]
    dead = player.reached("audio", "dead", stalled_at)["at"]
    restart = player.reached("page", "restart", stalled_at)
    recovered = player.reached("page", "recovered", stalled_at)["at"]
    last_advance = restart["lastAdvanceAt"]
    check = thresholds["checkIntervalMs"]
    slack = 1500  # timer jitter on a busy two-core machine

    # Degraded `degradedAfterMs` into buffering, dead `deadAfterMs` after the last real
    # progress; both are noticed by a check that runs every `checkIntervalMs`.
    assert (
        thresholds["degradedAfterMs"]
        <= degraded - buffering
        <= (thresholds["degradedAfterMs"] + check + slack)
    )
    assert (
        thresholds["deadAfterMs"]
        <= dead - last_advance
        <= (thresholds["deadAfterMs"] + check + slack)
    )
    assert restart["reason"] == "no-progress" and restart["delayMs"] == 1000
    assert state["restarts"] == 1
    assert player.console.has("💀 Audio session is dead - restarting everything")
    assert player.console.has(f"🔧 Created new session: {new_session}")

    assert_restarted_on(server, old_session, new_session)
    assert player.loads == 1
    new_created_at = server.log.time_of(server.log.events("session.created")[-1]) * 1000

    metrics(
        stall_to_waiting_s=(buffering - stall_ms) / 1000,
        waiting_to_degraded_s=(degraded - buffering) / 1000,
        stall_to_degraded_s=(degraded - stall_ms) / 1000,
        last_timeupdate_to_dead_s=(dead - last_advance) / 1000,
        stall_to_dead_s=(dead - stall_ms) / 1000,
        dead_to_new_session_s=(new_created_at - dead) / 1000,
        dead_to_recovered_s=(recovered - dead) / 1000,
        restart_duration_dead_to_timeupdate_s=(state["firstAdvanceAt"] - dead) / 1000,
    )


def test_cut_events_keeps_audio_playing_and_reconnects_to_same_session(
    radiod, open_player, metrics
):
    server = radiod()
    player = open_player(server).open()
    session_id = player.state()["sessionId"]
    player.press_play()
    player.wait_playing(seconds=3.0)
    events_before = len(player.http("/events"))
    before = player.page.evaluate(
        "({ct: document.getElementById('audio').currentTime, at: Date.now()})"
    )

    cut_at = cut_events(server, player, session_id)
    state = player.wait_playing(seconds=2.0)

    # The metadata channel came back on the same session, resuming from its last event id.
    assert state["sessionId"] == session_id
    assert state["restarts"] == 0
    assert player.console.has("🔄 SSE died but audio healthy - reconnecting SSE to same session")
    again = player.http("/events")[events_before:]
    assert again and all(r.query.get("session") == session_id for r in again)
    assert "lastEventId" in again[0].query
    server.log.wait_for("events.connected", count=2, session_id=session_id)
    assert len(server.log.events("session.created")) == 1

    # The audio never stopped: no waiting spell of a second, currentTime kept pace.
    assert audio_changes_since(player, cut_at) == []
    cut_ms = cut_at * 1000
    waits = [w for w in player.debug("waits") if w["start"] >= before["at"]]
    longest = max(((w["end"] or time.time() * 1000) - w["start"] for w in waits), default=0)
    assert longest < 1000
    after = player.page.evaluate(
        "({ct: document.getElementById('audio').currentTime, at: Date.now()})"
    )
    assert after["ct"] - before["ct"] >= (after["at"] - before["at"]) / 1000 - 1.0
    reconnected = player.reached("events", "connected", cut_at)["at"]
    metrics(cut_to_sse_connected_s=(reconnected - cut_ms) / 1000, longest_waiting_s=longest / 1000)


def test_dropped_connection_resumes_with_range_on_same_session(radiod, open_player, metrics):
    server = radiod()
    player = open_player(server).open()
    player.console.allow_network_errors()  # the dropped response: ERR_INCOMPLETE_CHUNKED_ENCODING
    session_id = player.state()["sessionId"]
    player.press_play()
    state = player.wait_playing(seconds=5.0)
    listener = state["listenerId"]
    streams_before = len(player.http("/stream"))

    aborted_at = time.time()
    assert server.post(f"/_faults/sessions/{session_id}/abort?listener={listener}")["aborted"] == [
        listener
    ]
    # Chromium re-requests the same URL by itself, asking for the bytes after those it has.
    rerequest = poll(
        player,
        lambda: player.http("/stream")[streams_before:],
        timeout=30,
        what="Chromium to re-request /stream",
    )[0]
    assert rerequest.query == {"session": session_id, "listener": listener}
    byte_range = rerequest.headers.get("range", "")
    match = re.fullmatch(r"bytes=(\d+)-", byte_range)
    assert match and int(match[1]) > 0, f"re-request Range: {byte_range!r}"
    poll(player, lambda: rerequest.status is not None, timeout=15, what="the 206")
    assert rerequest.status == 206
    resumed = server.log.wait_for(
        "stream.connected", session_id=session_id, listener_id=listener, range=byte_range
    )[-1]

    state = player.wait_playing(seconds=3.0)
    assert state["sessionId"] == session_id
    assert state["restarts"] == 0
    waits = [w for w in player.debug("waits") if w["start"] >= aborted_at * 1000]
    longest = max(((w["end"] or time.time() * 1000) - w["start"] for w in waits), default=0)
    assert longest < 2000, f"playback paused {longest} ms after the drop"
    assert not server.log.events("split_session.detected")
    assert len(server.log.events("session.created")) == 1
    # The server continues the dropped connection byte-exactly (no burst, nothing heard
    # twice), so the listener's first byte, and with it now playing's anchor, is unchanged.
    assert resumed["resumed"] is True
    (dropped,) = server.log.events("stream.closed", session_id=session_id, listener_id=listener)
    assert dropped["bytes_sent"] == int(match[1])  # Chromium asks for exactly what it lacks
    anchors = player.debug("anchors")
    assert [a["how"] for a in anchors] == ["attached"], anchors

    metrics(
        resumed_byte_exact=resumed["resumed"],
        abort_to_rerequest_s=rerequest.at - aborted_at,
        abort_to_server_206_s=server.log.time_of(resumed) - aborted_at,
        range_start_bytes=int(match[1]),
        longest_waiting_after_abort_s=longest / 1000,
    )
