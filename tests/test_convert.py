"""Decoded blocks: the one-thread conversion graph (audio/convert.py) against PyAV's own."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest

from radiod.audio.decode import DECODE_BLOCK, decode_file


def _threads() -> set[str]:
    """This process's threads by id: a thread of an earlier test ending meanwhile (a mixer's
    scheduler exits when idle) must not count, only one started here."""
    return set(os.listdir("/proc/self/task"))


def _reference(path: Path, rate: int) -> np.ndarray:
    """The file through PyAV's AudioResampler, as decode_file did before owning its graph."""
    resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
    with av.open(str(path)) as container:
        frames = [out for frame in container.decode(audio=0) for out in resampler.resample(frame)]
    frames += resampler.resample(None)
    return np.concatenate([frame.to_ndarray() for frame in frames], axis=1)


@pytest.mark.parametrize("suffix", [".flac", ".mp3", ".opus"])
def test_blocks_equal_pyavs_resampler_sample_for_sample(demo_library: Path, suffix: str) -> None:
    """Same FFmpeg conversion, other packing: the samples must not change (44.1 kHz files are
    only converted, Opus at 48 kHz is also resampled)."""
    path = next(p for p in sorted(demo_library.iterdir()) if p.suffix == suffix)
    blocks = list(decode_file(path, sample_rate=44100, channels=2))
    assert all(b.dtype == np.float32 and b.shape[0] == 2 for b in blocks)
    assert all(b.shape[1] == DECODE_BLOCK for b in blocks[:-1])
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), _reference(path, 44100))


def test_decoding_starts_no_threads(demo_library: Path) -> None:
    """PyAV's AudioResampler started two idle filter threads per open file (~6 per session);
    the graph decode_file owns runs in the caller's thread."""
    before = _threads()
    # Several files open at once, as a session holds its current track and the next.
    paths = [p for p in sorted(demo_library.iterdir()) if p.suffix in (".flac", ".mp3")]
    open_files = [decode_file(p, sample_rate=48000, channels=2) for p in paths]
    for blocks in open_files:
        next(blocks)
    assert _threads() - before == set()
