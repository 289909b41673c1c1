"""One session per listener: created once, shared by both channels, reused, replaced when lost."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.e2e


def test_fresh_storage_creates_one_session_used_by_both_channels(radiod, open_player, metrics):
    server = radiod()
    player = open_player(server).open()
    session_id = player.state()["sessionId"]
    assert player.console.has(f"🔧 Created new session: {session_id}")
    assert player.console.has(f"🔌 Connecting SSE to session: {session_id}")

    clicked = player.press_play()
    state = player.wait_playing(seconds=2.0)
    assert player.console.has(f"🎵 Audio connecting to session: {session_id}")

    # Exactly one session, and both channels on it: in the browser's network log ...
    created = server.log.events("session.created")
    assert [line["session_id"] for line in created] == [session_id]
    events, streams = player.http("/events"), player.http("/stream")
    assert events and streams
    assert {r.query.get("session") for r in events + streams} == {session_id}
    assert streams[-1].query.get("listener") == state["listenerId"]
    # ... and in the server's.
    opened = server.log.wait_for("stream.connected", session_id=session_id)
    assert opened[-1]["listener_id"] == state["listenerId"]
    assert {line["session_id"] for line in server.log.events("events.connected")} == {session_id}
    clients = {line["client_id"] for line in server.log.events("events.connected") + opened}
    assert len(clients) == 1, "the page's two channels carry one client cookie"
    assert not server.log.events("split_session.detected")

    # The audio really plays: currentTime keeps advancing, the track is shown by stream time.
    state = player.wait_playing(seconds=2.0)
    assert state["streamStart"] is not None
    player.wait("window.radiod.state.nowPlaying !== null")
    assert player.page.text_content("#health-audio .status-text") == "connected"
    assert player.page.text_content("#health-events .status-text") == "connected"
    assert player.page.text_content("#session-id") in session_id

    first_sound = state["firstAdvanceAt"] / 1000
    metrics(
        create_to_first_timeupdate_s=first_sound - server.log.time_of(created[0]),
        click_to_first_timeupdate_s=first_sound - clicked,
    )
    player.screenshot("playing-desktop.png")
    player.page.emulate_media(color_scheme="dark")
    player.screenshot("playing-desktop-dark.png")
    player.page.set_viewport_size({"width": 390, "height": 844})
    player.screenshot("playing-phone-dark.png")
    player.page.emulate_media(color_scheme="light")
    player.screenshot("playing-phone.png")


def test_reload_reuses_cached_session(radiod, open_player, metrics):
    server = radiod()
    player = open_player(server).open()
    session_id = player.state()["sessionId"]
    player.press_play()
    player.wait_playing(seconds=1.0)

    player.reload()
    assert player.state()["sessionId"] == session_id
    assert player.console.has(f"🔧 Found cached session: {session_id}")
    clicked = player.press_play()
    state = player.wait_playing(seconds=1.0)

    assert len(server.log.events("session.created")) == 1
    server.log.wait_for("stream.connected", count=2, session_id=session_id)
    for event in ("events.connected", "stream.connected"):
        assert {line["session_id"] for line in server.log.events(event)} == {session_id}
    assert {r.query.get("session") for r in player.http("/events") + player.http("/stream")} == {
        session_id
    }
    assert state["restarts"] == 0
    assert not server.log.events("split_session.detected")
    metrics(click_to_first_timeupdate_after_reload_s=state["firstAdvanceAt"] / 1000 - clicked)


def test_server_restart_recovers_onto_new_session_without_reload_loop(radiod, open_player, metrics):
    server = radiod()
    player = open_player(server).open()
    player.console.allow_network_errors()  # refused connections while the server is down
    old_session = player.state()["sessionId"]
    player.press_play()
    player.wait_playing(seconds=2.0)
    loads_before = player.loads

    stopped = time.time()
    server.restart()  # same port, empty registry: the page's session is gone
    restarted = time.time()
    state = player.wait(
        "(old) => { const s = window.radiod.state;"
        " return s.sessionId && s.sessionId !== old && s.audioStatus === 'connected'"
        " && s.firstAdvanceAt && s.currentTime > 1 && s }",
        timeout=90,
        arg=old_session,
    )
    recovered = time.time()
    new_session = state["sessionId"]
    created = server.log.wait_for("session.created", count=2)
    assert created[-1]["session_id"] == new_session

    # Recovered in the page: no reload, and it settles (no restart loop).
    assert player.loads == loads_before
    restarts = state["restarts"]
    assert 1 <= restarts <= 4
    state = player.wait_playing(seconds=3.0)
    assert state["restarts"] == restarts
    assert state["sessionId"] == new_session
    assert player.loads == loads_before
    assert player.page.evaluate("localStorage.getItem('audioSessionId')") == new_session
    assert not server.log.events("split_session.detected")

    metrics(
        server_down_s=restarted - stopped,
        server_back_to_audio_s=recovered - restarted,
        restarts=restarts,
    )
