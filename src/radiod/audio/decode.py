"""Decode a file into PCM blocks in the session's format, and trim its digital silence.

Blocks are float32 numpy arrays shaped (channels, samples): planar float is what the
mixer's numpy arithmetic wants and what `av.AudioResampler` hands back without a copy.
Every failure, whether the file cannot be opened or a packet is corrupt halfway through,
surfaces as one `DecodeError`, so the mixer has a single thing to catch.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

import av
import numpy as np

# -60 dBFS: below this a sample is "digital silence" for trimming track ends. Quieter than
# any musical fade worth hearing, louder than dither noise of 16-bit masters (~-90 dBFS).
SILENCE_THRESHOLD = 10 ** (-60 / 20)
# Silence inside a track is held back (it may turn out to be the track's end). Past this
# much it is let through, so a long silent gap before a hidden track cannot grow memory.
MAX_HELD_SILENCE_SECONDS = 20.0

# Samples per block out of the decoder. Codec frames are small (MP3 1152, Opus 960); every
# block costs the Python stages after it a few microseconds, so the resampler (in C)
# regroups them. 4096 samples = 93 ms at 44.1 kHz: fine-grained enough for a skip.
DECODE_BLOCK = 4096

# When the rate changes, FFmpeg's resampler holds back about one filter length of output
# (measured: ~16 samples at 44.1 -> 48 kHz, ~27 at 96 -> 22.05 kHz) and, for a file shorter
# than that, flushes none of it: a 10-sample sound effect came out as nothing at 48 kHz. Digital
# silence after a short file's end pushes its sound through; `trim_silence` drops it again.
RESAMPLER_PAD = 1024

Block = np.ndarray  # float32, shape (channels, samples)


class DecodeError(Exception):
    """A file could not be opened or decoded; the message is the reason to log."""


def _layout(channels: int) -> str:
    return "mono" if channels == 1 else "stereo"


def decode_file(path: Path, *, sample_rate: int, channels: int) -> Iterator[Block]:
    """Yield the first audio stream of `path` as float32 planar blocks.

    Args:
        path: any file FFmpeg can read.
        sample_rate: the session's rate; the file is resampled to it.
        channels: 1 or 2; the file is down- or up-mixed to it.

    Raises:
        DecodeError: when opening, demuxing, decoding or resampling fails, at whatever
            point of the file that happens.
    """
    try:
        # The library may have changed since its scan: opening a FIFO would block the mixer
        # thread until something writes to it, which may be never.
        if not stat.S_ISREG(path.stat().st_mode):
            raise DecodeError("cannot open: not a regular file")
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise DecodeError(f"cannot open: {exc}") from None
    with container:
        if not container.streams.audio:
            raise DecodeError("no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(
            format="fltp", layout=_layout(channels), rate=sample_rate, frame_size=DECODE_BLOCK
        )
        try:
            last: av.AudioFrame | None = None
            samples = 0
            for last in container.decode(stream):
                samples += last.samples
                for out in resampler.resample(last):
                    yield out.to_ndarray()
            if last is not None and samples < DECODE_BLOCK and last.sample_rate != sample_rate:
                resampler.resample(_silence_like(last, RESAMPLER_PAD))
            for out in resampler.resample(None):
                yield out.to_ndarray()
        except (av.FFmpegError, OSError, ValueError, MemoryError) as exc:
            raise DecodeError(f"decode failed: {exc}") from None


def _silence_like(frame: av.AudioFrame, samples: int) -> av.AudioFrame:
    """`samples` of digital silence in `frame`'s format, layout and rate."""
    pad = av.AudioFrame(format=frame.format.name, layout=frame.layout.name, samples=samples)
    zero = b"\x80" if frame.format.name.startswith("u8") else b"\x00"  # u8 is offset binary
    for plane in pad.planes:
        plane.update(zero * plane.buffer_size)
    pad.sample_rate = frame.sample_rate
    return pad


def trim_silence(
    blocks: Iterable[Block],
    *,
    sample_rate: int,
    threshold: float = SILENCE_THRESHOLD,
) -> Iterator[Block]:
    """Drop leading and trailing samples quieter than `threshold` on every channel.

    Silence in the middle is passed on unchanged (held back until sound resumes, since
    until then it may be the end). A stage of its own so gapless joins and crossfades
    work on what is audible.
    """
    max_held = int(MAX_HELD_SILENCE_SECONDS * sample_rate)
    held: list[Block] = []
    held_samples = 0
    started = False
    for block in blocks:
        if block.shape[1] == 0:
            continue
        if started and np.abs(block[:, -1]).max() > threshold:
            # The common case in music: the block ends loud, nothing to hold back.
            if held:
                yield from held
                held, held_samples = [], 0
            yield block
            continue
        loud = np.abs(block).max(axis=0) > threshold
        if not started:
            first = int(loud.argmax())
            if not loud[first]:
                continue
            started = True
            block, loud = block[:, first:], loud[first:]
            if loud[-1]:
                yield block
                continue
        last = len(loud) - 1 - int(loud[::-1].argmax())
        if loud[last]:
            yield from held
            held, held_samples = [], 0
            yield block[:, : last + 1]
            block = block[:, last + 1 :]
        held.append(block)
        held_samples += block.shape[1]
        if held_samples > max_held:
            yield from held
            held, held_samples = [], 0
