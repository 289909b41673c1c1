"""Scenario steps the Chromium and WebKit suites share (tests/e2e, tests/e2e_webkit).

Both engines' players answer `wait`, `debug` and `reached` alike (Playwright's page and
WebDriver's), so a recovery scenario is written once and its bounds are the same for both.
"""

from __future__ import annotations

import time
from typing import Any

# A page on a session other than `old`, its audio connected and really advancing.
NEW_SESSION_PLAYING = (
    "(old) => { const s = window.radiod.state;"
    " return s.sessionId && s.sessionId !== old && s.audioStatus === 'connected'"
    " && s.firstAdvanceAt && s.currentTime > 1 && s }"
)


def cut_events(server: Any, player: Any, session_id: str) -> float:
    """Cut the page's SSE and wait until its events channel is connected again; the cut's time."""
    cut_at = time.time()
    assert server.post(f"/_faults/sessions/{session_id}/cut-events")["cut"] == 1
    player.wait(
        "(since) => window.radiod.history.some(h => h.channel === 'events'"
        " && h.status === 'connected' && h.at > since)",
        arg=cut_at * 1000,
    )
    return cut_at


def audio_changes_since(player: Any, since: float) -> list[str]:
    """The audio channel's status changes from `since` (epoch seconds) on."""
    history = player.debug("history")
    return [h["status"] for h in history if h["channel"] == "audio" and h["at"] >= since * 1000]


def stall(server: Any, session_id: str, listener: str) -> float:
    """Stop the server sending to `listener` (its socket stays open); the stall's time."""
    stalled_at = time.time()
    answer = server.post(f"/_faults/sessions/{session_id}/stall?listener={listener}")
    assert answer["stalled"] == [listener]
    return stalled_at


def wait_new_session_playing(player: Any, old_session: str) -> dict[str, Any]:
    """The page's state once it plays on a session other than `old_session`."""
    return player.wait(NEW_SESSION_PLAYING, timeout=60, arg=old_session)


def assert_restarted_on(server: Any, old_session: str, new_session: str) -> None:
    """The server saw exactly the two sessions, the new one on both channels, none split."""
    created = server.log.events("session.created")
    assert [line["session_id"] for line in created] == [old_session, new_session]
    server.log.wait_for("events.connected", session_id=new_session)
    server.log.wait_for("stream.connected", session_id=new_session)
    assert not server.log.events("split_session.detected")
