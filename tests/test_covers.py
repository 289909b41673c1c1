"""Cover art over a real server: `GET /tracks/ID/cover` serves the picture a file embeds (ID3
APIC, FLAC PICTURE, MP4 `covr`) or the image beside it, with validators; and the track
payloads tell the page where to find it."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from radiod.app import create_app
from radiod.artwork import MAX_COVER_BYTES
from radiod.library import Track, scan_library
from tests.conftest import create_session, make_config, read_bytes, read_sse
from tests.oddlib import FFMPEG, FLAC, WAV, OddLibrary, noise_png, sound, write_audio

RATE = 44100


def _jpeg(width: int, height: int) -> bytes:
    """A real JPEG (PyAV's MJPEG encoder), so the served type is checked against a second kind."""
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 90)], -1)
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuvj420p"
    codec.time_base = Fraction(1, 25)
    frame = av.VideoFrame.from_ndarray(pixels.astype(np.uint8), format="rgb24").reformat(
        format="yuvj420p"
    )
    return b"".join(bytes(p) for p in [*codec.encode(frame), *codec.encode(None)])


@pytest.fixture(scope="module")
def cover_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An M4A with `covr`, folders with a `Cover.JPG` / a `FOLDER.png`, a track without
    any cover, and one whose folder image is over the size bound."""
    root = tmp_path_factory.mktemp("covers")
    for folder in ("m4a", "jpg", "png", "none", "huge"):
        (root / folder).mkdir()
    wav, jpeg = root.parent / "covers-src.wav", root.parent / "covers-src.jpg"
    write_audio(wav, sound(3.0, RATE, seed=7), RATE, **WAV)
    jpeg.write_bytes(_jpeg(120, 90))
    subprocess.run(
        [FFMPEG, "-nostdin", "-v", "error", "-y", "-i", str(wav), "-i", str(jpeg), "-map", "0:a",
         "-map", "1:v", "-c:a", "aac", "-c:v", "copy", "-disposition:v", "attached_pic",
         str(root / "m4a" / "covr.m4a")],
        check=True,
    )  # fmt: skip
    for folder, seed in (("jpg", 8), ("png", 9), ("none", 10), ("huge", 11)):
        write_audio(root / folder / "track.flac", sound(3.0, RATE, seed=seed), RATE, **FLAC)
    (root / "jpg" / "Cover.JPG").write_bytes(jpeg.read_bytes())
    (root / "png" / "FOLDER.png").write_bytes(noise_png(64, 48, seed=3))
    (root / "huge" / "cover.jpg").write_bytes(b"\xff\xd8\xff" + bytes(MAX_COVER_BYTES))
    return root


Serve = Callable[[Sequence[Track]], Awaitable[TestClient]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start the real app over `tracks` on a loopback socket: `await serve(tracks)`."""
    clients: list[TestClient] = []

    async def start(tracks: Sequence[Track]) -> TestClient:
        client = TestClient(TestServer(create_app(make_config(), list(tracks))))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


def _by_name(tracks: Sequence[Track], name: str) -> Track:
    return next(t for t in tracks if t.path.relative_to(t.path.parents[1]).as_posix() == name)


async def _cover(client: TestClient, track: Track) -> tuple[int, str, bytes]:
    response = await client.get(f"/tracks/{track.track_id}/cover")
    return response.status, response.content_type, await response.read()


async def test_embedded_id3_and_flac_pictures_are_served(
    odd_library: OddLibrary, serve: Serve
) -> None:
    tracks = scan_library(odd_library.root)
    client = await serve(tracks)
    apic = _by_name(tracks, "Formats/cover-2mb-apic.mp3")
    flac = _by_name(tracks, "Formats/cover-picture.flac")
    assert apic.has_cover and flac.has_cover
    assert await _cover(client, apic) == (200, "image/png", noise_png(840, 840, seed=1))
    assert await _cover(client, flac) == (200, "image/png", noise_png(200, 200, seed=2))


async def test_mp4_covr_and_folder_images_are_served(cover_library: Path, serve: Serve) -> None:
    tracks = scan_library(cover_library)
    client = await serve(tracks)
    jpeg = (cover_library / "jpg" / "Cover.JPG").read_bytes()
    assert await _cover(client, _by_name(tracks, "m4a/covr.m4a")) == (200, "image/jpeg", jpeg)
    assert await _cover(client, _by_name(tracks, "jpg/track.flac")) == (200, "image/jpeg", jpeg)
    png = (cover_library / "png" / "FOLDER.png").read_bytes()
    assert await _cover(client, _by_name(tracks, "png/track.flac")) == (200, "image/png", png)


async def test_etag_revalidation_answers_304(cover_library: Path, serve: Serve) -> None:
    tracks = scan_library(cover_library)
    client = await serve(tracks)
    url = f"/tracks/{_by_name(tracks, 'jpg/track.flac').track_id}/cover"
    first = await client.get(url)
    etag = first.headers["ETag"]
    assert "max-age" in first.headers["Cache-Control"]
    again = await client.get(url, headers={"If-None-Match": f'W/"other", {etag}'})
    assert again.status == 304 and await again.read() == b""
    assert again.headers["ETag"] == etag
    other = await client.get(url, headers={"If-None-Match": '"stale"'})
    assert other.status == 200 and len(await other.read()) == len(await first.read())


async def test_no_cover_unknown_and_malformed_ids_answer_json(
    cover_library: Path, serve: Serve
) -> None:
    tracks = scan_library(cover_library)
    client = await serve(tracks)
    for name in ("none/track.flac", "huge/track.flac"):
        track = _by_name(tracks, name)
        response = await client.get(f"/tracks/{track.track_id}/cover")
        assert response.status == 404, name
        assert (await response.json())["error"]
    assert not _by_name(tracks, "none/track.flac").has_cover
    unknown = await client.get("/tracks/0123456789ab/cover")
    assert unknown.status == 404 and (await unknown.json())["error"] == "Track not found"
    for bad in ("xyz", "0123456789ABCDEF", "%2e%2e%2fetc"):
        response = await client.get(f"/tracks/{bad}/cover")
        assert response.status == 400, bad
        assert (await response.json())["error"] == "Malformed track id"


async def test_track_payloads_carry_the_cover_url(demo_tracks: list[Track], serve: Serve) -> None:
    """The demo embeds covers in its MP3 and FLAC tracks, not in its Opus ones."""
    assert {t.path.suffix for t in demo_tracks if t.has_cover} == {".mp3", ".flac"}
    client = await serve(demo_tracks)
    session_id = await create_session(client)
    events = await client.get(f"/events?session={session_id}")
    stream = await client.get(f"/stream?session={session_id}")
    await read_bytes(stream, 4096)
    track_event: dict = {}
    async with asyncio.timeout(20):
        while track_event.get("type") != "track" or not track_event["nowPlaying"]:
            (message,) = await read_sse(events, 1)
            track_event = message["data"]
    status = await (await client.get(f"/sessions/{session_id}")).json()
    by_id = {t.track_id: t for t in demo_tracks}
    for shown in (track_event["nowPlaying"], track_event["next"], status["nowPlaying"]):
        track = by_id[shown["trackId"]]
        expected = f"/tracks/{track.track_id}/cover" if track.has_cover else None
        assert shown["cover"] == expected
    with_cover = next(t for t in demo_tracks if t.has_cover)
    status_code, kind, data = await _cover(client, with_cover)
    assert (status_code, kind) == (200, "image/png") and data.startswith(b"\x89PNG")
