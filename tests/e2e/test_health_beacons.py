"""The page reports what the listener heard: a cut stream reaches the server's log and metrics."""

from __future__ import annotations

import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_controls import BLOCKABLE_AUTOPLAY

pytestmark = pytest.mark.e2e

# Quick verdicts, so the cut is judged within seconds (the defaults are 8 s and 12 s).
HEALTH = {"degraded_after_ms": 2000, "dead_after_ms": 5000, "check_interval_ms": 500}


# Playwright's calls count as a user gesture (and renew it), so the page clicks play itself
# once the gesture has expired, and the test waits on the server's log, not on the page.
PLAY_WITHOUT_ACTIVATION = """
window.__blockAutoplay = true;
const press = () => navigator.userActivation.isActive
  ? setTimeout(press, 100) : document.getElementById('btn-play').click();
setTimeout(press, 100);
"""


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url + "metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_cut_stream_is_reported_by_the_page_with_its_session(radiod, open_player, metrics):
    server = radiod(health=HEALTH)
    player = open_player(server).open()
    player.press_play()
    state = player.wait_playing(seconds=2.0)
    old_session, listener = state["sessionId"], state["listenerId"]

    cut_at = time.time()
    assert server.post(f"/_faults/sessions/{old_session}/stall?listener={listener}")["stalled"]
    player.wait(
        "(old) => { const s = window.radiod.state;"
        " return s.sessionId && s.sessionId !== old && s.audioStatus === 'connected' }",
        timeout=60,
        arg=old_session,
    )

    (restart,) = server.log.wait_for("client.restart", session_id=old_session)
    assert restart["reason"] == "no-progress" and restart["attempt"] == 1
    assert restart["listener_id"] == listener and restart["channel"] == "api"
    (stream,) = server.log.events("stream.connected", session_id=old_session)
    assert restart["client_id"] == stream["client_id"]  # the listener's own cookie
    (dead,) = server.log.wait_for("client.dead", session_id=old_session)
    assert dead["reason"] == "no-progress" and dead["ms"] >= HEALTH["dead_after_ms"]
    (degraded,) = server.log.wait_for("client.degraded", session_id=old_session)
    assert degraded["ms"] >= HEALTH["degraded_after_ms"]
    reported_at = server.log.time_of(restart)
    # Nothing about the new session's healthy playback was reported.
    new_session = player.state()["sessionId"]
    assert not server.log.events("client.buffering", session_id=new_session)

    samples = scrape(server.url)
    assert samples[("radiod_client_restarts_total", (("reason", "no-progress"),))] == 1
    assert samples[("radiod_client_reports_total", (("kind", "dead"),))] == 1

    server.stop()
    report = server.audit()
    (view,) = [v for v in report["listener_view"] if v["session_id"] == old_session]
    assert view["client"]["restarts"] == 1 and view["client"]["stalls"] >= 1
    assert view["disagreement"] == "network"  # the listener stalled; the server saw nothing
    metrics(cut_to_restart_report_s=reported_at - cut_at)


def test_a_refused_play_and_an_sse_reconnect_are_reported(radiod, open_player):
    server = radiod()
    player = open_player(server)
    player.context.add_init_script(BLOCKABLE_AUTOPLAY)
    player.open()
    session_id = player.state()["sessionId"]
    player.page.evaluate(PLAY_WITHOUT_ACTIVATION)
    (refused,) = server.log.wait_for("client.play_refused", session_id=session_id)
    assert player.state()["awaitingGesture"]
    (connected,) = server.log.events("events.connected", session_id=session_id)
    assert refused["client_id"] == connected["client_id"]

    player.page.click("#btn-resume")  # the tap: now it plays
    player.wait_playing(seconds=1.0)
    assert server.post(f"/_faults/sessions/{session_id}/cut-events")["cut"] == 1
    (reconnect,) = server.log.wait_for("client.sse_reconnect", session_id=session_id)
    assert reconnect["attempt"] == 1 and reconnect["delay_ms"] == 2000
    server.log.wait_for("events.connected", count=2, session_id=session_id)
    assert not server.log.events("client.restart")
