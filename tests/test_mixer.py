"""The mixer: real files, real PyAV, real threads; a Ring on a real event loop where it matters.

Stages are tested alone on synthetic tones (PCM you can reason about sample by sample); the
composed pipeline and the paced thread run over the demo library (`demo_tracks`, conftest).
"""

from __future__ import annotations

import asyncio
import io
import itertools
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import pytest
import structlog

from radiod.audio.decode import TrackSources, decode_file, trim_silence
from radiod.audio.mixer import SKIP_FADE_SECONDS, Pcm, TrackMark, crossfade, gapless, mix
from radiod.audio.outputs import FallbackStarted, Header, TrackEvent, TrackFailed, TracksFailed
from radiod.audio.ring import Chunk, Ring
from radiod.audio.runner import Mixer
from radiod.catalog import FixedCatalog, shuffled_playlist
from radiod.config import AudioConfig, StreamConfig
from radiod.library import Track

RATE = 44100
CODECS = {"mp3": 44100, "opus": 48000, "aac": 44100}
DEMUXERS = {"mp3": "mp3", "opus": "ogg", "aac": "aac"}
FRAME_SECONDS = {"mp3": 1152 / 44100, "opus": 960 / 48000, "aac": 1024 / 44100}
# Largest sample-to-sample step allowed around a join: the tones below move at most
# 2*pi*660/44100*0.5 = 0.047 per sample, a click is a step of ~1.
MAX_STEP = 0.12


# -- fixtures: synthetic tone tracks ----------------------------------------------------
TONE_PAD_SECONDS = 0.3  # exact digital silence at both ends, for the trim stage


def write_tone(path: Path, hz: float, seconds: float, *, rate: int = RATE) -> Track:
    """A FLAC file: silence, a cosine that starts at +0.5 and stops dead at ~-0.5, silence.

    Starting and stopping at full amplitude means a careless join clicks (a step of ~1).
    """
    cycles = math.floor(hz * seconds) + 0.5  # end half a cycle in: at the trough
    n = round(cycles / hz * rate)
    pad = np.zeros(round(TONE_PAD_SECONDS * rate))
    tone = 0.5 * np.cos(2 * np.pi * hz * np.arange(n) / rate)
    mono = np.concatenate((pad, tone, pad))
    pcm = np.round(np.stack((mono, mono)) * 32767).astype(np.int16)
    with av.open(str(path), "w", format="flac") as out:
        stream = out.add_stream("flac", rate=rate, layout="stereo")
        stream.format = "s16"
        for start in range(0, pcm.shape[1], 4096):
            block = np.ascontiguousarray(pcm[:, start : start + 4096].T).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="stereo")
            frame.sample_rate = rate
            frame.pts = start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return Track(path, path.stem, f"{hz:g} Hz", "radiod tests", "tones", n / rate)


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> list[Track]:
    folder = tmp_path_factory.mktemp("tones")
    return [write_tone(folder / f"tone-{hz}.flac", hz, 1.0) for hz in (220, 330, 440, 550, 660)]


def broken_track(folder: Path, name: str, data: bytes) -> Track:
    path = folder / name
    path.write_bytes(data)
    return Track(path, path.stem, name, "radiod tests", "broken", 6.0)


@pytest.fixture(scope="module")
def garbage(tmp_path_factory: pytest.TempPathFactory) -> Track:
    data = random.Random(1).randbytes(40_000)
    return broken_track(tmp_path_factory.mktemp("garbage"), "garbage.mp3", data)


@pytest.fixture(scope="module")
def broken_midway(tmp_path_factory: pytest.TempPathFactory, demo_tracks: list[Track]) -> Track:
    """A real MP3 whose last two thirds are zeroed: it plays a while, then fails to decode."""
    mp3 = next(t for t in demo_tracks if t.path.suffix == ".mp3")
    data = bytearray(mp3.path.read_bytes())
    data[len(data) // 3 :] = bytes(len(data) - len(data) // 3)
    return broken_track(tmp_path_factory.mktemp("broken"), "broken-midway.mp3", bytes(data))


# -- helpers ----------------------------------------------------------------------------
def sources_over(tracks: list[Track], *, seed: int = 0) -> TrackSources:
    catalog = FixedCatalog(tracks)
    return TrackSources(
        shuffled_playlist(catalog, random.Random(seed)),
        catalog,
        sample_rate=RATE,
        channels=2,
    )


@dataclass
class JoinedPcm:
    pcm: np.ndarray
    marks: list[tuple[int, TrackMark]] = field(default_factory=list)


def run_join(
    stage: Iterator[Pcm], seconds: float, on_block: Callable[[int], None] | None = None
) -> JoinedPcm:
    blocks: list[np.ndarray] = []
    marks: list[tuple[int, TrackMark]] = []
    position = 0
    for item in stage:
        if isinstance(item, TrackMark):
            marks.append((position, item))
            continue
        blocks.append(item)
        position += item.shape[1]
        if on_block is not None:
            on_block(position)
        if position >= seconds * RATE:
            break
    return JoinedPcm(np.concatenate(blocks, axis=1), marks)


def take_stream(output: Iterator, seconds: float) -> tuple[bytes, list]:
    """Header bytes and every item of an unpaced `mix()` up to `seconds` of stream."""
    header = next(output)
    assert isinstance(header, Header)
    items = []
    for item in output:
        items.append(item)
        if isinstance(item, Chunk) and item.end_time >= seconds:
            break
    return header.data, items


def chunks_of(items: list) -> list[Chunk]:
    return [item for item in items if isinstance(item, Chunk)]


def decode(codec: str, data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data), format=DEMUXERS[codec]) as container:
        return np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)


def assert_contiguous(chunks: list[Chunk]) -> None:
    assert [c.seq for c in chunks] == list(range(chunks[0].seq, chunks[0].seq + len(chunks)))
    for before, after in itertools.pairwise(chunks):
        assert after.stream_time == pytest.approx(before.end_time, abs=1e-9)


def max_step(pcm: np.ndarray) -> float:
    return float(np.abs(np.diff(pcm, axis=1)).max())


# -- playlist ---------------------------------------------------------------------------
def test_playlist_plays_each_track_once_per_round_and_never_twice_in_a_row() -> None:
    tracks = [f"t{i}" for i in range(5)]
    catalog = FixedCatalog(tracks)
    played = list(itertools.islice(shuffled_playlist(catalog, random.Random(42)), 5 * 200))
    for start in range(0, len(played), 5):
        assert sorted(played[start : start + 5]) == tracks
    assert all(a != b for a, b in itertools.pairwise(played))
    again = list(itertools.islice(shuffled_playlist(catalog, random.Random(42)), 5 * 200))
    assert played == again


class ChangingCatalog(FixedCatalog):
    """A library whose contents the test replaces, as a rescan would."""

    def replace(self, tracks: list[str]) -> None:
        self._tracks = tuple(tracks)


def test_playlist_follows_a_library_that_changes_while_it_plays() -> None:
    catalog = ChangingCatalog([f"t{i}" for i in range(6)])
    playlist = shuffled_playlist(catalog, random.Random(7))
    first = [next(playlist) for _ in range(2)]
    gone = next(t for t in catalog.tracks() if t not in first)
    catalog.replace([t for t in catalog.tracks() if t != gone] + ["new"])
    rest = [next(playlist) for _ in range(4)]
    # The round goes on without the deleted file, and the new one joins it at once.
    assert gone not in rest
    assert sorted(first + rest) == sorted([*catalog.tracks()])
    catalog.replace([])
    assert [next(playlist) for _ in range(3)] == [None, None, None]  # silence, asked again
    catalog.replace(["back"])
    assert next(playlist) == "back"


# -- trim, crossfade, gapless, skip (PCM level) -----------------------------------------
def test_trim_drops_silent_ends_and_keeps_silence_inside() -> None:
    def block(*values: float) -> np.ndarray:
        return np.array([values, values], dtype=np.float32)

    blocks = [block(0, 0, 0), block(0, 0.0005, 0.3), block(0.2, 0, 0, 0.4), block(0, 0), block(0)]
    out = np.concatenate(list(trim_silence(blocks, sample_rate=RATE)), axis=1)
    assert out[0].tolist() == pytest.approx([0.3, 0.2, 0, 0, 0.4])


def test_decoded_tone_tracks_are_trimmed_to_their_sound(tones: list[Track]) -> None:
    track = tones[0]
    pcm = np.concatenate(
        list(trim_silence(decode_file(track.path, sample_rate=RATE, channels=2), sample_rate=RATE)),
        axis=1,
    )
    assert pcm.shape[1] == round(track.duration * RATE)
    assert abs(pcm[0, 0]) > 0.4 and abs(pcm[0, -1]) > 0.4


def test_crossfade_joins_tracks_without_a_click(tones: list[Track]) -> None:
    joined = run_join(
        crossfade(
            sources_over(tones), seconds=0.3, sample_rate=RATE, channels=2, skip=threading.Event()
        ),
        seconds=4.5,
    )
    assert len(joined.marks) >= 5
    assert max_step(joined.pcm) < MAX_STEP
    # Each track is heard from the middle of its fade-in to the middle of its fade-out.
    fade = round(0.3 * RATE)
    for (before, mark), (after, _) in itertools.pairwise(joined.marks[1:]):
        assert after - before == pytest.approx(round(mark.track.duration * RATE) - fade, abs=1)


def test_gapless_inserts_no_silence(tones: list[Track]) -> None:
    joined = run_join(
        gapless(sources_over(tones), sample_rate=RATE, channels=2, skip=threading.Event()),
        seconds=4.5,
    )
    starts = [position for position, _ in joined.marks]
    for (before, mark), after in zip(joined.marks, starts[1:], strict=False):
        assert after - before == round(mark.track.duration * RATE)  # sample-exact joins
    quiet = np.abs(joined.pcm).max(axis=0) < 1e-3
    longest_quiet_run = max(
        len(list(run)) for is_quiet, run in itertools.groupby(quiet) if is_quiet
    )
    assert longest_quiet_run <= 2  # zero crossings only: no gap anywhere
    # The tones stop dead, so gapless joins are exactly where the steps are.
    assert max_step(joined.pcm) > 0.5


@pytest.mark.parametrize("join", ["crossfade", "gapless"])
def test_skip_moves_to_the_next_track_at_once_without_a_click(
    tones: list[Track], join: str
) -> None:
    skip = threading.Event()
    sources = sources_over(tones)
    stage = (
        crossfade(sources, seconds=0.4, sample_rate=RATE, channels=2, skip=skip)
        if join == "crossfade"
        else gapless(sources, sample_rate=RATE, channels=2, skip=skip)
    )
    skipped_at: list[int] = []

    def press_skip(position: int) -> None:
        if not skipped_at and position >= 0.3 * RATE:
            skipped_at.append(position)
            skip.set()

    joined = run_join(stage, seconds=2.0, on_block=press_skip)
    assert not skip.is_set()
    first_after = next(position for position, _ in joined.marks if position > skipped_at[0])
    # Heard within the skip fade of the press (crossfade: its held tail was already pulled).
    assert first_after - skipped_at[0] <= SKIP_FADE_SECONDS * RATE
    assert joined.marks[1][0] < 0.5 * RATE  # well before the 1 s track would have ended
    around = joined.pcm[:, skipped_at[0] - 2000 : first_after + 2000]
    assert max_step(around) < MAX_STEP


# -- the composed pipeline, unpaced -----------------------------------------------------
def failures_of(items: list) -> list[TrackFailed]:
    """Every track failure, whether reported alone or in a burst."""
    failed: list[TrackFailed] = []
    for item in items:
        if isinstance(item, TrackFailed):
            failed.append(item)
        elif isinstance(item, TracksFailed):
            failed.extend(item.failures)
    return failed


def test_corrupt_and_truncated_files_are_skipped_and_the_stream_goes_on(
    demo_tracks: list[Track], garbage: Track, broken_midway: Track
) -> None:
    tracks = [*demo_tracks[:2], garbage, broken_midway]
    audio = AudioConfig(codec="opus", sample_rate=48000, crossfade_seconds=1.0)
    header, items = take_stream(mix(tracks, audio, seed=5), seconds=60)
    failed = failures_of(items)
    events = [item for item in items if isinstance(item, TrackEvent)]
    # Each once: a track that failed is left out of the catalog from then on.
    assert sorted(f.track.path for f in failed) == sorted([garbage.path, broken_midway.path])
    assert all("decode failed" in f.reason or "cannot open" in f.reason for f in failed)
    assert garbage.path not in {e.track.path for e in events}
    assert garbage.path not in {e.next_track.path for e in events if e.next_track}
    # The half-broken track played its good third, then the next track took over.
    for before, after in itertools.pairwise(events):
        if before.track.path == broken_midway.path:
            assert after.starts_at - before.starts_at < 3.0
    chunks = chunks_of(items)
    assert_contiguous(chunks)
    decoded = decode("opus", header + b"".join(c.data for c in chunks))
    assert decoded.shape[1] / 48000 == pytest.approx(chunks[-1].end_time, abs=0.01)


def test_all_tracks_failing_plays_silence_without_spinning(garbage: Track, tmp_path: Path) -> None:
    other = broken_track(tmp_path, "empty.mp3", b"")
    audio = AudioConfig(codec="mp3", crossfade_seconds=0.0)
    _, items = take_stream(mix([garbage, other], audio, seed=1), seconds=12)
    # The burst is one notice (one log line, one SSE message), the fallback is announced
    # once, and failed tracks are not retried every few seconds.
    assert [type(item) for item in items if not isinstance(item, Chunk)] == [
        TracksFailed,
        FallbackStarted,
    ]
    assert {f.track.path for f in failures_of(items)} == {garbage.path, other.path}
    chunks = chunks_of(items)
    assert_contiguous(chunks)
    assert np.abs(decode("mp3", b"".join(c.data for c in chunks))).max() < 1e-3


def test_every_track_event_starts_a_chunk(demo_tracks: list[Track]) -> None:
    audio = AudioConfig(codec="mp3", crossfade_seconds=2.5)
    _, items = take_stream(mix(demo_tracks, audio, seed=3), seconds=40)
    chunks = chunks_of(items)
    events = [item for item in items if isinstance(item, TrackEvent)]
    assert len(events) >= 6
    for event in events:
        following = chunks_of(items[items.index(event) :])[0]
        assert abs(following.stream_time - event.starts_at) <= FRAME_SECONDS["mp3"] / 2 + 1e-6
    durations = [c.duration for c in chunks]
    assert max(durations) < 0.3
    assert np.median(durations) == pytest.approx(0.25, abs=0.02)


# -- the paced thread into a Ring ------------------------------------------------------
class RingSink:
    """A MixerSink like the session's: hops chunks onto the loop into a Ring."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ring: Ring) -> None:
        self.loop, self.ring = loop, ring
        self.events: list[TrackEvent] = []
        self.failed: list[tuple[Track, str]] = []

    def on_header(self, header: bytes) -> None:
        self.loop.call_soon_threadsafe(self.ring.set_header, header)

    def on_chunk(self, chunk: Chunk) -> None:
        self.loop.call_soon_threadsafe(self.ring.push, chunk)

    def on_track(self, event: TrackEvent) -> None:
        self.events.append(event)

    def on_next(self, track: Track) -> None:
        pass

    def on_track_failed(self, track: Track, reason: str, count: int) -> None:
        self.failed.append((track, reason))

    def on_failed(self, reason: str) -> None:
        raise AssertionError(f"the mixer gave up: {reason}")


@dataclass
class PacedRun:
    codec: str
    burst: float
    paced_seconds: float = 0.0
    header: bytes = b""
    early: list[Chunk] = field(default_factory=list)
    late_burst: list[Chunk] = field(default_factory=list)
    late: list[Chunk] = field(default_factory=list)
    events: list[TrackEvent] = field(default_factory=list)


PACED_SECONDS = 8.0
PACED_BURST = 1.0


@pytest.fixture(scope="module")
def paced_runs(demo_tracks: list[Track]) -> dict[str, PacedRun]:
    """Three sessions (one per codec) paced together for PACED_SECONDS of wall clock.

    An early reader joins before the first chunk, a late one halfway through.
    """

    async def read_all(reader, into: list[Chunk]) -> None:
        while (batch := await reader.read()) is not None:
            into.extend(batch)

    async def run() -> dict[str, PacedRun]:
        loop = asyncio.get_running_loop()
        runs, rings, mixers, readers = {}, {}, {}, []
        stream = StreamConfig(burst_seconds=PACED_BURST)
        for codec, rate in CODECS.items():
            runs[codec] = PacedRun(codec, PACED_BURST)
            rings[codec] = Ring(ring_seconds=30, burst_seconds=PACED_BURST)
            audio = AudioConfig(codec=codec, sample_rate=rate)
            sink = RingSink(loop, rings[codec])
            mixers[codec] = Mixer(demo_tracks, audio, stream, sink, seed=11)
            runs[codec].events = sink.events
        early = {codec: ring.reader() for codec, ring in rings.items()}
        started = time.monotonic()
        for mixer in mixers.values():
            mixer.start()
        for codec, reader in early.items():
            readers.append(asyncio.ensure_future(read_all(reader, runs[codec].early)))
        await asyncio.sleep(PACED_SECONDS / 2)
        for codec, ring in rings.items():
            reader = ring.reader()
            runs[codec].late_burst = await reader.read()
            runs[codec].header = reader.header
            readers.append(asyncio.ensure_future(read_all(reader, runs[codec].late)))
        await asyncio.sleep(started + PACED_SECONDS - time.monotonic())
        await asyncio.gather(*(loop.run_in_executor(None, m.stop) for m in mixers.values()))
        stopped = time.monotonic()
        for codec in CODECS:
            runs[codec].paced_seconds = stopped - started
        await asyncio.sleep(0.05)  # the last call_soon_threadsafe pushes land
        for ring in rings.values():
            ring.close()
        await asyncio.gather(*readers)
        return runs

    return asyncio.run(run())


@pytest.mark.parametrize("codec", CODECS)
def test_paced_stream_decodes_and_lasts_as_long_as_the_wall_clock(
    paced_runs: dict[str, PacedRun], codec: str
) -> None:
    run = paced_runs[codec]
    assert_contiguous(run.early)
    decoded = decode(codec, run.header + b"".join(c.data for c in run.early))
    seconds = decoded.shape[1] / CODECS[codec]
    assert seconds == pytest.approx(run.early[-1].end_time, abs=0.01)
    # Produced = the burst, then real time: ±5% of the paced wall clock.
    assert seconds - run.burst == pytest.approx(run.paced_seconds, rel=0.05)


@pytest.mark.parametrize("codec", CODECS)
def test_late_reader_gets_a_burst_that_decodes_on_its_own(
    paced_runs: dict[str, PacedRun], codec: str
) -> None:
    run = paced_runs[codec]
    burst = run.late_burst
    burst_seconds = burst[-1].end_time - burst[0].stream_time
    assert run.burst <= burst_seconds < run.burst + 0.3
    data = run.header + b"".join(c.data for c in burst + run.late)
    decoded = decode(codec, data)
    expected = run.late[-1].end_time - burst[0].stream_time
    # Opus decoders drop the pre-skip (6.5 ms) again at a mid-stream join.
    assert decoded.shape[1] / CODECS[codec] == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("codec", CODECS)
def test_readers_get_identical_bytes_for_the_same_seq(
    paced_runs: dict[str, PacedRun], codec: str
) -> None:
    run = paced_runs[codec]
    by_seq = {c.seq: c.data for c in run.early}
    late = run.late_burst + run.late
    assert_contiguous(late)
    assert late[-1].seq == run.early[-1].seq
    assert all(by_seq[c.seq] == c.data for c in late)


@pytest.mark.parametrize("codec", CODECS)
def test_paced_track_events_start_chunks(paced_runs: dict[str, PacedRun], codec: str) -> None:
    run = paced_runs[codec]
    assert run.events, "the first track's event at least"
    starts = [c.stream_time for c in run.early]
    for event in run.events:
        if event.starts_at < run.early[-1].end_time:
            nearest = min(abs(s - event.starts_at) for s in starts)
            assert nearest <= FRAME_SECONDS[codec] / 2 + 1e-6


# -- the paced thread: controls ---------------------------------------------------------
class ListSink:
    def __init__(self) -> None:
        self.items: list[object] = []
        self.changed = threading.Condition()

    def _add(self, item: object) -> None:
        with self.changed:
            self.items.append(item)
            self.changed.notify_all()

    def on_header(self, header: bytes) -> None:
        self._add(Header(header))

    def on_chunk(self, chunk: Chunk) -> None:
        self._add(chunk)

    def on_track(self, event: TrackEvent) -> None:
        self._add(event)

    def on_next(self, track: Track) -> None:
        pass

    def on_track_failed(self, track: Track, reason: str, count: int) -> None:
        self._add(TrackFailed(track, reason))

    def on_failed(self, reason: str) -> None:
        self._add(reason)

    def wait_for(self, condition: Callable[[list[object]], bool], timeout: float = 20) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: condition(self.items), timeout)

    def produced(self) -> float:
        chunks = chunks_of(self.items)
        return chunks[-1].end_time if chunks else 0.0


def test_stop_and_start_continue_stream_time_and_playlist(tones: list[Track]) -> None:
    audio = AudioConfig(codec="mp3", crossfade_seconds=0.0)
    sink = ListSink()
    mixer = Mixer(tones, audio, StreamConfig(burst_seconds=0.5), sink, seed=9)
    mixer.start()
    mixer.start()  # idempotent
    sink.wait_for(lambda items: sink.produced() >= 2.0)
    mixer.stop()
    mixer.stop()
    assert not mixer.running
    paused_at = sink.produced()
    mixer.start()
    assert mixer.running
    sink.wait_for(lambda items: sink.produced() >= paused_at + 0.5)  # a fresh burst at once
    sink.wait_for(lambda items: sink.produced() >= 5.0)
    mixer.stop()
    chunks = chunks_of(sink.items)
    assert_contiguous(chunks)
    assert [type(i) for i in sink.items].count(Header) == 1
    # Exactly the stream an uninterrupted mixer makes: same bytes, same track order.
    _, unpaced = take_stream(mix(tones, audio, seed=9), seconds=chunks[-1].end_time)
    assert b"".join(c.data for c in chunks) == b"".join(c.data for c in chunks_of(unpaced))
    paced_events = [e for e in sink.items if isinstance(e, TrackEvent)]
    assert paced_events == [e for e in unpaced if isinstance(e, TrackEvent)]
    assert len(paced_events) >= 4


def test_skip_on_a_running_mixer_starts_the_next_track_right_away(
    demo_tracks: list[Track],
) -> None:
    sink = ListSink()
    audio = AudioConfig(codec="aac", crossfade_seconds=2.5)
    mixer = Mixer(demo_tracks, audio, StreamConfig(burst_seconds=0.5), sink, seed=2)
    mixer.start()
    try:
        sink.wait_for(lambda items: sink.produced() >= 1.5)
        first = next(e for e in sink.items if isinstance(e, TrackEvent))
        produced_at_skip = sink.produced()
        mixer.skip()
        sink.wait_for(lambda items: len([i for i in items if isinstance(i, TrackEvent)]) >= 2)
    finally:
        mixer.stop()
    second = [e for e in sink.items if isinstance(e, TrackEvent)][1]
    assert second.track != first.track
    assert second.track == first.next_track
    # In stream time the change comes within a chunk or two of the press, not at the
    # track's natural end ~3 s later.
    assert second.starts_at - produced_at_skip < 0.6


def test_mixer_logs_carry_the_callers_session_id(
    log_capture, tones: list[Track], garbage: Track
) -> None:
    sink = ListSink()
    audio = AudioConfig(codec="mp3", crossfade_seconds=0.0)
    mixer = Mixer([garbage, *tones[:2]], audio, StreamConfig(burst_seconds=0.5), sink, seed=4)
    structlog.contextvars.bind_contextvars(session_id="session_test")
    try:
        mixer.start()
        sink.wait_for(lambda items: any(isinstance(i, TrackFailed) for i in items))
        sink.wait_for(lambda items: any(isinstance(i, TrackEvent) for i in items))
        mixer.stop()
    finally:
        structlog.contextvars.unbind_contextvars("session_id")
        mixer.stop()
    for name in ("mixer.started", "mixer.track_started", "mixer.track_failed", "mixer.stopped"):
        lines = log_capture.events(name)
        assert lines, name
        assert all(line["session_id"] == "session_test" for line in lines)
    failed = log_capture.events("mixer.track_failed")[0]
    assert failed["path"] == str(garbage.path)
    assert failed["reason"].startswith("cannot open")
