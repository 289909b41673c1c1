"""One station on two devices with two engines: Chromium shares, WebKit joins from the link."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.webkit]

SAME_TRACKS = (
    "(ids) => { const s = window.radiod.state;"
    " return s.nowPlaying !== null && s.nowPlaying === ids[0] && s.next === ids[1]; }"
)


def _shown(player) -> list[str | None]:
    state = player.state()
    return [state["nowPlaying"], state["next"]]


def test_webkit_joins_a_chromium_session_from_its_share_link(radiod, open_player, open_webkit):
    server = radiod()
    laptop = open_player(server).open()
    session_id = laptop.state()["sessionId"]
    laptop.press_play()
    laptop.wait_playing(seconds=1.0)
    link = laptop.page.get_attribute("#share-link", "href")

    phone = open_webkit(server)
    phone.page.goto(link)
    phone.wait("window.radiod && window.radiod.state.sseStatus === 'connected'")
    assert phone.state()["sessionId"] == session_id
    assert "session=" not in phone.page.url
    phone.press_play()
    phone.wait_playing(seconds=2.0)
    phone.wait(SAME_TRACKS, arg=_shown(laptop))

    before = _shown(phone)[0]
    phone.page.click("#btn-skip")  # WebKit's skip moves Chromium's now playing too
    laptop.wait("(old) => window.radiod.state.nowPlaying !== old", arg=before, timeout=40)
    phone.wait(SAME_TRACKS, arg=_shown(laptop), timeout=40)

    opened = server.log.wait_for("stream.connected", count=2, session_id=session_id)
    assert len({line["client_id"] for line in opened}) == 2
    assert len(server.log.events("session.created")) == 1
    report = server.audit()
    assert report["clean"]
    (shared,) = report["shared_sessions"]
    assert shared["session_id"] == session_id and len(shared["client_ids"]) == 2
