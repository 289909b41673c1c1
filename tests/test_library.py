"""Library scan: what plays is found, what cannot play is skipped with a reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from structlog.testing import capture_logs

from radiod.library import LibraryError, scan_library
from tests.oddlib import sound, write_audio


@pytest.fixture
def demo(demo_library: Path) -> list[Path]:
    """The shared demo library's audio files, in scan order."""
    return sorted(p for p in demo_library.iterdir() if p.suffix in {".mp3", ".flac", ".opus"})


@pytest.fixture
def music(tmp_path: Path, demo: list[Path]) -> Path:
    """A user's folder holding copies of the demo tracks, one level down."""
    folder = tmp_path / "music"
    (folder / "albums").mkdir(parents=True)
    for path in demo:
        shutil.copy(path, folder / "albums" / path.name)
    return folder


def write_tone(path: Path, *, seconds: float, format: str, codec: str, **options: str) -> None:
    """An untagged 440 Hz tone, for cases the demo files do not cover."""
    rate = 48000
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(round(seconds * rate)) / rate)
    frame = av.AudioFrame.from_ndarray(
        np.stack([tone, tone]).astype(np.float32), format="fltp", layout="stereo"
    )
    frame.sample_rate = rate
    with av.open(str(path), "w", format=format, container_options=options) as container:
        stream = container.add_stream(codec, rate=rate, layout="stereo")
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def decoded_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.codec_context.sample_rate


def skipped(logs: list[dict]) -> dict[str, str]:
    return {Path(e["path"]).name: e["reason"] for e in logs if e["event"] == "library.skipped"}


def test_demo_library_scans_with_tags_and_durations(demo: list[Path]) -> None:
    with capture_logs() as logs:
        tracks = scan_library(demo[0].parent)
    assert [t.path for t in tracks] == demo  # the manifest is not audio, and not a complaint
    assert skipped(logs) == {}
    for track in tracks:
        with av.open(str(track.path)) as container:
            tags = {**container.streams.audio[0].metadata, **container.metadata}
        assert (track.title, track.artist, track.album) == (
            tags["title"],
            tags["artist"],
            "radiod demo",
        )
        assert track.duration == pytest.approx(decoded_seconds(track.path), abs=0.1)
    assert {"Don't Stop", "Café Nocturne"} <= {t.title for t in tracks}


def test_corrupt_and_misnamed_files_are_skipped_with_a_reason(
    music: Path, demo: list[Path]
) -> None:
    garbage = np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    for path in demo:
        (music / f"broken-{path.name}").write_bytes(path.read_bytes()[:2048] + garbage)
    (music / "notes.mp3").write_text("shopping list: eggs, milk\n")

    with capture_logs() as logs:
        tracks = scan_library(music)

    assert sorted(t.path.name for t in tracks) == sorted(p.name for p in demo)
    reasons = skipped(logs)
    assert set(reasons) == {f"broken-{p.name}" for p in demo} | {"notes.mp3"}
    assert all(reasons.values())
    assert {e["log_level"] for e in logs if e["event"] == "library.skipped"} == {"warning"}


@pytest.mark.parametrize("suffix", [".mp3", ".flac"])
def test_a_file_cut_short_of_its_declared_length_is_skipped(
    music: Path, demo: list[Path], suffix: str
) -> None:
    source = next(p for p in demo if p.suffix == suffix)
    data = source.read_bytes()
    (music / f"cut{suffix}").write_bytes(data[: len(data) // 2])
    with capture_logs() as logs:
        scan_library(music)
    assert list(skipped(logs)) == [f"cut{suffix}"]


def test_a_cut_ogg_file_plays_what_is_left(music: Path, demo: list[Path]) -> None:
    """Ogg declares no total length, so a cut file is a valid shorter one; its duration is
    measured from the last page that survived."""
    source = next(p for p in demo if p.suffix == ".opus")
    data = source.read_bytes()
    cut = music / "cut.opus"
    cut.write_bytes(data[: len(data) // 2])
    (track,) = [t for t in scan_library(music) if t.path == cut]
    decoded = decoded_seconds(cut)
    assert 1.0 < decoded < decoded_seconds(source) - 1.0
    assert track.duration == pytest.approx(decoded, abs=0.1)


def test_hidden_files_and_the_manifest_are_ignored_silently(music: Path, demo: list[Path]) -> None:
    (music / ".hidden" / "deep").mkdir(parents=True)
    shutil.copy(demo[0], music / ".hidden" / "deep" / "track.mp3")
    shutil.copy(demo[0], music / ".dotfile.mp3")
    (music / "manifest.json").write_text("{}")
    with capture_logs() as logs:
        tracks = scan_library(music)
    assert len(tracks) == len(demo)
    assert skipped(logs) == {}


def test_untagged_file_falls_back_to_its_name(tmp_path: Path) -> None:
    write_tone(tmp_path / "field recording.flac", seconds=1.5, format="flac", codec="flac")
    (track,) = scan_library(tmp_path)
    assert (track.title, track.artist, track.album) == ("field recording", "Unknown artist", "")
    assert track.duration == pytest.approx(1.5, abs=0.01)


def test_duration_is_decoded_when_the_file_declares_none(tmp_path: Path) -> None:
    path = tmp_path / "live.mka"
    # Live Matroska is written as if streamed: no duration in the header, none at the end.
    write_tone(path, seconds=2.0, format="matroska", codec="libopus", live="1")
    with av.open(str(path)) as container:
        assert container.duration is None and container.streams.audio[0].duration is None
    (track,) = scan_library(tmp_path)
    assert track.duration == pytest.approx(2.0, abs=0.01)


def test_track_ids_depend_only_on_the_path_inside_the_library(music: Path, tmp_path: Path) -> None:
    moved = shutil.copytree(music, tmp_path / "elsewhere" / "music")
    here, there = scan_library(music), scan_library(moved)
    assert [t.track_id for t in here] == [t.track_id for t in there]
    assert len({t.track_id for t in here}) == len(here)
    assert all(len(t.track_id) == 12 and int(t.track_id, 16) >= 0 for t in here)


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(LibraryError) as error:
        scan_library(missing)
    assert str(error.value) == f"library path {missing} does not exist"


def test_a_file_is_not_a_library(tmp_path: Path) -> None:
    path = tmp_path / "song.mp3"
    path.write_text("")
    with pytest.raises(LibraryError) as error:
        scan_library(path)
    assert str(error.value) == f"library path {path} is not a folder"


def test_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LibraryError) as error:
        scan_library(tmp_path)
    assert (
        str(error.value) == f"library path {tmp_path} contains no playable audio files (0 skipped)"
    )


def test_folder_of_junk_counts_what_it_skipped(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("not music")
    (tmp_path / "empty.flac").write_bytes(b"")
    with capture_logs() as logs, pytest.raises(LibraryError) as error:
        scan_library(tmp_path)
    assert str(error.value).endswith("contains no playable audio files (2 skipped)")
    assert set(skipped(logs)) == {"readme.txt", "empty.flac"}


def test_only_a_file_silent_to_its_end_is_skipped_as_silent(tmp_path: Path) -> None:
    """Silence at the start and near the end proves nothing: a hidden track may follow a long
    gap. The scan decodes until the first sound, so only a file silent throughout is refused
    (the mixer would find nothing to play in it)."""
    rate = 44100
    gap = np.zeros((2, 25 * rate), dtype=np.float32)
    hidden = np.concatenate((gap, sound(1.0, rate), gap), axis=1)
    write_audio(tmp_path / "hidden track.flac", hidden, rate, container="flac", codec="flac")
    write_audio(tmp_path / "silence.flac", gap, rate, container="flac", codec="flac")
    with capture_logs() as logs:
        (track,) = scan_library(tmp_path)
    assert track.path.name == "hidden track.flac"
    assert track.duration == pytest.approx(51.0, abs=0.01)
    assert skipped(logs) == {"silence.flac": "silent: no sound above -60 dBFS"}


def test_a_folder_linked_in_is_scanned_once_and_a_loop_is_refused(tmp_path: Path) -> None:
    music, elsewhere = tmp_path / "music", tmp_path / "elsewhere"
    music.mkdir()
    elsewhere.mkdir()
    write_tone(elsewhere / "song.flac", seconds=1.0, format="flac", codec="flac")
    (music / "a").symlink_to(elsewhere)
    (music / "b").symlink_to(elsewhere)
    (music / "a-loop").symlink_to(music)
    with capture_logs() as logs:
        (track,) = scan_library(music)
    assert track.path == music / "a" / "song.flac"
    assert skipped(logs) == {
        "a-loop": "symlink loop: links to a folder above it",
        "b": "folder already scanned through another link",
    }
