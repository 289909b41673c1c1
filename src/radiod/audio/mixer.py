"""A session's producer: playlist → decode → trim → join → encode → chunks, paced in a thread.

The pipeline is a chain of generators in the manner of Liquidsoap's operators:

    shuffled_playlist → TrackSources (decode + trim, one track opened ahead)
        → crossfade | gapless (PCM blocks and TrackMarks)
        → encode_chunks (Chunks and TrackEvents)

`mix()` composes them into one unpaced iterator of `Output`s; the benchmark drives it
directly and `Mixer` drives it from a worker thread at the speed of the wall clock. The
mixer talks to the world only through `MixerSink` (no asyncio here), so the same loop can
later run in a worker process with the sink writing to a pipe (DESIGN §7).

Times are stream times: seconds of audio since the session's stream began, counted from
samples, as the listener's decoder outputs them. They never go backwards across stop/start.
"""

from __future__ import annotations

import contextvars
import itertools
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from traceback import format_exception
from typing import TYPE_CHECKING, Protocol

import numpy as np
import structlog

from radiod.audio.decode import Block, DecodeError, decode_file, trim_silence
from radiod.audio.encode import CONTENT_TYPES, EncodedFrame, Encoder, create_encoder
from radiod.audio.ring import Chunk
from radiod.catalog import Catalog, FixedCatalog
from radiod.config import AudioConfig, StreamConfig

if TYPE_CHECKING:
    from radiod.library import Track

log = structlog.get_logger(__name__)

# DESIGN §7: fan-out in batches of ~250 ms of audio.
CHUNK_SECONDS = 0.25
# A skip fades the current track out over this long while the next fades in: long enough
# not to click, short enough to feel immediate.
SKIP_FADE_SECONDS = 0.06
# When nothing can be played, play this much silence before asking the library again:
# listeners stay connected and the thread does not spin on broken files.
FALLBACK_SILENCE_SECONDS = 5.0
# A join that raises is rebuilt without the track it was playing; this many failures within
# this much stream time mean something is wrong beyond one file, and the session ends so
# its clients restart cleanly rather than hear a stream that keeps breaking.
CRASH_LIMIT = 3
CRASH_WINDOW_SECONDS = 30.0
# Paths named in one `mixer.track_failed` line for a burst of failures.
MAX_LOGGED_FAILURES = 10
_SILENCE_BLOCK = 4096
# A crossfade takes at most this share of a track at each end (see `_fade_share`).
MAX_FADE_SHARE = 1 / 3


# -- what the pipeline produces ---------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TrackEvent:
    """A track change.

    Attributes:
        track: the track now playing.
        starts_at: stream time at which it becomes audible: the middle of a crossfade, or
            the join for gapless. A chunk starts within half a codec frame of it.
        next_track: the track chosen (and already opened) to follow it.
    """

    track: Track
    starts_at: float
    next_track: Track | None


@dataclass(frozen=True, slots=True)
class Header:
    """Bytes every listener needs first (Ogg header pages; b"" for MP3 and ADTS)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class TrackFailed:
    track: Track
    reason: str


@dataclass(frozen=True, slots=True)
class NextChosen:
    """A next track chosen outside a TrackEvent (after a silent gap)."""

    track: Track


@dataclass(frozen=True, slots=True)
class TracksFailed:
    """Several tracks failed in a row (a folder unmounted, a batch of broken files): one
    notice, so it costs one log line and one SSE message, not one per file."""

    failures: tuple[TrackFailed, ...]


@dataclass(frozen=True, slots=True)
class FallbackStarted:
    """Nothing can be played (the library is empty, or every track failed): silence plays,
    and the library is asked again every `silence_seconds`. Sent once per fallback period."""

    reason: str
    silence_seconds: float


@dataclass(frozen=True, slots=True)
class PipelineFailed:
    """The join raised: a bug, not a bad file (those are TrackFailed). The track it was
    playing is dropped and the join rebuilt; stream time and the encoder go on."""

    track: Track | None
    error: str
    traceback: str
    failures: int  # within the last CRASH_WINDOW_SECONDS of stream


class MixerGaveUp(Exception):
    """The pipeline failed CRASH_LIMIT times within CRASH_WINDOW_SECONDS of stream."""


Output = (
    Header | Chunk | TrackEvent | TrackFailed | TracksFailed | NextChosen | FallbackStarted
) | PipelineFailed


class MixerSink(Protocol):
    """Where a mixer's output goes. Called from the mixer's thread, in stream order."""

    def on_header(self, header: bytes) -> None: ...

    def on_chunk(self, chunk: Chunk) -> None: ...

    def on_track(self, event: TrackEvent) -> None: ...

    def on_next(self, track: Track) -> None: ...

    def on_track_failed(self, track: Track, reason: str, count: int) -> None:
        """`track` could not be played (`count` > 1: it was the first of that many in a row)."""
        ...

    def on_failed(self, reason: str) -> None:
        """The mixer stopped for good: end the session's responses so clients restart."""
        ...


# -- stage: playlist --------------------------------------------------------------------
def shuffled_playlist(catalog: Catalog, rng: random.Random) -> Iterator[Track | None]:
    """Endless: each round plays every track once in a new order; no track twice in a row.

    The catalog is asked again before every pick: a track removed since the round began is
    left out, a track added joins the rest of the round at a random place. None means the
    catalog is empty right now (the caller plays silence and asks again).
    """
    order: list[Track] = []  # the rest of this round, next pick last
    played: set[Track] = set()
    seen: tuple[Track, ...] | None = None
    last: Track | None = None
    while True:
        tracks = catalog.tracks()
        if tracks is not seen:
            seen = tracks
            order = _refreshed(order, tracks, played, rng)
        if not order:
            if not tracks:
                yield None
                continue
            played.clear()
            order = list(tracks)
            rng.shuffle(order)
            if len(order) > 1 and order[-1] == last:
                swap = rng.randrange(0, len(order) - 1)
                order[-1], order[swap] = order[swap], order[-1]
        last = order.pop()
        played.add(last)
        yield last


def _refreshed(
    order: list[Track], tracks: tuple[Track, ...], played: set[Track], rng: random.Random
) -> list[Track]:
    """The rest of a round after the catalog changed: gone tracks out, new ones placed at random."""
    available = set(tracks)
    kept = [t for t in order if t in available]
    queued = set(kept)
    for track in tracks:
        if track not in played and track not in queued:
            kept.insert(rng.randint(0, len(kept)), track)
    return kept


# -- stage: decode + trim, one track at a time ------------------------------------------
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
        notices: deque[Output],
        *,
        sample_rate: int,
        channels: int,
    ) -> None:
        self._playlist = playlist
        self._catalog = catalog
        # Failures and other notices, in the order they happened; `mix()` drains them.
        self.notices = notices
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
            self.notices.append(NextChosen(self._ahead.track))
        self.current = current.track
        return current

    def peek_track(self) -> Track | None:
        """The track that will come next (None when the next source is a silent gap)."""
        return self._ahead.track if self._ahead is not None else None

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
            self.notices.append(FallbackStarted(reason, FALLBACK_SILENCE_SECONDS))
        return TrackAudio(None, _silence(self._channels, self.rate))

    def _failed(self, track: Track, exc: Exception) -> TrackFailed:
        reason = _reason(exc)
        self._catalog.drop(track, reason)
        return TrackFailed(track, reason)

    def _report(self, failures: list[TrackFailed]) -> None:
        if len(failures) == 1:
            self.notices.append(failures[0])
        elif failures:
            self.notices.append(TracksFailed(tuple(failures)))

    def _open(self, track: Track) -> TrackAudio:
        blocks = trim_silence(
            decode_file(track.path, sample_rate=self.rate, channels=self._channels),
            sample_rate=self.rate,
        )
        first = next(blocks, None)
        if first is None:
            raise DecodeError("no audible audio")
        return TrackAudio(track, self._guarded(track, first, blocks))

    def _guarded(self, track: Track, first: Block, blocks: Iterator[Block]) -> Iterator[Block]:
        yield first
        try:
            yield from blocks
        except Exception as exc:  # a bad packet ends the track, not the stream
            self.notices.append(self._failed(track, exc))


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, DecodeError) else f"{type(exc).__name__}: {exc}"


def _silence(channels: int, sample_rate: int) -> Iterator[Block]:
    total = int(FALLBACK_SILENCE_SECONDS * sample_rate)
    for start in range(0, total, _SILENCE_BLOCK):
        yield np.zeros((channels, min(_SILENCE_BLOCK, total - start)), dtype=np.float32)


# -- stage: join tracks (crossfade or gapless) ------------------------------------------
@dataclass(frozen=True, slots=True)
class TrackMark:
    """In a PCM stream: the samples after this mark are where `track` becomes audible."""

    track: Track
    next_track: Track | None


Pcm = Block | TrackMark


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
    """Join tracks end to start, sample-exact (after trimming their silence)."""
    skip_len = round(SKIP_FADE_SECONDS * sample_rate)
    current = next(sources)
    if current.track is not None:
        yield TrackMark(current.track, sources.peek_track())
    nothing_held = _SampleQueue()
    while True:
        skipped = False
        for block in current.blocks:
            yield block
            if skip.is_set():
                skip.clear()
                skipped = True
                break
        if skipped:
            transition = _skip_transition(
                current, nothing_held, sources, skip_len=skip_len, channels=channels
            )
        else:
            transition = _join_next(
                np.zeros((channels, 0), dtype=np.float32), sources, channels=channels, fade_limit=0
            )
        current = yield from transition


# -- stage: encode into chunks ----------------------------------------------------------
def encode_chunks(
    pcm: Iterator[Pcm],
    encoder: Encoder,
    *,
    chunk_seconds: float = CHUNK_SECONDS,
    first_seq: int = 0,
    time_offset: float = 0.0,
) -> Iterator[Chunk | TrackEvent]:
    """Encode PCM into Chunks of ~`chunk_seconds`, turning TrackMarks into TrackEvents.

    A chunk also ends at the codec frame boundary nearest each track's start, so every
    TrackEvent's `starts_at` falls within half a frame of some chunk's `stream_time`: now
    playing can switch exactly where the audio does. The TrackEvent comes right before
    that chunk.
    """
    rate = encoder.sample_rate
    chunk_samples = round(chunk_seconds * rate)
    position = 0  # input samples consumed
    marks: deque[tuple[int, TrackMark]] = deque()
    frames: list[EncodedFrame] = []
    frames_samples = 0
    seq = first_seq

    def make_chunk() -> Chunk:
        first, last = frames[0], frames[-1]
        start = max(encoder.stream_samples(first.pts), 0)
        end = encoder.stream_samples(last.pts + last.samples)
        return Chunk(
            seq=seq,
            stream_time=time_offset + start / rate,
            duration=(end - start) / rate,
            data=encoder.pack(frames),
        )

    for item in pcm:
        if isinstance(item, TrackMark):
            marks.append((position, item))
            continue
        position += item.shape[1]
        for frame in encoder.encode(item):
            # Cut before the first frame whose middle lies past the mark: that frame
            # starts at the boundary nearest to it.
            while marks and 2 * frame.pts + frame.samples > 2 * marks[0][0]:
                at, mark = marks.popleft()
                if frames:
                    yield make_chunk()
                    seq += 1
                    frames, frames_samples = [], 0
                yield TrackEvent(
                    track=mark.track,
                    starts_at=time_offset + encoder.stream_samples(at) / rate,
                    next_track=mark.next_track,
                )
            frames.append(frame)
            frames_samples += frame.samples
            if frames_samples >= chunk_samples:
                yield make_chunk()
                seq += 1
                frames, frames_samples = [], 0


# -- stage: supervision -----------------------------------------------------------------
JoinFactory = Callable[[], tuple[TrackSources, Iterator[Pcm]]]


def supervised(
    build: JoinFactory, notices: deque[Output], catalog: Catalog, *, sample_rate: int
) -> Iterator[Pcm]:
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
                if not isinstance(item, TrackMark):
                    position += item.shape[1]
                yield item
        except Exception as exc:
            failures.append(position)
            while position - failures[0] > CRASH_WINDOW_SECONDS * sample_rate:
                failures.popleft()
            track = sources.current
            if track is not None:
                catalog.drop(track, f"pipeline failed: {exc!r}")
            notices.append(
                PipelineFailed(track, repr(exc), "".join(format_exception(exc)), len(failures))
            )
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
    catalog = FixedCatalog(tracks) if isinstance(tracks, Sequence) else tracks
    skip = skip if skip is not None else threading.Event()
    rng = random.Random(seed)
    rate, channels = audio.sample_rate, audio.channels
    notices: deque[Output] = deque()

    def build() -> tuple[TrackSources, Iterator[Pcm]]:
        playlist = shuffled_playlist(catalog, rng)
        sources = TrackSources(playlist, catalog, notices, sample_rate=rate, channels=channels)
        if audio.crossfade_seconds > 0:
            return sources, crossfade(
                sources,
                seconds=audio.crossfade_seconds,
                sample_rate=rate,
                channels=channels,
                skip=skip,
            )
        return sources, gapless(sources, sample_rate=rate, channels=channels, skip=skip)

    pcm = supervised(build, notices, catalog, sample_rate=rate)
    encoder = create_encoder(audio)
    yield Header(encoder.header)
    try:
        for item in encode_chunks(pcm, encoder, first_seq=first_seq, time_offset=time_offset):
            while notices:
                yield notices.popleft()
            yield item
    except MixerGaveUp:
        while notices:  # the failures that led to it, before the end
            yield notices.popleft()
        raise


# -- the paced worker -------------------------------------------------------------------
class Mixer:
    """Runs `mix()` in a thread, `burst_seconds` ahead of the wall clock, into a `MixerSink`.

    Args:
        tracks: what to play (a catalog that may change, or a fixed list).
        audio: the session's audio settings.
        stream: `burst_seconds` sets how far ahead of the live point production runs.
        sink: receives header, chunks and events (from the mixer thread).
        seed: reproducible playlist order.
    """

    def __init__(
        self,
        tracks: Catalog | Sequence[Track],
        audio: AudioConfig,
        stream: StreamConfig,
        sink: MixerSink,
        *,
        seed: int | None = None,
    ) -> None:
        self._tracks = tracks
        self._audio = audio
        self._burst = stream.burst_seconds
        self._sink = sink
        self._seed = seed
        self.content_type = CONTENT_TYPES[audio.codec]
        self._skip = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._output: Iterator[Output] | None = None
        self._next_seq = 0
        self._produced_until = 0.0  # stream time of the end of the last chunk sent
        self.failed = False  # gave up for good (MixerSink.on_failed was called)

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stop.is_set()

    @property
    def stream_time(self) -> float:
        """Stream time of the end of the audio produced so far (admission control samples it)."""
        return self._produced_until

    def start(self) -> None:
        """Start, or resume where the stream stopped with a fresh burst; idempotent.

        A mixer that failed for good stays stopped: its session is ending."""
        with self._lock:
            if self.failed:
                return
            thread = self._thread
            if thread is not None and thread.is_alive():
                if not self._stop.is_set():
                    return
                thread.join()  # a stop is under way: let it finish, then resume
            stop = self._stop = threading.Event()
            # The caller's structlog contextvars (session_id) follow into the thread.
            context = contextvars.copy_context()
            self._thread = threading.Thread(
                target=context.run, args=(self._run, stop), name="radiod-mixer", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it (blocking: call it off the event loop); idempotent."""
        with self._lock:
            thread = self._thread
            self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def close(self) -> None:
        """Stop for good and release the pipeline's open files now, not at garbage collection."""
        self.stop()
        with self._lock:
            output, self._output = self._output, None
        if output is not None:
            output.close()

    def skip(self) -> None:
        """Move to the next track with a short fade; safe from any thread."""
        self._skip.set()

    def _run(self, stop: threading.Event) -> None:
        if self._output is None:
            self._output = mix(
                self._tracks,
                self._audio,
                seed=self._seed,
                skip=self._skip,
                first_seq=self._next_seq,
                time_offset=self._produced_until,
            )
        output = self._output
        # Re-anchor: the live point is what has been produced, and a fresh burst goes out now.
        anchor_wall = time.monotonic()
        anchor_stream = self._produced_until
        log.info("mixer.started", stream_time=round(anchor_stream, 3), codec=self._audio.codec)
        try:
            while not stop.is_set():
                item = next(output)
                self._dispatch(item)
                if isinstance(item, Chunk):
                    ahead = (
                        (self._produced_until - anchor_stream)
                        - (time.monotonic() - anchor_wall)
                        - self._burst
                    )
                    if ahead > 0 and stop.wait(ahead):
                        break
        except Exception as exc:
            # Failures the pipeline could recover from never get here (it rebuilds itself):
            # this one ends the session, so its clients restart on a new one rather than
            # hold a socket that carries nothing.
            log.error(
                "mixer.failed",
                stream_time=round(self._produced_until, 3),
                error=str(exc) if isinstance(exc, MixerGaveUp) else repr(exc),
                exc_info=not isinstance(exc, MixerGaveUp),
            )
            self.failed = True
            self._output = None
            output.close()
            stop.set()
            self._sink.on_failed("mixer_failed")
        log.info("mixer.stopped", stream_time=round(self._produced_until, 3))

    def _dispatch(self, item: Output) -> None:
        sink = self._sink
        if isinstance(item, Chunk):
            self._produced_until = item.end_time
            self._next_seq = item.seq + 1
            sink.on_chunk(item)
        elif isinstance(item, TrackEvent):
            track = item.track
            log.info(
                "mixer.track_started",
                track_id=track.track_id,
                path=str(track.path),
                title=track.title,
                artist=track.artist,
                starts_at=round(item.starts_at, 3),
                next_track_id=item.next_track.track_id if item.next_track else None,
            )
            sink.on_track(item)
        elif isinstance(item, TrackFailed | TracksFailed):
            self._track_failures(item)
        elif isinstance(item, NextChosen):
            sink.on_next(item.track)
        elif isinstance(item, FallbackStarted):
            log.warning(
                "mixer.fallback_silence",
                reason=item.reason,
                retry_seconds=item.silence_seconds,
            )
        elif isinstance(item, PipelineFailed):
            log.error(
                "mixer.pipeline_failed",
                track_id=item.track.track_id if item.track else None,
                path=str(item.track.path) if item.track else None,
                error=item.error,
                failures=item.failures,
                traceback=item.traceback,
            )
        elif isinstance(item, Header):
            sink.on_header(item.data)

    def _track_failures(self, item: TrackFailed | TracksFailed) -> None:
        """One log line and one sink call, however many tracks failed in a row."""
        failures = item.failures if isinstance(item, TracksFailed) else (item,)
        first = failures[0]
        log.warning(
            "mixer.track_failed",
            track_id=first.track.track_id,
            path=str(first.track.path),
            reason=first.reason,
            failed=len(failures),
            # A burst (a folder gone): the rest by path, bounded so the line stays readable.
            also_failed=[str(f.track.path) for f in failures[1:MAX_LOGGED_FAILURES]] or None,
        )
        self._sink.on_track_failed(first.track, first.reason, len(failures))
