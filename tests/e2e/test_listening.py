"""A minute of real listening: track changes shown on time, and logs the audit calls clean."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

LISTEN_SECONDS = 60.0


def test_a_minute_of_listening_shows_tracks_on_time_and_audits_clean(radiod, open_player, metrics):
    server = radiod()
    player = open_player(server).open()
    session_id = player.state()["sessionId"]
    player.press_play()
    player.wait_playing(seconds=1.0)
    state = player.wait_playing(seconds=LISTEN_SECONDS, timeout=LISTEN_SECONDS * 2 + 30)
    assert state["sessionId"] == session_id
    assert state["restarts"] == 0

    # Now playing switched by stream time: never before the track was audible, and at most
    # a timeupdate or two (250 ms each) after. 20 s tracks: a minute crosses at least two.
    switches = player.debug("switches")
    assert len(switches) >= 3, switches
    lateness = [s["at"] - s["startsAt"] for s in switches[1:]]
    # The bound: what they see switches within 0.5 s of when they hear it.
    assert all(abs(late) <= 0.5 for late in lateness), switches
    assert all(s["sessionId"] == session_id for s in switches)
    status = player.page.evaluate(f"fetch('/sessions/{session_id}').then(r => r.json())")
    assert status["listeners"] == 1 and status["eventClients"] == 1
    # Once sound started, the stream never ran dry.
    waits = [w for w in player.debug("waits") if w["start"] >= state["firstAdvanceAt"]]
    assert all(w["end"] is not None and w["end"] - w["start"] < 1000 for w in waits), waits

    server.stop()  # the audit reads a finished log
    report = server.audit()
    assert report["clean"] and report["splits"] == [], report
    human = subprocess.run(
        [sys.executable, "-m", "radiod", "audit", str(server.log_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert human.returncode == 0, human.stdout + human.stderr
    assert "clean" in human.stdout
    print(human.stdout)
    metrics(
        switches=len(switches),
        max_switch_lateness_s=max(lateness),
        waiting_spells=len(waits),
        audit_untagged_lines=report["summary"].get("untagged"),
    )
