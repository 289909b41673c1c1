"""Even loudness: how loud a track is (its ReplayGain tag, or an EBU R128 measurement) and the
one gain factor that brings it to the station's target without clipping.

A listener should not reach for the volume between tracks. Every track is played at
`audio.loudness_target` LUFS: the gain is `target - loudness`, lowered when it would push
the track's true peak above `audio.loudness_true_peak` dBTP (a quiet track with sharp peaks
stays a little under the target rather than clip), and never a boost beyond `MAX_BOOST_DB`.

Where the loudness comes from, first found wins: the file's ReplayGain track gain (what the
user's tagger decided; ID3 TXXX, Vorbis/FLAC comments, APE), Opus' R128_TRACK_GAIN, then
this server's own measurement (`loudness_sweep` measures in the background and keeps it in
`loudness_cache`). A track known by none of them plays at unity until it is measured.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
from av.filter import Graph

from radiod.audio.loudness_cache import LoudnessCache, file_signature

if TYPE_CHECKING:
    from radiod.audio.decode import Block
    from radiod.config import AudioConfig
    from radiod.library import Track

# ReplayGain 2.0 gains are relative to -18 LUFS; Opus R128 gains (RFC 7845) to -23 LUFS.
REPLAYGAIN_REFERENCE_LUFS = -18.0
R128_REFERENCE_LUFS = -23.0
# A near-silent recording would otherwise be raised by 40 dB and its noise with it; players
# that honour ReplayGain clamp the same way.
MAX_BOOST_DB = 20.0
# The measurement runs at one layout and rate, whatever the file's: stereo is what sessions
# play by default, and 48 kHz is where the ebur128 filter's true-peak oversampling is exact.
MEASURE_RATE = 48000
MEASURE_BLOCK = 8192

_GAIN_RE = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*(?:dB)?\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Loudness:
    """How loud a track is: integrated loudness (LUFS) and, when known, its true peak (dBTP)."""

    lufs: float
    true_peak: float | None = None


class MeasureError(Exception):
    """A file's loudness could not be measured; the message is the reason to log."""


def tagged_loudness(tags: Mapping[str, str]) -> Loudness | None:
    """The loudness a file's tags state, or None. `tags` has lower-cased keys (library scan)."""
    gain = _parse_gain(tags.get("replaygain_track_gain"))
    if gain is not None:
        peak = _parse_peak(tags.get("replaygain_track_peak"))
        return Loudness(REPLAYGAIN_REFERENCE_LUFS - gain, peak)
    r128 = tags.get("r128_track_gain")
    if r128 is not None and re.fullmatch(r"\s*[+-]?\d+\s*", r128):
        # Q7.8 fixed point: a gain in 1/256 dB.
        return Loudness(R128_REFERENCE_LUFS - int(r128) / 256)
    return None


def _parse_gain(text: str | None) -> float | None:
    match = _GAIN_RE.match(text or "")
    if match is None:
        return None
    value = float(match.group(1))
    return value if abs(value) <= 60 else None  # beyond that it is a broken tag, not a gain


def _parse_peak(text: str | None) -> float | None:
    try:
        peak = float(text or "")
    except ValueError:
        return None
    return 20 * math.log10(peak) if 0 < peak < 100 else None


def gain_factor(loudness: Loudness | None, *, target: float, ceiling: float) -> float:
    """The linear factor that brings `loudness` to `target` LUFS, its peak under `ceiling` dBTP."""
    if loudness is None:
        return 1.0
    gain = min(target - loudness.lufs, MAX_BOOST_DB)
    if loudness.true_peak is not None:
        gain = min(gain, ceiling - loudness.true_peak)
    return 10 ** (gain / 20)


class TrackGains:
    """`gains(track)`: the factor a mixer applies to a track's samples as it opens it.

    Reads the cache file on every call (a track opens every few minutes per session), so a
    measurement finished by the sweep in another thread or process counts from the next play.
    """

    def __init__(self, audio: AudioConfig) -> None:
        self._target = audio.loudness_target
        self._ceiling = audio.loudness_true_peak
        self._cache = LoudnessCache(audio.loudness_cache)

    def __call__(self, track: Track) -> float:
        cached = self._cache.get(track.path, file_signature(track.path))
        measured = Loudness(*cached) if cached is not None else None
        loudness = track.replaygain or measured
        if loudness is not None and loudness.true_peak is None and measured is not None:
            loudness = Loudness(loudness.lufs, measured.true_peak)  # a tag without a peak
        return gain_factor(loudness, target=self._target, ceiling=self._ceiling)


def track_gains(audio: AudioConfig) -> TrackGains | None:
    """The session's gain lookup, or None when `audio.loudness` is off."""
    return TrackGains(audio) if audio.loudness else None


def apply_gain(blocks: Iterator[Block], gain: float) -> Iterator[Block]:
    """`blocks` scaled by `gain` (a generator, so a skip's close reaches the decoder)."""
    factor = np.float32(gain)
    try:
        for block in blocks:
            yield block * factor
    finally:
        close = getattr(blocks, "close", None)
        if close is not None:
            close()


def measure_blocks(blocks: Iterable[Block], *, sample_rate: int) -> Loudness:
    """EBU R128 integrated loudness and true peak of float32 planar blocks (1 or 2 channels).

    FFmpeg's `ebur128` filter does the measuring (K-weighting, gating, 4x oversampled true
    peak); it reports the running figures as metadata on every frame it passes on, so the
    last frame's are the whole signal's.
    """
    graph: Graph | None = None
    figures: dict[str, str] = {}
    pts = 0
    for block in blocks:
        if not block.shape[1]:
            continue
        layout = "mono" if block.shape[0] == 1 else "stereo"
        if graph is None:
            graph = _ebur128_graph(sample_rate, layout)
        samples = np.ascontiguousarray(block)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=layout)
        frame.sample_rate, frame.pts = sample_rate, pts
        pts += block.shape[1]
        graph.push(frame)
        figures = _pull_figures(graph, figures)
    if graph is None:
        raise MeasureError("no audio to measure")
    graph.push(None)
    figures = _pull_figures(graph, figures)
    return _loudness_from(figures)


def _ebur128_graph(sample_rate: int, layout: str) -> Graph:
    graph = Graph()
    source = graph.add_abuffer(format="fltp", sample_rate=sample_rate, layout=layout)
    meter = graph.add("ebur128", "metadata=1:peak=true")
    sink = graph.add("abuffersink")
    source.link_to(meter)
    meter.link_to(sink)
    graph.configure()
    return graph


def _pull_figures(graph: Graph, figures: dict[str, str]) -> dict[str, str]:
    while True:
        try:
            frame = graph.pull()
        except (av.BlockingIOError, av.EOFError):
            return figures
        figures = dict(frame.metadata) or figures


def _loudness_from(figures: Mapping[str, str]) -> Loudness:
    try:
        lufs = float(figures["lavfi.r128.I"])
        peak = float(figures["lavfi.r128.true_peak"])
    except (KeyError, ValueError):
        raise MeasureError("the meter reported nothing") from None
    if not math.isfinite(lufs) or lufs <= -70:  # -70: nothing passed the absolute gate
        raise MeasureError("too quiet to measure (below the -70 LUFS gate)")
    return Loudness(round(lufs, 2), round(20 * math.log10(peak), 2) if peak > 0 else None)


def measure_file(path: Path) -> Loudness:
    """Decode `path` and measure it; `MeasureError` when it cannot be."""
    try:
        with av.open(str(path), metadata_errors="replace") as container:
            if not container.streams.audio:
                raise MeasureError("no audio stream")
            return measure_blocks(_decoded(container), sample_rate=MEASURE_RATE)
    except (av.FFmpegError, OSError, ValueError, MemoryError) as exc:
        raise MeasureError(f"cannot decode: {exc}") from None


def _decoded(container: av.container.InputContainer) -> Iterator[Block]:
    resampler = av.AudioResampler(
        format="fltp", layout="stereo", rate=MEASURE_RATE, frame_size=MEASURE_BLOCK
    )
    for frame in container.decode(container.streams.audio[0]):
        for out in resampler.resample(frame):
            yield out.to_ndarray()
    for out in resampler.resample(None):
        yield out.to_ndarray()
