"""What a mixer plays from: the tracks playable now, and a way to report one that is not.

A real library changes under a running server (files added, deleted, truncated, the
whole folder unmounted), so a mixer never holds a list of its own: it asks its `Catalog`
for the current tracks at every pick, and reports a track that failed so no session picks
it again until its file changes. `FixedCatalog` is the simplest one (a benchmark, a test,
one session's private view); the server shares one `LiveLibrary` between all sessions.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Protocol

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
