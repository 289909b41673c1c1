"""The core browser scenarios in WebKit: plays; one session on both channels; the SSE cut
and reconnected to the same session; the stream cut and the page restarting onto a new one.

The same steps and bounds as the Chromium scenarios (tests/e2e/test_sessions.py and
test_recovery.py) where WebKit can be asked the same; the server's log stands in for the
page's network log, which WebDriver cannot read.
"""

from __future__ import annotations

import time

import pytest

from tests.e2e.steps import (
    assert_restarted_on,
    audio_changes_since,
    cut_events,
    stall,
    wait_new_session_playing,
)

pytestmark = [pytest.mark.e2e, pytest.mark.webkit]


def test_webkit_plays_the_stream_with_now_playing(radiod, open_webkit, metrics):
    server = radiod()
    player = open_webkit(server).open()
    session_id = player.state()["sessionId"]
    clicked = player.press_play()
    state = player.wait_playing(seconds=3.0)
    assert state["sessionId"] == session_id and state["restarts"] == 0
    player.wait("window.radiod.state.nowPlaying !== null")
    assert player.page.text_content("#health-audio .status-text") == "connected"
    assert player.page.text_content("#health-events .status-text") == "connected"
    created = server.log.events("session.created")
    metrics(
        engine="webkit",
        create_to_first_timeupdate_s=state["firstAdvanceAt"] / 1000
        - server.log.time_of(created[0]),
        click_to_first_timeupdate_s=state["firstAdvanceAt"] / 1000 - clicked,
    )
    player.screenshot("webkit-playing.png")


def test_webkit_uses_one_session_on_both_channels(radiod, open_webkit):
    server = radiod()
    player = open_webkit(server).open()
    session_id = player.state()["sessionId"]
    player.press_play()
    state = player.wait_playing(seconds=2.0)

    assert [line["session_id"] for line in server.log.events("session.created")] == [session_id]
    opened = server.log.wait_for("stream.connected", session_id=session_id)
    assert opened[-1]["listener_id"] == state["listenerId"]
    events = server.log.events("events.connected")
    assert {line["session_id"] for line in events} == {session_id}
    clients = {line["client_id"] for line in events + opened}
    assert len(clients) == 1, "the page's two channels carry one client cookie"
    assert not server.log.events("split_session.detected")

    player.reload()  # the cached session, again on both channels
    assert player.state()["sessionId"] == session_id
    player.press_play()
    player.wait_playing(seconds=1.0)
    server.log.wait_for("stream.connected", count=2, session_id=session_id)
    assert len(server.log.events("session.created")) == 1
    assert {line["session_id"] for line in server.log.events("events.connected")} == {session_id}


def test_webkit_cut_events_reconnect_to_the_same_session(radiod, open_webkit, metrics):
    server = radiod()
    player = open_webkit(server).open()
    session_id = player.state()["sessionId"]
    player.press_play()
    player.wait_playing(seconds=3.0)

    cut_at = cut_events(server, player, session_id)
    state = player.wait_playing(seconds=2.0)
    assert state["sessionId"] == session_id
    assert state["restarts"] == 0
    server.log.wait_for("events.connected", count=2, session_id=session_id)
    assert len(server.log.events("session.created")) == 1
    assert audio_changes_since(player, cut_at) == []  # the audio never stopped
    reconnected = player.reached("events", "connected", cut_at)["at"]
    metrics(engine="webkit", cut_to_sse_connected_s=reconnected / 1000 - cut_at)


def test_webkit_stalled_stream_dies_and_restarts_on_a_new_session(radiod, open_webkit, metrics):
    server = radiod()
    player = open_webkit(server).open()
    old_session = player.state()["sessionId"]
    player.press_play()
    listener = player.wait_playing(seconds=3.0)["listenerId"]

    stalled_at = stall(server, old_session, listener)
    player.wait("window.radiod.history.some(h => h.channel === 'audio' && h.status === 'dead')")
    state = wait_new_session_playing(player, old_session)
    new_session = state["sessionId"]
    assert state["restarts"] == 1
    restart = player.reached("page", "restart", stalled_at)
    assert restart["reason"] == "no-progress"
    assert_restarted_on(server, old_session, new_session)
    dead = player.reached("audio", "dead", stalled_at)["at"]
    metrics(
        engine="webkit",
        stall_to_dead_s=dead / 1000 - stalled_at,
        dead_to_playing_again_s=(state["firstAdvanceAt"] - dead) / 1000,
    )


def test_webkit_aborted_stream_comes_back(radiod, open_webkit, metrics):
    """A dropped TCP connection. Chromium re-requests with `Range` on the same session;
    WebKit (measured 2026-12-01) does not: `<audio>` errors once its buffer is played out,
    and the page restarts on a new session. Either way the page must play again, unsplit;
    what happened is recorded (metrics)."""
    server = radiod()
    player = open_webkit(server).open()
    session_id = player.state()["sessionId"]
    player.press_play()
    listener = player.wait_playing(seconds=5.0)["listenerId"]

    aborted_at = time.time()
    assert server.post(f"/_faults/sessions/{session_id}/abort?listener={listener}")["aborted"] == [
        listener
    ]
    server.log.wait_for("stream.closed", session_id=session_id, listener_id=listener)
    # WebKit plays out what it buffered, then connects again: on its own or by a restart.
    again = server.log.wait_for("stream.connected", count=2, timeout=60)[-1]
    state = player.wait_playing(seconds=3.0)
    assert state["sessionId"] in {session_id, again["session_id"]}
    assert not server.log.events("split_session.detected")
    restarts = [h for h in player.debug("history") if h["status"] == "restart"]
    metrics(
        engine="webkit",
        same_session=state["sessionId"] == session_id,
        restart_reasons=[h["reason"] for h in restarts],
        reconnect_s=server.log.time_of(again) - aborted_at,
        reconnect_range=again.get("range"),
        reconnect_resumed=again.get("resumed"),
    )
