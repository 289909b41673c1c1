"""The joiners (crossfade, gapless) on random track lengths, fade lengths and block sizes.

Real folders hold jingles of a fraction of a second, files that are one sample long after
trimming, and durations their headers lie about. The joiners must place every track's mark
exactly where the contract says, whatever the lengths, and never raise.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from radiod.audio.decode import TrackAudio
from radiod.audio.mixer import MAX_FADE_SHARE, TrackMark, crossfade, gapless
from radiod.library import Track

RATE = 1000  # samples per second: small numbers keep the examples readable
LEVEL = 0.5


class SyntheticSources:
    """The joiners' view of `TrackSources` (next source, peek at the one after, notices) over
    constant-level tracks of given lengths, split into blocks of the given sizes."""

    def __init__(self, specs: list[tuple[int, float]], block_sizes: list[int]) -> None:
        self.rate = RATE
        self._specs = itertools.cycle(enumerate(specs))
        self._block_sizes = itertools.cycle(block_sizes)
        self._ahead = self._make()

    def _make(self) -> TrackAudio:
        index, (length, declared) = next(self._specs)
        track = Track(Path(f"t{index}.flac"), str(index), f"t{index}", "a", "", declared)
        return TrackAudio(track, self._blocks(length))

    def _blocks(self, length: int) -> Iterator[np.ndarray]:
        done = 0
        while done < length:
            size = min(next(self._block_sizes), length - done)
            yield np.full((2, size), LEVEL, dtype=np.float32)
            done += size

    def __iter__(self) -> SyntheticSources:
        return self

    def __next__(self) -> TrackAudio:
        current, self._ahead = self._ahead, self._make()
        return current

    def peek_track(self) -> Track | None:
        return self._ahead.track

    def drain(self) -> list:
        return []  # synthetic tracks never fail: no notices


def expected_marks(specs: list[tuple[int, float]], fade: int) -> list[int]:
    """Where each track's mark falls, by the joiners' contract.

    A track holds back at most `fade`, and at most a third of its declared length, for its
    fade-out; the next track fades in over as much as that, its own share and its real
    length allow; the mark sits in the middle of the fade.
    """

    def share(declared: float) -> int:
        return min(fade, int(declared * RATE * MAX_FADE_SHARE))

    marks = [0]
    position = 0
    used_by_fade_in = 0
    for (length, declared), (next_length, next_declared) in itertools.pairwise(specs):
        remaining = length - used_by_fade_in
        outgoing = min(share(declared), remaining)
        overlap = min(outgoing, share(next_declared), next_length)
        marks.append(position + remaining - overlap + overlap // 2)
        position += remaining
        used_by_fade_in = overlap
    return marks


def run(stage: Iterator, tracks: int) -> tuple[list[tuple[int, TrackMark]], np.ndarray]:
    """Drive a joiner until `tracks` marks are out; the marks and the PCM before the last."""
    marks: list[tuple[int, TrackMark]] = []
    blocks: list[np.ndarray] = [np.zeros((2, 0), dtype=np.float32)]
    position = 0
    for item in stage:
        if isinstance(item, TrackMark):
            marks.append((position, item))
            if len(marks) == tracks:
                break
        else:
            blocks.append(item)
            position += item.shape[1]
    return marks, np.concatenate(blocks, axis=1)


track_specs = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 2), st.integers(0, 6000)),  # real length, in samples
        st.floats(0, 10, allow_nan=False),  # declared duration: headers lie
    ),
    min_size=2,
    max_size=8,
)
block_sizes = st.lists(st.integers(1, 3000), min_size=1, max_size=5)


@settings(max_examples=300, deadline=None)
@given(specs=track_specs, fade=st.integers(0, 5000), sizes=block_sizes)
def test_crossfade_places_every_mark_where_the_contract_says(
    specs: list[tuple[int, float]], fade: int, sizes: list[int]
) -> None:
    stage = crossfade(
        SyntheticSources(specs, sizes),
        seconds=fade / RATE,
        sample_rate=RATE,
        channels=2,
        skip=threading.Event(),
    )
    marks, pcm = run(stage, len(specs))
    assert [mark.track.track_id for _, mark in marks] == [str(i) for i in range(len(specs))]
    assert [position for position, _ in marks] == expected_marks(specs, fade)
    # Equal-power gains on equal levels: never below the level (no dip, no gap of
    # silence), never above it times sqrt(2).
    assert np.isfinite(pcm).all()
    if pcm.size:
        assert pcm.max() <= LEVEL * math.sqrt(2) + 1e-5
        assert pcm.min() >= LEVEL * (1 - 1e-5)


@settings(max_examples=200, deadline=None)
@given(specs=track_specs, sizes=block_sizes)
def test_gapless_joins_are_sample_exact(specs: list[tuple[int, float]], sizes: list[int]) -> None:
    stage = gapless(
        SyntheticSources(specs, sizes), sample_rate=RATE, channels=2, skip=threading.Event()
    )
    marks, pcm = run(stage, len(specs))
    assert [position for position, _ in marks] == list(
        itertools.accumulate([0] + [length for length, _ in specs[:-1]])
    )
    assert (pcm == LEVEL).all()


@settings(max_examples=150, deadline=None)
@given(
    specs=track_specs,
    fade=st.integers(0, 5000),
    sizes=block_sizes,
    skips=st.lists(st.integers(0, 20), max_size=6),
    join=st.sampled_from(["crossfade", "gapless"]),
)
def test_skips_at_random_blocks_never_break_the_join(
    specs: list[tuple[int, float]], fade: int, sizes: list[int], skips: list[int], join: str
) -> None:
    skip = threading.Event()
    sources = SyntheticSources(specs, sizes)
    if join == "crossfade":
        stage = crossfade(sources, seconds=fade / RATE, sample_rate=RATE, channels=2, skip=skip)
    else:
        stage = gapless(sources, sample_rate=RATE, channels=2, skip=skip)
    skip_at = set(itertools.accumulate(skips))
    seen: list[str] = []
    for index, item in enumerate(itertools.islice(stage, 400)):
        if index in skip_at:
            skip.set()
        if isinstance(item, TrackMark):
            seen.append(item.track.track_id)
        else:
            assert np.isfinite(item).all()
    # Skips move on, in playlist order, never back and never twice to the same place.
    expected = [str(i % len(specs)) for i in range(len(seen))]
    assert seen == expected
