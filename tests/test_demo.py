"""The demo library: real, varied, tagged audio that first-time users and the tests rely on."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from structlog.testing import capture_logs

from radiod.demo import MANIFEST_NAME, default_demo_dir, generate_demo_library

SHORT = 6.0
EDGE_SILENCE = 0.3
AUDIBLE = 0.01  # -40 dBFS

Decoded = dict[Path, tuple[np.ndarray, int]]


def decode(path: Path) -> tuple[np.ndarray, int]:
    """The whole file as float32 stereo (channels, samples) and its sample rate."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout="stereo")
        chunks = [
            out.to_ndarray()
            for frame in container.decode(stream)
            for out in resampler.resample(frame)
        ]
        chunks += [out.to_ndarray() for out in resampler.resample(None)]
        return np.concatenate(chunks, axis=1), stream.codec_context.sample_rate


def tags(path: Path) -> dict[str, str]:
    with av.open(str(path)) as container:
        return {**container.streams.audio[0].metadata, **container.metadata}


def centroids(audio: np.ndarray, rate: int) -> np.ndarray:
    """Spectral centroid (Hz) of each 0.1 s window that is not silent."""
    mono = audio.mean(axis=0)
    size = rate // 10
    windows = mono[: mono.size // size * size].reshape(-1, size)
    windows = windows[np.sqrt((windows**2).mean(axis=1)) > 1e-3]
    power = np.abs(np.fft.rfft(windows * np.hanning(size), axis=1)) ** 2
    freqs = np.fft.rfftfreq(size, 1 / rate)
    return (power * freqs).sum(axis=1) / power.sum(axis=1)


def chroma(audio: np.ndarray, rate: int) -> np.ndarray:
    """Share of spectral power per pitch class (50 Hz-5 kHz), over the whole track."""
    mono = audio.mean(axis=0)
    power = np.abs(np.fft.rfft(mono)) ** 2
    freqs = np.fft.rfftfreq(mono.size, 1 / rate)
    band = (freqs > 50) & (freqs < 5000)
    pitch_class = np.round(12 * np.log2(freqs[band] / 440)).astype(int) % 12
    profile = np.bincount(pitch_class, weights=power[band], minlength=12)
    return profile / np.linalg.norm(profile)


@pytest.fixture(scope="module")
def short_demo(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return generate_demo_library(tmp_path_factory.mktemp("demo"), seconds=SHORT)


@pytest.fixture(scope="module")
def decoded(short_demo: list[Path]) -> Decoded:
    return {path: decode(path) for path in short_demo}


def test_six_tracks_in_mp3_flac_and_opus(short_demo: list[Path]) -> None:
    kinds = set()
    for path in short_demo:
        with av.open(str(path)) as container:
            kinds.add((container.format.name, container.streams.audio[0].codec_context.name))
    assert len(short_demo) >= 6
    assert {("mp3", "mp3float"), ("flac", "flac"), ("ogg", "opus")} <= kinds


def test_tracks_are_tagged_for_the_stream_metadata(short_demo: list[Path]) -> None:
    found = [tags(path) for path in short_demo]
    titles = [t["title"] for t in found]
    assert all(t["album"] == "radiod demo" and t["artist"] for t in found)
    assert len(set(titles)) == len(titles)
    # ICY metadata tests need a quote and a non-ASCII character to escape.
    assert {"Don't Stop", "Café Nocturne"} <= set(titles)


def test_every_track_decodes_to_the_requested_length(decoded: Decoded) -> None:
    for path, (audio, rate) in decoded.items():
        assert audio.shape[1] / rate == pytest.approx(SHORT, abs=0.1), path.name
        assert np.isfinite(audio).all() and np.abs(audio).max() < 1.0, path.name


def test_tracks_start_and_end_on_sound_or_on_exact_silence(decoded: Decoded) -> None:
    padded = []
    for path, (audio, rate) in decoded.items():
        edge = round(EDGE_SILENCE * rate)
        if not audio[:, 0].any():
            # The mixer's silence trimming needs exact zeros, not near-silence.
            assert not audio[:, :edge].any() and not audio[:, -edge:].any(), path.name
            audio = audio[:, edge:-edge]
            padded.append(path)
        window = rate // 20
        assert np.abs(audio[:, :window]).max() > AUDIBLE, path.name
        assert np.abs(audio[:, -window:]).max() > AUDIBLE, path.name
    assert 1 <= len(padded) <= 2
    assert all(path.suffix == ".flac" for path in padded)


def test_neighbouring_tracks_are_spectrally_distinct(decoded: Decoded) -> None:
    """Neighbours (in play order, wrapping around) never overlap in brightness: the brighter
    track's 10th-percentile centroid sits well above the darker one's 90th."""
    spectra = [centroids(audio, rate) for audio, rate in decoded.values()]
    for here, after in zip(spectra, spectra[1:] + spectra[:1], strict=True):
        dark, bright = sorted((here, after), key=np.median)
        assert np.percentile(bright, 10) > 1.5 * np.percentile(dark, 90)


def test_no_two_tracks_share_a_key(decoded: Decoded) -> None:
    profiles = [chroma(audio, rate) for audio, rate in decoded.values()]
    for i, a in enumerate(profiles):
        for b in profiles[i + 1 :]:
            assert float(a @ b) < 0.9


def test_generation_is_deterministic(short_demo: list[Path], tmp_path: Path) -> None:
    again = generate_demo_library(tmp_path, seconds=SHORT)
    assert [p.name for p in again] == [p.name for p in short_demo]
    for first, second in zip(short_demo, again, strict=True):
        assert first.read_bytes() == second.read_bytes(), first.name


def test_second_call_reuses_a_complete_set(short_demo: list[Path]) -> None:
    before = [p.stat().st_mtime_ns for p in short_demo]
    with capture_logs() as logs:
        again = generate_demo_library(short_demo[0].parent, seconds=SHORT)
    assert again == short_demo
    assert [p.stat().st_mtime_ns for p in again] == before
    assert [e["event"] for e in logs] == ["demo.reused"]


def test_a_damaged_set_is_regenerated(short_demo: list[Path], tmp_path: Path) -> None:
    paths = generate_demo_library(tmp_path, seconds=SHORT)
    victim = paths[2]
    victim.write_bytes(victim.read_bytes()[:1000])
    with capture_logs() as logs:
        generate_demo_library(tmp_path, seconds=SHORT)
    assert victim.read_bytes() == short_demo[2].read_bytes()
    assert [e["event"] for e in logs] == ["demo.generated"]
    # Temporary files are dotfiles; none may survive.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [p.name for p in paths] + [MANIFEST_NAME]
    )


def test_a_different_length_is_regenerated(tmp_path: Path) -> None:
    generate_demo_library(tmp_path, seconds=SHORT)
    paths = generate_demo_library(tmp_path, seconds=3.0)
    audio, rate = decode(paths[0])
    assert audio.shape[1] / rate == pytest.approx(3.0, abs=0.1)


def test_default_lengths_suit_crossing_track_boundaries(tmp_path: Path) -> None:
    with capture_logs() as logs:
        paths = generate_demo_library(tmp_path)
    lengths = [audio.shape[1] / rate for audio, rate in map(decode, paths)]
    assert all(20.0 <= length <= 60.0 for length in lengths)
    assert len(set(lengths)) > 1
    (event,) = logs
    assert event["event"] == "demo.generated"
    assert event["count"] == len(paths) and event["dest"] == str(tmp_path)


def test_too_short_a_length_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"at least 1\.0"):
        generate_demo_library(tmp_path, seconds=0.5)


def test_default_dir_follows_xdg_cache_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_demo_dir() == tmp_path / "radiod" / "demo"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/invalid")
    assert default_demo_dir() == Path.home() / ".cache" / "radiod" / "demo"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_demo_dir() == Path.home() / ".cache" / "radiod" / "demo"
