"""The library changes under a running server: files added, deleted, truncated, replaced,
the whole folder unmounted and back. The stream goes on, new music appears without a
restart, and a track that will not play is never announced as next."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from radiod.app import create_app
from radiod.library import LiveLibrary
from tests.conftest import (
    LogCapture,
    PageListener,
    create_session,
    decode_audio,
    make_config,
    wait_until,
)
from tests.test_mixer import TONE_PAD_SECONDS, write_tone

TONE_SECONDS = 1.5


def tones(folder: Path, *hz: int) -> list[Path]:
    folder.mkdir(exist_ok=True)
    return [write_tone(folder / f"tone-{h}.flac", h, TONE_SECONDS).path for h in hz]


def names(library: LiveLibrary) -> set[str]:
    return {track.path.name for track in library.tracks()}


def test_a_rescan_follows_every_change_and_probes_only_what_changed(
    tmp_path: Path, log_capture: LogCapture
) -> None:
    music = tmp_path / "music"
    first, second, third = tones(music, 220, 330, 440)
    library = LiveLibrary.open(music)
    assert names(library) == {"tone-220.flac", "tone-330.flac", "tone-440.flac"}

    unchanged = library.tracks()
    library.rescan()
    assert library.tracks() is unchanged  # the same tuple: the playlist sees no change
    assert log_capture.events("library.changed") == []

    tones(music, 550)
    (music / "notes.mp3").write_text("not audio")
    second.unlink()
    third.write_bytes(third.read_bytes()[:2000])  # truncated in place
    replacement = write_tone(tmp_path / "other.flac", 660, 3.0).path
    os.replace(replacement, first)  # replaced under the same name
    library.rescan()
    assert names(library) == {"tone-220.flac", "tone-550.flac"}
    (replaced,) = [t for t in library.tracks() if t.path == first]
    assert replaced.duration == pytest.approx(3.0 + 2 * TONE_PAD_SECONDS, abs=0.1)
    skipped = {Path(line["path"]).name for line in log_capture.events("library.skipped")}
    assert skipped == {"notes.mp3", "tone-440.flac"}
    (change,) = log_capture.events("library.changed")
    assert (change["added"], change["removed"], change["tracks"]) == (2, 3, 2)

    library.rescan()  # nothing changed: nothing probed, nothing logged again
    assert len(log_capture.events("library.skipped")) == 2


def test_a_dropped_track_stays_out_until_its_file_changes(tmp_path: Path) -> None:
    music = tmp_path / "music"
    tones(music, 220, 330)
    library = LiveLibrary.open(music)
    dropped = library.tracks()[0]
    library.drop(dropped, "decode failed: on air")
    assert dropped not in library.tracks()
    library.rescan()
    assert dropped not in library.tracks()
    later = dropped.path.stat().st_mtime_ns + 1_000_000_000
    os.utime(dropped.path, ns=(later, later))
    library.rescan()
    assert dropped.path in {t.path for t in library.tracks()}


def test_a_folder_unmounted_and_back_empties_and_refills_the_library(
    tmp_path: Path, log_capture: LogCapture
) -> None:
    music = tmp_path / "music"
    tones(music, 220, 330)
    (music / "cover.txt").write_text("not audio")
    library = LiveLibrary.open(music)
    assert [line["event"] for line in log_capture.lines()] == ["library.skipped", "library.scanned"]
    music.rename(tmp_path / "away")
    library.rescan()
    assert library.tracks() == ()
    (empty,) = log_capture.events("library.empty")
    assert empty["reason"] == "folder missing"
    library.rescan()
    assert len(log_capture.events("library.empty")) == 1  # once, not every rescan
    (tmp_path / "away").rename(music)
    library.rescan()
    assert names(library) == {"tone-220.flac", "tone-330.flac"}
    (recovered,) = log_capture.events("library.recovered")
    assert recovered["tracks"] == 2
    # What was judged before the folder left is not probed, nor logged, again.
    assert len(log_capture.events("library.skipped")) == 1


async def test_the_stream_goes_on_while_the_library_changes_under_it(
    tmp_path: Path, log_capture: LogCapture
) -> None:
    music = tmp_path / "music"
    tones(music, 220, 330, 440)
    library = LiveLibrary.open(music)
    config = make_config(
        library={"rescan_seconds": 0.2},
        audio={"crossfade_seconds": 0.3},
        stream={"burst_seconds": 1.0},
    )
    client = TestClient(TestServer(create_app(config, library)))
    await client.start_server()
    listener = PageListener(client, await create_session(client))
    try:
        await listener.start()
        await wait_until(lambda: len(listener.tracks()) >= 2, timeout=30)

        # Unmounted: the tracks already open play out, then a logged fallback of silence.
        music.rename(tmp_path / "away")
        await wait_until(lambda: log_capture.events("mixer.fallback_silence") != [], timeout=30)
        (fallback,) = log_capture.events("mixer.fallback_silence")
        assert fallback["session_id"] == listener.session_id
        heard = len(listener.audio)
        await wait_until(
            lambda: len(listener.audio) > heard + 32_000, timeout=30
        )  # 2 s at 128 kb/s
        # However many files failed at once: at most one message, no client dropped.
        assert len([e for e in listener.events if e["type"] == "track_failed"]) <= 1
        assert log_capture.events("events.client_lagged") == []

        # Back, plus a new file: music again, the new one included, without a restart.
        (tmp_path / "away").rename(music)
        tones(music, 550)
        await wait_until(
            lambda: any(
                (e["nowPlaying"] or {}).get("title") == "tone-550" for e in listener.tracks()
            ),
            timeout=60,
        )
    finally:
        await listener.stop()
        await client.close()

    # Every track announced as next was the next one heard.
    playing, announced = None, None
    for event in listener.tracks():
        now = (event["nowPlaying"] or {}).get("trackId")
        if now != playing and announced is not None:
            assert now == announced
        playing = now
        announced = (event["next"] or {}).get("trackId")
    decode_audio(bytes(listener.audio))
