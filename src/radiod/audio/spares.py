"""`SparePipelines`: pipelines opened ahead of the sessions that will play them.

Opening a session's pipeline is the slow part of its first byte: the first track is probed
and decoded (with a crossfade, the first chunk waits for the fade's 2.5 s of audio to be
held back), the next one opened, the encoder set up: ~40 ms of CPU on the development
machine, far more on a loaded one. A new session's stream has nothing of its own until it
starts (a shuffled playlist, stream time 0, sequence 0), so that work can be done before it
is asked for: a few pipelines wait here, opened and with their first chunk made, and a new
session takes one, so its first chunk exists the moment it is created (issue 11, item 4).

Nothing is dispatched while a spare waits: what it produced is kept and replayed to the
session that takes it, so its log lines (`mixer.track_started`) carry that session's id.
A filler thread makes new spares as they are taken; they are thrown away when the
catalog changes, so a session never starts on a track that has just been removed.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator

from radiod.audio.outputs import Output
from radiod.audio.ring import Chunk

# Two per worker: a page load takes one; the other covers the next before the first is
# replaced. A storm takes them all and the rest start the ordinary way.
SPARES = 2

Spare = tuple[Iterator[Output], threading.Event]


class SparePipelines:
    """Up to `count` pipelines from `make(first_seq, time_offset, skip)`, first chunk made."""

    def __init__(
        self,
        make: Callable[[int, float, threading.Event], Iterator[Output]],
        count: int = SPARES,
    ) -> None:
        self._make = make
        self._count = count
        self._stock: deque[Spare] = deque()
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._generation = 0  # bumped by clear(): a spare begun before it is not kept
        self._closed = False
        self._wanted.set()
        self._thread = threading.Thread(target=self._fill, name="radiod-spares", daemon=True)
        self._thread.start()

    def take(self) -> Spare | None:
        """A spare pipeline (its output replays what it made ahead), or None if none is ready."""
        with self._lock:
            spare = self._stock.popleft() if self._stock else None
        self._wanted.set()
        return spare

    def clear(self) -> None:
        """Throw the spares away (the catalog changed) and make new ones."""
        with self._lock:
            self._generation += 1
            stale, self._stock = self._stock, deque()
        for output, _ in stale:
            output.close()
        self._wanted.set()

    def close(self) -> None:
        self._closed = True
        self.clear()
        self._thread.join()
        self.clear()  # one the filler finished while closing

    def _fill(self) -> None:
        while not self._closed:
            self._wanted.wait()
            self._wanted.clear()
            while not self._closed and len(self._stock) < self._count:
                if not self._make_one():
                    break  # try again at the next take or clear, not in a busy loop

    def _make_one(self) -> bool:
        """Make one spare; False when its pipeline failed at once."""
        generation = self._generation
        skip = threading.Event()
        output = self._make(0, 0.0, skip)
        made: list[Output] = []
        try:
            for item in output:
                made.append(item)
                if isinstance(item, Chunk):
                    break
        except Exception:
            # A pipeline that fails this early fails the same way for a session; let the
            # session's own producer meet it and report it there.
            output.close()
            return False
        with self._lock:
            if generation == self._generation and not self._closed:
                self._stock.append((_replay(made, output), skip))
                return True
        output.close()
        return True


def _replay(made: list[Output], output: Iterator[Output]) -> Generator[Output, None, None]:
    """What a spare made ahead, then the rest of its pipeline; closing it closes both."""
    try:
        yield from made
        yield from output
    finally:
        output.close()
