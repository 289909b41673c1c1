"""Even loudness: tracks far apart in level come out of the stream at the station's target.

Levels are judged the way a listener hears them: the server's encoded stream is decoded and
each track's stretch of it measured with the EBU R128 meter (FFmpeg's ebur128).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from radiod.app import create_app
from radiod.audio.loudness import Loudness, TrackGains, measure_blocks, tagged_loudness
from radiod.audio.loudness_cache import LoudnessCache, file_signature
from radiod.audio.loudness_sweep import LoudnessSweep
from radiod.audio.mixer import mix
from radiod.audio.outputs import TrackEvent, TrackFailed, TracksFailed
from radiod.audio.ring import Chunk
from radiod.catalog import FixedCatalog
from radiod.config import AudioConfig, ConfigError
from radiod.library import Track, scan_library
from tests.conftest import (
    LogCapture,
    collect_sse,
    create_session,
    decode_audio,
    make_config,
    read_bytes,
    wait_until,
)
from tests.oddlib import FLAC, MP3, OPUS, sound, write_audio

RATE = 44100
TRACK_SECONDS = 6.0
TARGET = -16.0
# Seconds left out at each end of a track's stretch of the stream: the MP3 codec delay and
# the meter's 400 ms blocks straddling a join.
EDGE = 0.6


def _at_lufs(audio: np.ndarray, lufs: float) -> np.ndarray:
    """`audio` scaled so the R128 meter reads `lufs` for it."""
    measured = measure_blocks([audio], sample_rate=RATE).lufs
    return (audio * np.float32(10 ** ((lufs - measured) / 20))).astype(np.float32)


@pytest.fixture(scope="module")
def apart_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tracks 12 dB apart: -12 and -24 LUFS, both with headroom for the gain they need."""
    root = tmp_path_factory.mktemp("loudness")
    loud = _at_lufs(sound(TRACK_SECONDS, RATE, seed=1), -12.0)
    quiet = _at_lufs(sound(TRACK_SECONDS, RATE, seed=2), -24.0)
    write_audio(root / "loud.flac", loud, RATE, **FLAC)
    write_audio(root / "quiet.flac", quiet, RATE, **FLAC)
    return root


def _audio(tmp_path: Path, **values: object) -> dict[str, object]:
    return {"loudness": True, "loudness_cache": str(tmp_path / "cache.sqlite3"), **values}


async def test_tracks_12_db_apart_come_out_of_the_stream_at_the_target(
    apart_library: Path, tmp_path: Path, log_capture: LogCapture
) -> None:
    tracks = scan_library(apart_library)
    config = make_config(audio=_audio(tmp_path, crossfade_seconds=0.0))
    async with TestClient(TestServer(create_app(config, tracks))) as client:
        # The sweep measures in the background; the session starts once it has.
        await wait_until(lambda: len(log_capture.events("loudness.measured")) == 2)
        session_id = await create_session(client)
        events: list[dict] = []
        sse = await client.get(f"/events?session={session_id}")
        collector = asyncio.create_task(collect_sse(sse, events))
        stream = await client.get(f"/stream?session={session_id}")
        data = await read_bytes(stream, int(2.4 * TRACK_SECONDS * 128_000 / 8))
        collector.cancel()
    samples, rate = decode_audio(data)
    starts = {}
    for event in events:
        if event.get("type") == "track" and event["nowPlaying"]:
            starts.setdefault(event["startsAt"], event["nowPlaying"]["title"])
    figures = {}
    for begin, title in sorted(starts.items()):
        stretch = samples[
            :, int((begin + EDGE) * rate) : int((begin + TRACK_SECONDS - EDGE) * rate)
        ]
        if stretch.shape[1] >= rate * (TRACK_SECONDS - 2 * EDGE - 0.1):
            figures.setdefault(title, measure_blocks([stretch], sample_rate=rate).lufs)
    print(f"\n[loudness] from the stream, LUFS: {figures}")
    assert set(figures) == {"loud", "quiet"}
    assert abs(figures["loud"] - figures["quiet"]) <= 1.0
    for lufs in figures.values():
        assert abs(lufs - TARGET) <= 1.0


def _stream_lufs(tracks: list[Track], audio: AudioConfig, seconds: float) -> float:
    """Loudness of the first `seconds` of `mix()`'s encoded stream (unpaced), after `EDGE`."""
    encoded = bytearray()
    for item in mix(tracks, audio, seed=1):
        if isinstance(item, Chunk):
            encoded += item.data
            if item.stream_time >= seconds + 1:
                break
    samples, rate = decode_audio(bytes(encoded))
    return measure_blocks(
        [samples[:, int(EDGE * rate) : int(seconds * rate)]], sample_rate=rate
    ).lufs


def test_replaygain_tag_wins_over_the_measurement(tmp_path: Path) -> None:
    """A tag saying "-6 dB" on a -20 LUFS track (it claims -12 LUFS): the tag is obeyed,
    so the track comes out at -20 - 4 = -24 LUFS, though measuring would have made it -16."""
    path = tmp_path / "tagged.flac"
    audio = _at_lufs(sound(TRACK_SECONDS, RATE, seed=3), -20.0)
    write_audio(path, audio, RATE, tags={"REPLAYGAIN_TRACK_GAIN": "-6.00 dB"}, **FLAC)
    (track,) = scan_library(tmp_path)
    assert track.replaygain is not None and track.replaygain.lufs == pytest.approx(-12.0)
    config = AudioConfig(**_audio(tmp_path))  # type: ignore[arg-type]
    LoudnessSweep(FixedCatalog([track]), LoudnessCache(config.loudness_cache)).sweep()
    lufs = _stream_lufs([track], config, TRACK_SECONDS - 1)
    print(f"\n[loudness] tagged track from the stream: {lufs} LUFS (tag says -24)")
    assert abs(lufs - (-24.0)) <= 1.0


def test_opus_r128_and_id3_replaygain_tags_are_read(tmp_path: Path) -> None:
    audio = sound(2.0, 48000, seed=4)
    write_audio(tmp_path / "a.opus", audio, 48000, tags={"R128_TRACK_GAIN": "-1280"}, **OPUS)
    write_audio(
        tmp_path / "b.mp3",
        audio,
        48000,
        tags={"REPLAYGAIN_TRACK_GAIN": "+3.5 dB", "REPLAYGAIN_TRACK_PEAK": "0.5"},
        **MP3,
    )
    found = {t.path.name: t.replaygain for t in scan_library(tmp_path)}
    assert found["a.opus"] is not None and found["a.opus"].lufs == pytest.approx(-18.0)
    assert found["b.mp3"] is not None and found["b.mp3"].lufs == pytest.approx(-21.5)
    assert found["b.mp3"].true_peak == pytest.approx(-6.02, abs=0.01)
    assert tagged_loudness({"replaygain_track_gain": "loud"}) is None


def test_the_true_peak_ceiling_holds_a_quiet_peaky_track_back(tmp_path: Path) -> None:
    """-30 LUFS but peaks at -3 dBTP: raising it to -16 would clip; it stops at -1 dBTP."""
    config = AudioConfig(**_audio(tmp_path))  # type: ignore[arg-type]
    path = tmp_path / "peaky.flac"
    path.write_bytes(b"stands for a measured file")
    LoudnessCache(config.loudness_cache).put(path, file_signature(path), Loudness(-30.0, -3.0))
    track = Track(path, "0" * 12, "peaky", "", "", 1.0)
    assert 20 * np.log10(TrackGains(config)(track)) == pytest.approx(2.0)


def test_an_unmeasured_track_plays_at_unity_and_its_next_play_uses_the_measurement(
    apart_library: Path, tmp_path: Path
) -> None:
    config = AudioConfig(**_audio(tmp_path))  # type: ignore[arg-type]
    gains = TrackGains(config)  # one session's lookup, made before the sweep ran
    quiet = next(t for t in scan_library(apart_library) if t.title == "quiet")
    assert gains(quiet) == 1.0
    LoudnessSweep(FixedCatalog([quiet]), LoudnessCache(config.loudness_cache)).sweep()
    assert 20 * np.log10(gains(quiet)) == pytest.approx(8.0, abs=0.3)  # -24 LUFS to -16


def test_a_cache_hit_measures_nothing_and_a_changed_file_is_measured_again(
    apart_library: Path, tmp_path: Path, log_capture: LogCapture
) -> None:
    catalog = FixedCatalog(scan_library(apart_library))
    cache = LoudnessCache(tmp_path / "cache.sqlite3")
    assert LoudnessSweep(catalog, cache).sweep() == 2
    assert LoudnessSweep(catalog, LoudnessCache(cache.path)).sweep() == 0  # a new process
    assert len(log_capture.events("loudness.measured")) == 2
    quiet = apart_library / "quiet.flac"
    os.utime(quiet, ns=(quiet.stat().st_atime_ns, quiet.stat().st_mtime_ns + 1_000_000_000))
    assert LoudnessSweep(catalog, cache).sweep() == 1


def test_a_corrupt_cache_is_logged_and_rebuilt(
    apart_library: Path, tmp_path: Path, log_capture: LogCapture
) -> None:
    catalog = FixedCatalog(scan_library(apart_library))
    cache = LoudnessCache(tmp_path / "cache.sqlite3")
    cache.path.write_bytes(b"this is not a database" * 100)
    gains = TrackGains(AudioConfig(**_audio(tmp_path)))  # type: ignore[arg-type]
    assert gains(catalog.tracks()[0]) == 1.0  # unreadable: unity, no exception
    assert LoudnessSweep(catalog, cache).sweep() == 2
    assert log_capture.events("loudness.cache_corrupt")
    assert gains(catalog.tracks()[0]) != 1.0  # rebuilt, and read from
    assert LoudnessSweep(catalog, cache).sweep() == 0


def test_an_unmeasurable_track_still_plays_at_unity(
    tmp_path: Path, log_capture: LogCapture
) -> None:
    """A 0.2 s blip is shorter than the meter's 400 ms block: no integrated loudness."""
    music = tmp_path / "music"
    music.mkdir()
    write_audio(music / "blip.flac", sound(0.2, RATE, seed=5), RATE, **FLAC)
    write_audio(music / "song.flac", sound(3.0, RATE, seed=6), RATE, **FLAC)
    tracks = scan_library(music)
    config = AudioConfig(**_audio(tmp_path, crossfade_seconds=0.0))  # type: ignore[arg-type]
    assert LoudnessSweep(FixedCatalog(tracks), LoudnessCache(config.loudness_cache)).sweep() == 2
    (warning,) = log_capture.events("loudness.unmeasurable")
    assert warning["path"].endswith("blip.flac")
    blip = next(t for t in tracks if t.title == "blip")
    assert TrackGains(config)(blip) == 1.0
    played, failed = set(), []
    for item in mix(tracks, config, seed=2):
        if isinstance(item, Chunk) and item.stream_time > 8:
            break
        if isinstance(item, TrackEvent):
            played.add(item.track.title)
        failed += [item] if isinstance(item, TrackFailed | TracksFailed) else []
    assert played == {"blip", "song"}
    assert not failed


def test_loudness_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"audio\.loudness_target = 3\.0: expected a value"):
        make_config(audio={"loudness_target": 3})
    with pytest.raises(ConfigError, match=r"audio\.loudness = 'yes': expected true or false"):
        make_config(audio={"loudness": "yes"})
