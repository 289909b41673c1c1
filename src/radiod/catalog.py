"""What a mixer plays from, and in what order: the tracks playable now, a way to report one
that is not, and the shuffled playlist over them.

A real library changes under a running server (files added, deleted, truncated, the
whole folder unmounted), so a mixer never holds a list of its own: it asks its `Catalog`
for the current tracks at every pick, and reports a track that failed so no session picks
it again until its file changes. `FixedCatalog` is the simplest one (a benchmark, a test,
one session's private view); the server shares one `LiveLibrary` between all sessions.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from radiod.library import Track


class Catalog(Protocol):
    """The tracks a mixer may pick. Called from mixer threads: implementations are thread-safe."""

    def tracks(self) -> tuple[Track, ...]:
        """The playable tracks now. The same tuple object until something changes, so a
        caller can tell a change by identity."""
        ...

    def drop(self, track: Track, reason: str) -> None:
        """`track` failed to play: leave it out until its file changes."""
        ...


class FixedCatalog:
    """A fixed set of tracks; a dropped one stays out for this catalog's lifetime."""

    def __init__(self, tracks: Iterable[Track]) -> None:
        self._tracks = tuple(tracks)
        self._lock = threading.Lock()

    def tracks(self) -> tuple[Track, ...]:
        return self._tracks

    def drop(self, track: Track, reason: str) -> None:
        with self._lock:
            if track in self._tracks:
                self._tracks = tuple(t for t in self._tracks if t != track)


def as_catalog(tracks: Catalog | Sequence[Track]) -> Catalog:
    """`tracks` as a catalog: a fixed list (a test, a benchmark) becomes a `FixedCatalog`."""
    return FixedCatalog(tracks) if isinstance(tracks, Sequence) else tracks


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
