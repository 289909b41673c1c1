"""Another device, same station: the share link opens the page on the same session."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e

SAME_TRACKS = (
    "(ids) => { const s = window.radiod.state;"
    " return s.nowPlaying !== null && s.nowPlaying === ids[0] && s.next === ids[1]; }"
)


def _shown(player) -> tuple[str | None, str | None]:
    state = player.state()
    return state["nowPlaying"], state["next"]


def test_a_second_device_joins_the_session_from_the_share_link(radiod, open_player, metrics):
    server = radiod()
    laptop = open_player(server).open()
    session_id = laptop.state()["sessionId"]
    laptop.press_play()
    laptop.wait_playing(seconds=1.0)

    # The card: the link (the session ID and nothing else), its QR code, the playlists.
    link = laptop.page.get_attribute("#share-link", "href")
    assert link == f"{server.url}?session={session_id}"
    assert laptop.page.text_content("#share-link") == link
    note = " ".join(laptop.page.inner_text(".share-note").split())
    assert "carries the session ID and nothing else" in note
    assert "Anyone who has it can listen along" in note
    qr = laptop.page.evaluate(
        "(async () => { const img = document.getElementById('share-qr');"
        " await img.decode(); return [img.naturalWidth, img.currentSrc]; })()"
    )
    assert qr[0] > 0 and qr[1].endswith(f"/sessions/{session_id}/share.svg")
    assert laptop.page.get_attribute("#share-m3u", "href").endswith("/listen.m3u")
    assert laptop.page.get_attribute("#share-pls", "href").endswith("/listen.pls")
    laptop.screenshot("share-card.png")

    # Another device: another browser context, so another cookie and another localStorage.
    phone = open_player(server, viewport={"width": 390, "height": 844})
    phone.page.goto(link)
    phone.wait("window.radiod && window.radiod.state.sseStatus === 'connected'")
    assert phone.state()["sessionId"] == session_id
    assert phone.console.has(f"🔧 Joining shared session: {session_id}")
    assert "session=" not in phone.page.url, "the invitation leaves the address bar once taken"
    assert phone.page.evaluate("localStorage.getItem('audioSessionId')") == session_id
    phone.press_play()
    phone.wait_playing(seconds=1.0)
    phone.screenshot("share-phone.png")

    # One live stream, one now playing: both pages show the same track ids from SSE.
    laptop.wait(SAME_TRACKS, arg=list(_shown(phone)))
    before = _shown(laptop)
    phone.page.click("#btn-skip")  # a control from either device reaches both
    laptop.wait("(old) => window.radiod.state.nowPlaying !== old", arg=before[0], timeout=40)
    phone.wait(SAME_TRACKS, arg=list(_shown(laptop)), timeout=40)
    assert _shown(phone)[0] != before[0]

    # The server saw one session, two clients on it; no split (the fixture audits it too).
    assert [line["session_id"] for line in server.log.events("session.created")] == [session_id]
    opened = server.log.wait_for("stream.connected", count=2, session_id=session_id)
    assert len({line["client_id"] for line in opened}) == 2
    assert not server.log.events("split_session.detected")
    report = server.audit()
    assert report["clean"] and report["summary"]["clients"] == 2
    (shared,) = report["shared_sessions"]
    assert shared["session_id"] == session_id and len(shared["client_ids"]) == 2
    metrics(devices=2, listeners=shared["listeners"])


def test_an_unknown_or_malformed_invitation_falls_back_to_a_new_session(radiod, open_player):
    server = radiod()
    stale = open_player(server)
    stale.console.allow_network_errors()  # the probe's 404 for the stale session
    stale.page.goto(f"{server.url}?session=session_gone_{'x' * 22}")
    stale.wait("window.radiod && window.radiod.state.sseStatus === 'connected'")
    created = server.log.wait_for("session.created")
    assert stale.state()["sessionId"] == created[0]["session_id"]
    assert stale.page.text_content("#notice") == (
        "That shared station has ended — tuning in to your own"
    )
    assert "session=" not in stale.page.url

    odd = open_player(server)
    odd.page.goto(f"{server.url}?session=%3Cscript%3E")
    odd.wait("window.radiod && window.radiod.state.sseStatus === 'connected'")
    server.log.wait_for("session.created", count=2)
    assert odd.state()["sessionId"] != stale.state()["sessionId"]
    # The malformed ID never reached the server: only the stale one was probed.
    probes = [r for r in stale.http("/stream") + odd.http("/stream") if r.method == "HEAD"]
    assert [r.query["session"] for r in probes] == [f"session_gone_{'x' * 22}"]
    assert probes[0].status == 404
