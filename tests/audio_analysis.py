"""Measure, from the audio alone, where one track hands over to the next.

The mixer says when each track becomes audible (mid-crossfade). To check that claim
independently, the decoded stream is compared with the source files themselves: each
track's own decoded audio is located in the stream by cross-correlation, then every
short window of the stream is fitted as `a * outgoing + b * incoming`. The handover is
where the fitted gains are equal, which for an equal-power crossfade is its middle and
for a gapless join is the join. Fitting gains of the actual waveforms makes the result
independent of how loud or how bright each track is.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

WINDOW_SECONDS = 0.02


def decode_mono(path: Path, rate: int) -> np.ndarray:
    """A whole file as mono float samples at `rate` (resampled with PyAV like the mixer)."""
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=rate)
    blocks = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            blocks.extend(out.to_ndarray()[0] for out in resampler.resample(frame))
    blocks.extend(out.to_ndarray()[0] for out in resampler.resample(None))
    return np.concatenate(blocks)


def _candidates(segment: np.ndarray, reference: np.ndarray, count: int = 8) -> list[int]:
    """Offsets in `reference` where `segment` matches best (normalised cross-correlation).

    Several, because synthesised music repeats bar for bar: the right one is chosen by
    how well the whole handover then fits.
    """
    size = 1 << int(np.ceil(np.log2(len(reference) + len(segment))))
    corr = np.fft.irfft(np.fft.rfft(reference, size) * np.conj(np.fft.rfft(segment, size)), size)
    corr = corr[: len(reference) - len(segment) + 1]
    energy = np.convolve(reference**2, np.ones(len(segment)), mode="valid")
    score = corr / np.sqrt(energy + 1e-9)
    picked: list[int] = []
    for offset in np.argsort(score)[::-1]:
        if all(abs(offset - p) > len(segment) // 10 for p in picked):
            picked.append(int(offset))
        if len(picked) == count:
            break
    return picked


def _aligned(reference: np.ndarray, start: int, length: int) -> np.ndarray:
    """`reference` placed so that its sample 0 lands at stream sample `start` (zero-padded)."""
    out = np.zeros(length)
    lo, hi = max(start, 0), min(start + len(reference), length)
    if hi > lo:
        out[lo:hi] = reference[lo - start : hi - start]
    return out


def _fit(
    stream: np.ndarray, a: np.ndarray, b: np.ndarray, size: int, first: int, last: int
) -> tuple[float, list[float]]:
    """Per window, the incoming track's share of the two fitted gains; and the residual."""
    residual, shares = 0.0, []
    for index in range(first, last):
        span = slice(index * size, (index + 1) * size)
        basis = np.stack([a[span], b[span]], axis=1)
        gains, *_ = np.linalg.lstsq(basis, stream[span], rcond=None)
        residual += float(np.sum((stream[span] - basis @ gains) ** 2))
        gain_a, gain_b = abs(gains[0]), abs(gains[1])
        shares.append(gain_b / (gain_a + gain_b + 1e-12))
    return residual, shares


def handover_time(
    stream: np.ndarray, rate: int, near: float, outgoing: np.ndarray, incoming: np.ndarray
) -> float:
    """When (stream seconds) `incoming` takes over from `outgoing`, searched near `near`.

    Args:
        stream: mono samples of what the listener received.
        near: a rough time (within ~1 s); the tracks must play solo 1.5-2.5 s either side.
        outgoing, incoming: the two tracks' own mono samples at `rate`.
    """
    probe = int(rate * 0.5)
    before = int((near - 2.5) * rate)
    after = int((near + 2.0) * rate)
    size = int(rate * WINDOW_SECONDS)
    first, last = int((near - 2.0) * rate) // size, int((near + 2.0) * rate) // size
    best: tuple[float, list[float]] | None = None
    for a_offset in _candidates(stream[before : before + probe], outgoing):
        for b_offset in _candidates(stream[after : after + probe], incoming):
            a = _aligned(outgoing, before - a_offset, len(stream))
            b = _aligned(incoming, after - b_offset, len(stream))
            residual, shares = _fit(stream, a, b, size, first, last)
            if best is None or residual < best[0]:
                best = (residual, shares)
    assert best is not None
    times = [(index + 0.5) * WINDOW_SECONDS for index in range(first, last)]
    shares = best[1]
    t, share = np.array(times), np.array(shares)
    crossings = np.nonzero((share[:-1] < 0.5) & (share[1:] >= 0.5))[0]
    if len(crossings) == 0:
        raise AssertionError(f"no handover found near {near:.2f} s")
    best = crossings[np.argmin(np.abs(t[crossings] - near))]
    frac = (0.5 - share[best]) / (share[best + 1] - share[best])
    return float(t[best] + frac * WINDOW_SECONDS)
