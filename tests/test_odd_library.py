"""Every real library plays: the odd library (tests/oddlib.py) through scan, decode and mix.

What a real folder holds (jingles, silence, every format, tags in any script, debris) is
scanned without hanging or raising, each unplayable file is reported once with a reason,
and ten minutes of the mixer's pipeline over what remains plays every track, at every
crossfade length, as one continuous, decodable stream.
"""

from __future__ import annotations

import collections
import functools
import itertools
import os
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import av
import numpy as np
import pytest

from radiod.audio.decode import SILENCE_THRESHOLD, decode_file, trim_silence
from radiod.audio.mixer import mix
from radiod.audio.outputs import Header, TrackEvent
from radiod.audio.ring import Chunk
from radiod.audio.runner import Mixer
from radiod.config import AudioConfig, StreamConfig
from radiod.library import Track, Unplayable, printable, probe_file, scan_library
from tests.conftest import LogCapture, decode_audio
from tests.oddlib import QUOTES, OddLibrary
from tests.test_mixer import ListSink

MIX_SECONDS = 600.0
MP3_FRAME_SECONDS = 1152 / 44100
# A scan of ~40 small files takes ~0.1 s; a FIFO opened for reading would block forever.
SCAN_BOUND_SECONDS = 30.0
FIFO = "Debris/fifo.mp3"
T = TypeVar("T")


def within_bound(call: Callable[[], T], library: OddLibrary) -> T:
    """`call()`, failing instead of hanging if it blocks (as opening the FIFO would)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(call)
        try:
            return future.result(timeout=SCAN_BOUND_SECONDS)
        except TimeoutError:
            # A reader blocked in open() wakes when a writer opens and closes the FIFO.
            os.close(os.open(library.root / FIFO, os.O_WRONLY | os.O_NONBLOCK))
            pytest.fail(f"still running after {SCAN_BOUND_SECONDS} s: blocked on the FIFO?")


@pytest.fixture(scope="module")
def odd_tracks(odd_library: OddLibrary) -> list[Track]:
    return within_bound(lambda: scan_library(odd_library.root), odd_library)


def names(library: OddLibrary, tracks: list[Track]) -> list[str]:
    return [track.path.relative_to(library.root).as_posix() for track in tracks]


def test_the_fixture_holds_what_real_folders_hold(odd_library: OddLibrary) -> None:
    root = odd_library.root
    assert len({f.name for f in odd_library.files}) == len(odd_library.files) >= 35
    assert stat.S_ISFIFO((root / FIFO).lstat().st_mode)
    assert stat.S_IMODE((root / "Debris/mode-000.mp3").stat().st_mode) == 0
    assert os.readlink(root / "Debris/loop.mp3") == "loop.mp3"
    assert (root / "Debris/up").resolve() == root
    assert (root / "Debris/x.mp3").is_dir()
    assert (root / "Debris/empty.mp3").stat().st_size == 0
    assert b"Xing" in (root / "Formats/vbr-xing.mp3").read_bytes()[:4096]
    assert (root / "Formats/cover-2mb-apic.mp3").stat().st_size > 2_000_000
    streams = {}
    for name in (
        "Formats/cover-2mb-apic.mp3",
        "Formats/cover-picture.flac",
        "Formats/hires-96k-24bit.flac",
        "Formats/surround-5.1.m4a",
        "Formats/surround-5.1.flac",
        "Formats/mono-8khz.wav",
    ):
        with av.open(str(root / name)) as container:
            audio = container.streams.audio[0]
            # An attached picture shows up as a video stream.
            streams[name] = (audio.rate, audio.channels, len(container.streams.video))
    assert streams["Formats/cover-2mb-apic.mp3"][2] == 1
    assert streams["Formats/cover-picture.flac"][2] == 1
    assert streams["Formats/hires-96k-24bit.flac"] == (96000, 2, 0)
    assert flac_bits_per_sample(root / "Formats/hires-96k-24bit.flac") == 24
    assert streams["Formats/surround-5.1.m4a"][:2] == (48000, 6)
    assert streams["Formats/surround-5.1.flac"][:2] == (48000, 6)
    assert streams["Formats/mono-8khz.wav"][:2] == (8000, 1)


def flac_bits_per_sample(path: Path) -> int:
    """From STREAMINFO (RFC 9639 8.2): "fLaC", a block header, 10 bytes of sizes, then 20 bits
    of rate, 3 of channels and 5 of bits per sample minus one."""
    fields = int.from_bytes(path.read_bytes()[18:22], "big")
    return ((fields >> 4) & 0x1F) + 1


def test_scan_keeps_what_plays_and_skips_everything_else_once_with_a_reason(
    odd_library: OddLibrary, log_capture: LogCapture
) -> None:
    tracks = within_bound(lambda: scan_library(odd_library.root), odd_library)

    assert sorted(names(odd_library, tracks)) == sorted(f.name for f in odd_library.playable)
    lines = log_capture.events("library.skipped")
    per_path = collections.Counter(line["path"] for line in lines)
    expected = {printable(str(odd_library.root / f.name)): f for f in odd_library.skipped}
    assert per_path == dict.fromkeys(expected, 1)  # each exactly once, nothing else
    for line in lines:
        assert line["level"] == "warning"
        assert expected[line["path"]].why in line["reason"], line
        assert len(line["reason"]) < 100  # short: a reason, not a traceback
    (scanned,) = log_capture.events("library.scanned")
    assert (scanned["tracks"], scanned["skipped"]) == (len(tracks), len(odd_library.skipped))


def test_scan_returns_promptly_beside_a_fifo(odd_library: OddLibrary) -> None:
    started = time.monotonic()
    tracks = within_bound(lambda: scan_library(odd_library.root), odd_library)
    assert time.monotonic() - started < SCAN_BOUND_SECONDS
    assert stat.S_ISFIFO((odd_library.root / FIFO).lstat().st_mode)  # still unopened, unread
    assert odd_library.root / FIFO not in {track.path for track in tracks}


def test_probe_file_judges_one_file_as_the_scan_does(
    odd_library: OddLibrary, odd_tracks: list[Track]
) -> None:
    root = odd_library.root
    by_name = dict(zip(names(odd_library, odd_tracks), odd_tracks, strict=True))
    for file in odd_library.files:
        path = root / file.name
        if file.plays:
            assert probe_file(path, root) == by_name[file.name]
            continue
        with pytest.raises(Unplayable) as refused:
            within_bound(functools.partial(probe_file, path, root), odd_library)
        # A folder link that loops is the walk's to judge; alone, it is just a folder.
        why = "a folder, not a file" if path.is_dir() else file.why
        assert why in str(refused.value), file.name
    for name in odd_library.ignored:
        with pytest.raises(Unplayable, match="a folder, not a file"):
            probe_file(root / name, root)


def test_tags_survive_in_any_script_length_and_punctuation(
    odd_library: OddLibrary, odd_tracks: list[Track]
) -> None:
    by_name = dict(zip(names(odd_library, odd_tracks), odd_tracks, strict=True))
    for file in odd_library.playable:
        track = by_name[file.name]
        assert {"title": track.title, "artist": track.artist, "album": track.album} == dict(
            file.tags
        ), file.name
    assert by_name["Tags/quotes.mp3"].title == QUOTES["title"]  # newlines and quotes as-is
    assert len(by_name["Tags/long.flac"].artist) == 2000


@pytest.mark.parametrize(("rate", "channels"), [(44100, 2), (48000, 2), (22050, 1)])
def test_every_playable_file_decodes_to_audible_audio_in_the_session_format(
    odd_tracks: list[Track], rate: int, channels: int
) -> None:
    """Whatever the file's rate, even 10 samples of it (FFmpeg's resampler alone flushes
    nothing of an input shorter than its filter)."""
    audio = AudioConfig(sample_rate=rate, channels=channels)
    for track in odd_tracks:
        blocks = list(
            decode_file(track.path, sample_rate=audio.sample_rate, channels=audio.channels)
        )
        assert blocks, f"{track.path}: nothing decoded"
        pcm = np.concatenate(blocks, axis=1)
        assert pcm.dtype == np.float32 and pcm.shape[0] == audio.channels, track.path
        assert pcm.shape[1] > 0, track.path
        audible = list(trim_silence(iter(blocks), sample_rate=audio.sample_rate))
        assert sum(block.shape[1] for block in audible) > 0, track.path


def test_tag_newlines_never_break_a_json_log_line(
    odd_library: OddLibrary, odd_tracks: list[Track], log_capture: LogCapture
) -> None:
    quotes = next(t for t in odd_tracks if t.path.name == "quotes.mp3")
    sink = ListSink()
    audio = AudioConfig(crossfade_seconds=0.0)
    mixer = Mixer([quotes], audio, StreamConfig(burst_seconds=0.5), sink, seed=1)
    try:
        mixer.start()
        sink.wait_for(lambda items: any(isinstance(i, TrackEvent) for i in items))
    finally:
        mixer.close()
    raw = log_capture.buffer.getvalue()
    (started,) = log_capture.events("mixer.track_started")  # each line parses alone
    assert started["title"] == QUOTES["title"]
    assert raw.count("\n") == len(log_capture.lines())


def test_a_file_name_in_latin1_keeps_its_log_line(
    odd_tracks: list[Track], log_capture: LogCapture
) -> None:
    latin1 = next(t for t in odd_tracks if os.fsencode(t.path.name) == b"caf\xe9.flac")
    sink = ListSink()
    mixer = Mixer([latin1], AudioConfig(), StreamConfig(burst_seconds=0.5), sink, seed=1)
    try:
        mixer.start()
        sink.wait_for(lambda items: any(isinstance(i, TrackEvent) for i in items))
    finally:
        mixer.close()
    (started,) = log_capture.events("mixer.track_started")
    assert started["title"] == "caf\ufffd"


@pytest.mark.parametrize("crossfade", [0.0, 0.5, 2.5, 10.0])
def test_ten_minutes_of_the_odd_library_play_every_track_without_a_fault(
    odd_tracks: list[Track], crossfade: float
) -> None:
    audio = AudioConfig(codec="mp3", crossfade_seconds=crossfade)
    output = mix(odd_tracks, audio, seed=7)
    header = next(output)
    assert isinstance(header, Header)
    chunks: list[Chunk] = []
    events: list[TrackEvent] = []
    notices: list[object] = []
    for item in output:
        if isinstance(item, Chunk):
            chunks.append(item)
            if item.end_time >= MIX_SECONDS:
                break
        elif isinstance(item, TrackEvent):
            events.append(item)
        else:
            notices.append(item)
    output.close()

    assert notices == []  # no track failed: the scan kept only what plays
    assert {e.track.path for e in events} == {t.path for t in odd_tracks}
    assert chunks[0].stream_time == pytest.approx(0.0, abs=MP3_FRAME_SECONDS)
    for before, after in itertools.pairwise(chunks):
        assert after.seq == before.seq + 1
        assert after.stream_time == pytest.approx(before.end_time, abs=MP3_FRAME_SECONDS)
    # Decoded a minute at a time (a chunk decodes on its own, as a late listener's burst does).
    decoded_seconds = 0.0
    longest_silence = 0.0
    minutes = itertools.groupby(chunks, key=lambda chunk: int(chunk.stream_time // 60))
    for _, group in minutes:
        pcm, rate = decode_audio(header.data + b"".join(c.data for c in group))
        assert rate == audio.sample_rate
        decoded_seconds += pcm.shape[1] / rate
        longest_silence = max(longest_silence, longest_quiet_run(pcm) / rate)
    assert decoded_seconds == pytest.approx(chunks[-1].end_time, abs=0.05)
    # Every track is audible and trimmed: not a chunk's worth of silence anywhere.
    assert longest_silence < 0.25


def longest_quiet_run(pcm: np.ndarray) -> int:
    """Samples in the longest run below the silence threshold on every channel."""
    quiet = np.concatenate(([False], np.abs(pcm).max(axis=0) <= SILENCE_THRESHOLD, [False]))
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8)))
    return int((edges[1::2] - edges[::2]).max(initial=0))
