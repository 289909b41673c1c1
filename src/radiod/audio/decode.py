"""Decode a file into PCM blocks in the session's format, trim its digital silence, and
open a playlist's tracks one ahead (`TrackSources`), skipping the ones that will not play.

Blocks are float32 numpy arrays shaped (channels, samples), what the mixer's numpy
arithmetic wants; `convert.BlockConverter` makes them views of the converted frames.
Every failure, whether the file cannot be opened or a packet is corrupt halfway through,
surfaces as one `DecodeError`, so the mixer has a single thing to catch.
"""

from __future__ import annotations

import itertools
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np

from radiod.audio.convert import Block, BlockConverter
from radiod.audio.loudness import apply_gain
from radiod.audio.outputs import FallbackStarted, NextChosen, Notice, TrackFailed, TracksFailed

if TYPE_CHECKING:
    from radiod.catalog import Catalog
    from radiod.library import Track

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

# When nothing can be played, play this much silence before asking the library again:
# listeners stay connected and the thread does not spin on broken files.
FALLBACK_SILENCE_SECONDS = 5.0
_SILENCE_BLOCK = 4096


class DecodeError(Exception):
    """A file could not be opened or decoded; the message is the reason to log."""


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
        converter = BlockConverter(
            sample_rate=sample_rate, channels=channels, block_size=DECODE_BLOCK
        )
        try:
            last: av.AudioFrame | None = None
            samples = 0
            for last in container.decode(stream):
                samples += last.samples
                yield from converter.convert(last)
            if last is not None and samples < DECODE_BLOCK and last.sample_rate != sample_rate:
                yield from converter.convert(_silence_like(last, RESAMPLER_PAD))
            yield from converter.convert(None)
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


# -- one track at a time, one opened ahead ------------------------------------------------
class TrackAudio:
    """A track's PCM blocks, decoded and trimmed; `track` is None for a gap of silence."""

    def __init__(self, track: Track | None, blocks: Iterator[Block]) -> None:
        self.track = track
        self._source = blocks
        self.blocks: Iterator[Block] = blocks

    def prepend(self, block: Block | None) -> None:
        """Put back samples read ahead (by a crossfade) so they are the next ones out."""
        if block is not None and block.shape[1]:
            self.blocks = itertools.chain((block,), self.blocks)

    def close(self) -> None:
        """Stop decoding (a skip): closes the file now rather than at garbage collection."""
        close = getattr(self._source, "close", None)
        if close is not None:
            close()


class TrackSources:
    """Iterator of `TrackAudio` over a playlist, one track opened ahead.

    Opening the next track as soon as the current one starts means the "next" announced
    with a TrackEvent has already proved it decodes, and a crossfade can begin without
    waiting on a file. A track that fails to open is reported (to the notices, and to the
    catalog, which leaves it out from then on) and the following one tried; a track that
    fails mid-way just ends early (after being reported). When nothing opens, silence.
    """

    def __init__(
        self,
        playlist: Iterator[Track | None],
        catalog: Catalog,
        *,
        sample_rate: int,
        channels: int,
        gains: Callable[[Track], float] | None = None,
    ) -> None:
        self._playlist = playlist
        self._gains = gains  # the loudness factor of each track (audio/loudness.py)
        self._catalog = catalog
        # Failures and other notices, in the order they happened, until the joiner passes
        # them down the chain (`drain`).
        self._notices: list[Notice] = []
        self.rate = sample_rate
        self._channels = channels
        self._ahead: TrackAudio | None = None
        self._in_fallback = False
        self.current: Track | None = None  # the track of the source handed out last

    def __iter__(self) -> TrackSources:
        return self

    def __next__(self) -> TrackAudio:
        current = self._ahead if self._ahead is not None else self._open_next()
        self._ahead = self._open_next()
        if current.track is None and self._ahead.track is not None:
            # Silence (the fallback) has no TrackEvent to carry the next track.
            self._notices.append(NextChosen(self._ahead.track))
        self.current = current.track
        return current

    def peek_track(self) -> Track | None:
        """The track that will come next (None when the next source is a silent gap)."""
        return self._ahead.track if self._ahead is not None else None

    def drain(self) -> list[Notice]:
        """The notices since the last call, oldest first."""
        notices, self._notices = self._notices, []
        return notices

    def close(self) -> None:
        """Close the file opened ahead (the pipeline is being rebuilt or stopped)."""
        if self._ahead is not None:
            self._ahead.close()

    def _open_next(self) -> TrackAudio:
        failures: list[TrackFailed] = []
        # Each track at most once per call: when all of them fail, it is time for silence.
        attempts = max(len(self._catalog.tracks()), 1)
        while len(failures) < attempts:
            track = next(self._playlist)
            if track is None:
                break
            try:
                audio = self._open(track)
            except Exception as exc:  # any broken file is skipped, never fatal
                failures.append(self._failed(track, exc))
                continue
            self._report(failures)
            self._in_fallback = False
            return audio
        self._report(failures)
        if not self._in_fallback:
            self._in_fallback = True
            reason = "every track failed" if failures else "the library is empty"
            self._notices.append(FallbackStarted(reason, FALLBACK_SILENCE_SECONDS))
        return TrackAudio(None, _silence(self._channels, self.rate))

    def _failed(self, track: Track, exc: Exception) -> TrackFailed:
        reason = _reason(exc)
        self._catalog.drop(track, reason)
        return TrackFailed(track, reason)

    def _report(self, failures: list[TrackFailed]) -> None:
        if len(failures) == 1:
            self._notices.append(failures[0])
        elif failures:
            self._notices.append(TracksFailed(tuple(failures)))

    def _open(self, track: Track) -> TrackAudio:
        blocks = trim_silence(
            decode_file(track.path, sample_rate=self.rate, channels=self._channels),
            sample_rate=self.rate,
        )
        gain = self._gains(track) if self._gains is not None else 1.0
        if gain != 1.0:
            blocks = apply_gain(blocks, gain)
        first = next(blocks, None)
        if first is None:
            raise DecodeError("no audible audio")
        return TrackAudio(track, self._guarded(track, first, blocks))

    def _guarded(self, track: Track, first: Block, blocks: Iterator[Block]) -> Iterator[Block]:
        yield first
        try:
            yield from blocks
        except Exception as exc:  # a bad packet ends the track, not the stream
            self._notices.append(self._failed(track, exc))


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, DecodeError) else f"{type(exc).__name__}: {exc}"


def _silence(channels: int, sample_rate: int) -> Iterator[Block]:
    total = int(FALLBACK_SILENCE_SECONDS * sample_rate)
    for start in range(0, total, _SILENCE_BLOCK):
        yield np.zeros((channels, min(_SILENCE_BLOCK, total - start)), dtype=np.float32)
