"""A session's pipeline: playlist → decode → trim → join → encode → chunks, unpaced.

The pipeline is a chain of generators in the manner of Liquidsoap's operators:

    shuffled_playlist (catalog.py) → TrackSources (decode.py: decode + trim, one ahead)
        → crossfade | gapless (PCM blocks, TrackMarks and notices) → supervised
        → encode_chunks (Chunks, TrackEvents and notices)

`mix()` composes them into one unpaced iterator of `Output`s; the benchmark drives it
directly and `runner.Mixer` drives it from a thread at the speed of the wall clock.
Everything a stage has to say travels down the chain in stream order, as items among
the PCM blocks.

Times are stream times: seconds of audio since the session's stream began, counted from
samples, as the listener's decoder outputs them.
"""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from traceback import format_exception
from typing import TYPE_CHECKING

import numpy as np

from radiod.audio.decode import Block, TrackAudio, TrackSources
from radiod.audio.encode import EncodedFrame, Encoder, create_encoder
from radiod.audio.loudness import track_gains
from radiod.audio.outputs import Header, MixerGaveUp, Notice, Output, PipelineFailed, TrackEvent
from radiod.audio.ring import Chunk
from radiod.catalog import Catalog, as_catalog, shuffled_playlist
from radiod.config import AudioConfig

if TYPE_CHECKING:
    from radiod.library import Track

# DESIGN §7: fan-out in batches of ~250 ms of audio.
CHUNK_SECONDS = 0.25
# A skip fades the current track out over this long while the next fades in: long enough
# not to click, short enough to feel immediate.
SKIP_FADE_SECONDS = 0.06
# A join that raises is rebuilt without the track it was playing; this many failures within
# this much stream time mean something is wrong beyond one file, and the session ends so
# its clients restart cleanly rather than hear a stream that keeps breaking.
CRASH_LIMIT = 3
CRASH_WINDOW_SECONDS = 30.0
# A crossfade takes at most this share of a track at each end (see `_fade_share`).
MAX_FADE_SHARE = 1 / 3


# -- stage: join tracks (crossfade or gapless) ------------------------------------------
@dataclass(frozen=True, slots=True)
class TrackMark:
    """In a PCM stream: the samples after this mark are where `track` becomes audible."""

    track: Track
    next_track: Track | None


# Down the chain: audio, where tracks start, and what happened on the way.
Pcm = Block | TrackMark | Notice


class _SampleQueue:
    """FIFO of PCM blocks, popped by sample count without copying whole blocks."""

    def __init__(self) -> None:
        self._blocks: deque[Block] = deque()
        self.size = 0

    def push(self, block: Block) -> None:
        if block.shape[1]:
            self._blocks.append(block)
            self.size += block.shape[1]

    @property
    def first_size(self) -> int:
        return self._blocks[0].shape[1] if self._blocks else 0

    def pop_first(self) -> Block:
        block = self._blocks.popleft()
        self.size -= block.shape[1]
        return block

    def pop_blocks(self, n: int) -> list[Block]:
        """Up to `n` samples (none for n <= 0) as the blocks they came in, the last one cut."""
        out: list[Block] = []
        n = max(0, min(n, self.size))
        self.size -= n
        while n > 0:
            block = self._blocks[0]
            if block.shape[1] <= n:
                out.append(self._blocks.popleft())
                n -= block.shape[1]
            else:
                out.append(block[:, :n])
                self._blocks[0] = block[:, n:]
                n = 0
        return out

    def pop(self, n: int, channels: int) -> Block:
        blocks = self.pop_blocks(n)
        if not blocks:
            return np.zeros((channels, 0), dtype=np.float32)
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)

    def clear(self) -> None:
        self._blocks.clear()
        self.size = 0


def _take(blocks: Iterator[Block], n: int, channels: int) -> tuple[Block, Block | None]:
    """Up to `n` samples from `blocks` (fewer if it ends), and the rest of the last block."""
    queue = _SampleQueue()
    for block in blocks:
        queue.push(block)
        if queue.size >= n:
            break
    taken = queue.pop(n, channels)
    rest = queue.pop(queue.size, channels) if queue.size else None
    return taken, rest


def _transition(outgoing: Block, incoming: Block, mark: TrackMark | None) -> Iterator[Pcm]:
    """Equal-power crossfade of two equally long blocks, `mark` at its middle.

    cos/sin gains keep the summed power constant for uncorrelated material, so the level
    does not dip mid-fade the way a linear fade does.
    """
    n = outgoing.shape[1]
    if incoming.shape[1] < n:
        pad = np.zeros((incoming.shape[0], n - incoming.shape[1]), dtype=np.float32)
        incoming = np.concatenate((incoming, pad), axis=1)
    if n:
        phase = (np.arange(n, dtype=np.float32) + 0.5) * np.float32(math.pi / 2 / n)
        mixed = outgoing * np.cos(phase) + incoming * np.sin(phase)
        yield mixed[:, : n // 2]
    if mark is not None:
        yield mark
    if n:
        yield mixed[:, n // 2 :]


def _skip_transition(
    current: TrackAudio,
    queued: _SampleQueue,
    sources: TrackSources,
    *,
    skip_len: int,
    channels: int,
) -> Generator[Pcm, None, TrackAudio]:
    """Fade the current track out over `skip_len` samples into the next track's start."""
    outgoing = queued.pop(skip_len, channels)
    if outgoing.shape[1] < skip_len:
        more, _ = _take(current.blocks, skip_len - outgoing.shape[1], channels)
        outgoing = np.concatenate((outgoing, more), axis=1)
    queued.clear()
    current.close()
    return (yield from _join_next(outgoing, sources, channels=channels, fade_limit=skip_len))


def _join_next(
    outgoing: Block, sources: TrackSources, *, channels: int, fade_limit: int
) -> Generator[Pcm, None, TrackAudio]:
    """Open the next source, crossfade `outgoing`'s tail into its start; leave the rest queued.

    The fade is as long as `outgoing`, shortened when the incoming track is short (its share
    of `fade_limit`, or simply all it has): then the head of `outgoing` plays unfaded, so a
    one-second jingle is heard at full level instead of only ever fading in. Yields the PCM,
    and finally returns the next source through `StopIteration.value`.
    """
    incoming_source = next(sources)
    yield from sources.drain()
    limit = min(outgoing.shape[1], _fade_share(incoming_source.track, fade_limit, sources.rate))
    incoming, rest = _take(incoming_source.blocks, limit, channels)
    incoming_source.prepend(rest)
    overlap = incoming.shape[1]
    if overlap < outgoing.shape[1]:
        yield outgoing[:, : outgoing.shape[1] - overlap]
        outgoing = outgoing[:, outgoing.shape[1] - overlap :]
    mark = None
    if incoming_source.track is not None:
        mark = TrackMark(incoming_source.track, sources.peek_track())
    yield from _transition(outgoing, incoming, mark)
    return incoming_source


def _fade_share(track: Track | None, fade_len: int, rate: int) -> int:
    """The longest fade a track takes at either end: at most a third of its length, so a
    short track (a jingle, an intro) is mostly heard at full level. Silence takes any."""
    if track is None:
        return fade_len
    return min(fade_len, int(track.duration * rate * MAX_FADE_SHARE))


def crossfade(
    sources: TrackSources,
    *,
    seconds: float,
    sample_rate: int,
    channels: int,
    skip: threading.Event,
) -> Iterator[Pcm]:
    """Join tracks with an equal-power crossfade of `seconds` (shorter for short tracks).

    The last `seconds` (and up to one block more) of the current track are held back,
    since only the end of its blocks tells where the fade must begin.
    """
    fade_len = round(seconds * sample_rate)
    skip_len = round(SKIP_FADE_SECONDS * sample_rate)
    current = next(sources)
    yield from sources.drain()
    if current.track is not None:
        yield TrackMark(current.track, sources.peek_track())
    held = _SampleQueue()
    while True:
        skipped = False
        hold = _fade_share(current.track, fade_len, sample_rate)
        for block in current.blocks:
            held.push(block)
            # Whole blocks only: splitting one per push would double the encoder's calls.
            while held.size > hold and held.size - held.first_size >= hold:
                yield held.pop_first()
            if skip.is_set():
                skip.clear()
                skipped = True
                break
        if skipped:
            transition = _skip_transition(
                current, held, sources, skip_len=skip_len, channels=channels
            )
        else:
            yield from held.pop_blocks(held.size - hold)
            transition = _join_next(
                held.pop(held.size, channels), sources, channels=channels, fade_limit=fade_len
            )
        current = yield from transition


def gapless(
    sources: TrackSources,
    *,
    sample_rate: int,
    channels: int,
    skip: threading.Event,
) -> Iterator[Pcm]:
    """Join tracks end to start, sample-exact (after trimming their silence): a crossfade of
    length zero, so the two share one skip path."""
    return crossfade(sources, seconds=0.0, sample_rate=sample_rate, channels=channels, skip=skip)


# -- stage: encode into chunks ----------------------------------------------------------
def encode_chunks(
    pcm: Iterator[Pcm],
    encoder: Encoder,
    *,
    chunk_seconds: float = CHUNK_SECONDS,
    first_seq: int = 0,
    time_offset: float = 0.0,
) -> Iterator[Chunk | TrackEvent | Notice]:
    """Encode PCM into Chunks of ~`chunk_seconds`, turning TrackMarks into TrackEvents.

    A chunk also ends at the codec frame boundary nearest each track's start: the chunk
    that follows carries the TrackEvent (`Chunk.track_start`, where ICY titles change),
    which is also yielded right before it (now playing). Notices pass straight through.
    """
    rate = encoder.sample_rate
    chunk_samples = round(chunk_seconds * rate)
    position = 0  # input samples consumed
    marks: deque[tuple[int, TrackMark]] = deque()
    frames: list[EncodedFrame] = []
    frames_samples = 0
    seq = first_seq
    starting: TrackEvent | None = None  # the track audible from the next chunk's start

    def cut() -> Chunk:
        """The frames so far as the next chunk; the next one starts empty."""
        nonlocal frames, frames_samples, seq, starting
        start = max(encoder.stream_samples(frames[0].pts), 0)
        end = encoder.stream_samples(frames[-1].pts + frames[-1].samples)
        chunk = Chunk(
            seq=seq,
            stream_time=time_offset + start / rate,
            duration=(end - start) / rate,
            data=encoder.pack(frames),
            track_start=starting,
        )
        frames, frames_samples, seq, starting = [], 0, seq + 1, None
        return chunk

    for item in pcm:
        if isinstance(item, TrackMark):
            marks.append((position, item))
            continue
        if not isinstance(item, np.ndarray):
            yield item
            continue
        position += item.shape[1]
        for frame in encoder.encode(item):
            # Cut before the first frame whose middle lies past the mark: that frame
            # starts at the boundary nearest to it.
            while marks and 2 * frame.pts + frame.samples > 2 * marks[0][0]:
                at, mark = marks.popleft()
                if frames:
                    yield cut()
                starts_at = time_offset + encoder.stream_samples(at) / rate
                starting = TrackEvent(mark.track, starts_at, mark.next_track)
                yield starting
            frames.append(frame)
            frames_samples += frame.samples
            if frames_samples >= chunk_samples:
                yield cut()


# -- stage: supervision -----------------------------------------------------------------
JoinFactory = Callable[[], tuple[TrackSources, Iterator[Pcm]]]


def supervised(build: JoinFactory, catalog: Catalog, *, sample_rate: int) -> Iterator[Pcm]:
    """The joined PCM of `build()`, rebuilt without the track it was playing if it raises.

    Bad files never get here (`TrackSources` skips them); what does is a bug in the join,
    which must cost a listener one track, not the stream. The encoder after this stage
    never sees the failure, so stream time and sequence simply go on. CRASH_LIMIT failures
    within CRASH_WINDOW_SECONDS of stream raise `MixerGaveUp`.
    """
    failures: deque[int] = deque()  # stream positions (samples) of recent failures
    position = 0
    while True:
        sources, pcm = build()
        try:
            for item in pcm:
                if isinstance(item, np.ndarray):
                    position += item.shape[1]
                yield item
        except Exception as exc:
            failures.append(position)
            while position - failures[0] > CRASH_WINDOW_SECONDS * sample_rate:
                failures.popleft()
            track = sources.current
            if track is not None:
                catalog.drop(track, f"pipeline failed: {exc!r}")
            yield PipelineFailed(track, repr(exc), "".join(format_exception(exc)), len(failures))
            if len(failures) >= CRASH_LIMIT:
                raise MixerGaveUp(
                    f"{len(failures)} pipeline failures within {CRASH_WINDOW_SECONDS:g} s"
                ) from exc
        finally:
            sources.close()


# -- the composed pipeline --------------------------------------------------------------
def mix(
    tracks: Catalog | Sequence[Track],
    audio: AudioConfig,
    *,
    seed: int | None = None,
    skip: threading.Event | None = None,
    first_seq: int = 0,
    time_offset: float = 0.0,
) -> Iterator[Output]:
    """The session's stream, unpaced: a Header, then Chunks, TrackEvents and notices.

    Args:
        tracks: what to play, shuffled and endlessly: a catalog that may change while it
            plays, or a fixed list.
        audio: codec, bitrate, session sample format and crossfade length.
        seed: makes the playlist order reproducible.
        skip: set it (from any thread) to move to the next track with a short fade.
        first_seq, time_offset: where a rebuilt pipeline continues an earlier stream.
    """
    catalog = as_catalog(tracks)
    skip = skip if skip is not None else threading.Event()
    rng = random.Random(seed)
    rate, channels = audio.sample_rate, audio.channels
    gains = track_gains(audio)

    def build() -> tuple[TrackSources, Iterator[Pcm]]:
        playlist = shuffled_playlist(catalog, rng)
        sources = TrackSources(playlist, catalog, sample_rate=rate, channels=channels, gains=gains)
        if audio.crossfade_seconds > 0:
            return sources, crossfade(
                sources,
                seconds=audio.crossfade_seconds,
                sample_rate=rate,
                channels=channels,
                skip=skip,
            )
        return sources, gapless(sources, sample_rate=rate, channels=channels, skip=skip)

    pcm = supervised(build, catalog, sample_rate=rate)
    encoder = create_encoder(audio)
    yield Header(encoder.header)
    yield from encode_chunks(pcm, encoder, first_seq=first_seq, time_offset=time_offset)
