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
    power = np.concatenate([[0.0], np.cumsum(reference**2)])
    energy = power[len(segment) :] - power[: -len(segment)]
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
) -> tuple[float, np.ndarray]:
    """Per window, the incoming track's share of the two fitted gains; and the residual.

    Each window's least-squares gains come from its 2x2 normal equations, all at once.
    """
    span = slice(first * size, last * size)
    s, x, y = (v[span].reshape(-1, size) for v in (stream, a, b))
    xx, yy, xy = (x * x).sum(1), (y * y).sum(1), (x * y).sum(1)
    xs, ys = (x * s).sum(1), (y * s).sum(1)
    det = xx * yy - xy * xy
    safe = np.where(np.abs(det) > 1e-12, det, np.inf)
    gain_a = np.where(yy > 0, (yy * xs - xy * ys) / safe, 0.0)
    gain_b = np.where(xx > 0, (xx * ys - xy * xs) / safe, 0.0)
    # Where one track is absent the system is singular: fit the other alone.
    lone_a, lone_b = (yy <= 1e-12) & (xx > 1e-12), (xx <= 1e-12) & (yy > 1e-12)
    gain_a = np.where(lone_a, xs / np.where(xx > 0, xx, 1), gain_a)
    gain_b = np.where(lone_b, ys / np.where(yy > 0, yy, 1), gain_b)
    fitted = gain_a[:, None] * x + gain_b[:, None] * y
    residual = float(((s - fitted) ** 2).sum())
    gain_a, gain_b = np.abs(gain_a), np.abs(gain_b)
    return residual, gain_b / (gain_a + gain_b + 1e-12)


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
    best: tuple[float, np.ndarray] | None = None
    for a_offset in _candidates(stream[before : before + probe], outgoing):
        for b_offset in _candidates(stream[after : after + probe], incoming):
            a = _aligned(outgoing, before - a_offset, len(stream))
            b = _aligned(incoming, after - b_offset, len(stream))
            residual, shares = _fit(stream, a, b, size, first, last)
            if best is None or residual < best[0]:
                best = (residual, shares)
    assert best is not None
    t = (np.arange(first, last) + 0.5) * WINDOW_SECONDS
    share = best[1]
    crossings = np.nonzero((share[:-1] < 0.5) & (share[1:] >= 0.5))[0]
    if len(crossings) == 0:
        raise AssertionError(f"no handover found near {near:.2f} s")
    at = crossings[np.argmin(np.abs(t[crossings] - near))]
    frac = (0.5 - share[at]) / (share[at + 1] - share[at])
    return float(t[at] + frac * WINDOW_SECONDS)
