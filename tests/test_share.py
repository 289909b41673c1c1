"""A session from elsewhere: the share QR code, and playlists a native player opens for real."""

from __future__ import annotations

import asyncio
import configparser

import numpy as np
import pytest

from radiod.web.share import qr_svg
from tests.conftest import create_session

PCM_RATE = 22050
READ_SECONDS = 3


def _m3u_url(text: str) -> str:
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U" and lines[1].startswith("#EXTINF:-1,"), text
    (url,) = [line for line in lines if line and not line.startswith("#")]
    return url


def _pls_url(text: str) -> str:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    playlist = parser["playlist"]
    assert playlist["NumberOfEntries"] == "1" and playlist["Length1"] == "-1", text
    return playlist["File1"]


async def _ffmpeg_reads(url: str) -> tuple[np.ndarray, str]:
    """Real ffmpeg opens `url` as a player would (it sends `Icy-MetaData: 1`): PCM, stderr."""
    process = await asyncio.create_subprocess_exec(
        *("ffmpeg", "-hide_banner", "-nostdin", "-i", url, "-t", str(READ_SECONDS)),
        *("-f", "s16le", "-ac", "1", "-ar", str(PCM_RATE), "-"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    return np.frombuffer(stdout, dtype="<i2"), stderr.decode()


@pytest.mark.parametrize(
    ("suffix", "content_type", "url_of"),
    [("m3u", "audio/x-mpegurl", _m3u_url), ("pls", "audio/x-scpls", _pls_url)],
)
async def test_a_native_player_plays_the_session_from_its_playlist_with_titles(
    radiod_client, demo_tracks, suffix, content_type, url_of
) -> None:
    client = await radiod_client()
    session_id = await create_session(client)
    response = await client.get(f"/sessions/{session_id}/listen.{suffix}")
    assert response.status == 200
    assert response.content_type == content_type
    assert response.headers["Content-Disposition"] == f'attachment; filename="radiod.{suffix}"'
    assert "no-store" in response.headers["Cache-Control"]
    url = url_of(await response.text())
    assert url == f"http://127.0.0.1:{client.port}/stream?session={session_id}"

    pcm, stderr = await _ffmpeg_reads(url)
    assert len(pcm) >= PCM_RATE * READ_SECONDS * 0.9, "ffmpeg read too little audio"
    assert np.abs(pcm).max() > 1000, "the audio is silent"
    # ffmpeg shows the ICY block's text as sent: quotes stay escaped ("Don\\'t Stop").
    titles = [f"{t.artist} - {t.title}".replace("'", "\\'") for t in demo_tracks]
    assert any(f"StreamTitle     : {title}" in stderr for title in titles), stderr
    status = await (await client.get(f"/sessions/{session_id}")).json()
    assert status["sessionId"] == session_id


async def test_the_share_code_opens_the_page_on_this_session(radiod_client) -> None:
    client = await radiod_client()
    session_id = await create_session(client)
    response = await client.get(f"/sessions/{session_id}/share.svg")
    assert response.status == 200
    assert response.content_type == "image/svg+xml"
    assert "no-store" in response.headers["Cache-Control"]
    body = await response.read()
    link = f"http://127.0.0.1:{client.port}/?session={session_id}"
    # The code holds the link and nothing else (no cookie, no client id): the same SVG as
    # a code made from the bare link.
    assert body == qr_svg(link)


async def test_urls_follow_the_allowed_host_and_its_https_origin(radiod_client) -> None:
    client = await radiod_client(
        server={
            "allowed_hosts": ["radio.example.org", "plain.example.org"],
            "allowed_origins": ["https://radio.example.org"],
        }
    )
    session_id = await create_session(client)
    path = f"/sessions/{session_id}/listen.m3u"
    behind_tls = await client.get(path, headers={"Host": "radio.example.org"})
    assert _m3u_url(await behind_tls.text()) == (
        f"https://radio.example.org/stream?session={session_id}"
    )
    plain = await client.get(path, headers={"Host": "plain.example.org:8000"})
    assert _m3u_url(await plain.text()) == (
        f"http://plain.example.org:8000/stream?session={session_id}"
    )
    # Another port of the https origin's host is not that origin.
    other_port = await client.get(path, headers={"Host": "radio.example.org:8443"})
    assert _m3u_url(await other_port.text()).startswith("http://radio.example.org:8443/")
    # A name the server does not answer to never reaches a playlist.
    foreign = await client.get(path, headers={"Host": "evil.example"})
    assert foreign.status == 421


@pytest.mark.parametrize("suffix", ["share.svg", "listen.m3u", "listen.pls"])
async def test_unknown_and_malformed_sessions_get_json_errors(radiod_client, suffix) -> None:
    client = await radiod_client()
    unknown = await client.get(f"/sessions/session_x_{'a' * 22}/{suffix}")
    assert unknown.status == 404
    assert await unknown.json() == {"error": "Session not found"}
    malformed = await client.get(f"/sessions/not%20an%20id/{suffix}")
    assert malformed.status == 400
    assert "Malformed session id" in (await malformed.json())["error"]


async def test_a_request_without_host_gets_the_address_it_reached(radiod_client) -> None:
    client = await radiod_client()
    session_id = await create_session(client)
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(f"GET /sessions/{session_id}/listen.m3u HTTP/1.0\r\n\r\n".encode())
    answer = (await asyncio.wait_for(reader.read(), 20)).decode()
    writer.close()
    assert answer.startswith("HTTP/1.0 200"), answer
    assert f"http://127.0.0.1:{client.port}/stream?session={session_id}" in answer
