"""The listener's side: keyboard control, a stale cached session, a refused autoplay."""

from __future__ import annotations

import json
import time

import pytest

pytestmark = pytest.mark.e2e

# Make play() behave like a browser without autoplay permission, on demand: refused unless
# it runs inside a user gesture (a real click has transient activation).
BLOCKABLE_AUTOPLAY = """
const realPlay = HTMLMediaElement.prototype.play;
HTMLMediaElement.prototype.play = function () {
  if (window.__blockAutoplay && !navigator.userActivation.isActive) {
    return Promise.reject(new DOMException('play() needs a user gesture', 'NotAllowedError'));
  }
  return realPlay.call(this);
};
"""
# Once per context (not on later loads): what a page finds after the server restarted.
SEED_STALE_SESSION = """
if (!sessionStorage.getItem('seeded')) {
  sessionStorage.setItem('seeded', '1');
  localStorage.setItem('audioSessionId', %s);
}
"""


def test_keyboard_plays_skips_and_pauses(radiod, open_player):
    server = radiod()
    player = open_player(server).open()
    page = player.page
    session_id = player.state()["sessionId"]

    page.keyboard.press("Space")
    player.wait_playing(seconds=1.0)
    assert page.get_attribute("#btn-play", "aria-label") == "Pause"
    first = player.wait("window.radiod.state.nowPlaying")

    page.keyboard.press("n")
    server.log.wait_for("session.skip_requested", session_id=session_id)
    # The skipped-to track is shown once it is audible (after what was already buffered).
    player.wait(
        "(first) => { const n = window.radiod.state.nowPlaying; return n && n !== first }",
        arg=first,
    )

    page.keyboard.press("Space")
    player.wait("!window.radiod.state.wantPlaying && window.radiod.state.audioStatus === 'paused'")
    assert page.get_attribute("#btn-play", "aria-label") == "Play"
    server.log.wait_for("stream.closed", session_id=session_id)

    # Real buttons, reachable with Tab, with names; status changes are announced.
    page.focus("#btn-play")
    page.keyboard.press("Enter")
    player.wait_playing(seconds=1.0)
    for selector in ("#btn-play", "#btn-skip", "#btn-mute"):
        assert page.eval_on_selector(selector, "b => b.tagName") == "BUTTON"
        assert page.get_attribute(selector, "aria-label")
    assert page.get_attribute("#notice", "aria-live") == "polite"
    page.keyboard.press("m")
    assert page.get_attribute("#btn-mute", "aria-pressed") == "true"
    assert page.evaluate("document.getElementById('audio').muted") is True
    assert len(server.log.events("session.created")) == 1


@pytest.mark.parametrize(
    "stale",
    [
        pytest.param("session_gone_long_ago", id="unknown"),  # SSE: session_not_found
        pytest.param("not a session id!", id="malformed"),  # SSE: 400, seen through HEAD
    ],
)
def test_stale_cached_session_is_replaced_once_without_reload(radiod, open_player, stale):
    server = radiod()
    player = open_player(server)
    player.context.add_init_script(SEED_STALE_SESSION % json.dumps(stale))
    player.console.allow_network_errors()  # the 400 of the malformed case
    player.open()
    state = player.wait(
        "(stale) => { const s = window.radiod.state; return s.sessionId"
        " && s.sessionId !== stale && s.sseStatus === 'connected' && s }",
        arg=stale,
    )
    session_id = state["sessionId"]
    assert player.console.has(f"🔧 Found cached session: {stale}")
    assert player.console.has(f"🔧 Created new session: {session_id}")
    assert state["restarts"] == 1
    assert player.loads == 1  # no reload
    assert [line["session_id"] for line in server.log.events("session.created")] == [session_id]
    assert [r.query["session"] for r in player.http("/events")] == [stale, session_id]

    player.press_play()
    player.wait_playing(seconds=1.0)
    streams = [r for r in player.http("/stream") if r.method == "GET"]  # not the HEAD probes
    assert {r.query["session"] for r in streams} == {session_id}
    assert player.state()["restarts"] == 1
    assert player.page.evaluate("localStorage.getItem('audioSessionId')") == session_id


def test_refused_autoplay_after_restart_offers_tap_to_resume(radiod, open_player, metrics):
    # Short thresholds from config: the page must use what the server renders into it.
    server = radiod(
        health={"degraded_after_ms": 2000, "dead_after_ms": 4000, "check_interval_ms": 500}
    )
    player = open_player(server)
    player.context.add_init_script(BLOCKABLE_AUTOPLAY)
    player.open()
    old_session = player.state()["sessionId"]
    player.press_play()
    state = player.wait_playing(seconds=2.0)

    player.page.evaluate("window.__blockAutoplay = true")
    stalled_at = time.time()
    server.post(f"/_faults/sessions/{old_session}/stall?listener={state['listenerId']}")
    player.wait("window.radiod.state.awaitingGesture", timeout=40)
    assert player.page.is_visible("#btn-resume")
    assert "Tap" in player.page.text_content("#notice")
    assert player.console.has("🔇 Playback blocked by the browser")
    player.screenshot("tap-to-resume.png")
    buffering = player.reached("audio", "buffering", stalled_at)["at"]
    degraded = player.reached("audio", "degraded", stalled_at)["at"]
    dead = player.reached("audio", "dead", stalled_at)["at"]
    restart = player.reached("page", "restart", stalled_at)
    assert 2000 <= degraded - buffering <= 2000 + 500 + 1500
    assert 4000 <= dead - restart["lastAdvanceAt"] <= 4000 + 500 + 1500

    player.page.click("#btn-resume")
    state = player.wait(
        "(old) => { const s = window.radiod.state; return s.sessionId !== old"
        " && s.audioStatus === 'connected' && s.currentTime > 1 && s }",
        arg=old_session,
    )
    assert not player.page.is_visible("#btn-resume")
    assert state["restarts"] == 1  # waiting for the tap did not count as dying again
    metrics(
        waiting_to_degraded_s=(degraded - buffering) / 1000,
        last_timeupdate_to_dead_s=(dead - restart["lastAdvanceAt"]) / 1000,
    )
