"""`MixerStats`: the figures a mixer reports as it runs, for `radiod.metrics` to count.

A protocol rather than the metrics object itself, because a mixer in a worker process has
no Prometheus registry: there it reports to a relay that sends each figure up the worker's
channel, and the pool counts it under that worker's label (`audio/pool.py`).
"""

from __future__ import annotations

from typing import Protocol


class MixerStats(Protocol):
    """Called from the thread that steps the mixer (`radiod.metrics.WorkerStats`)."""

    def chunk_produced(self, audio_seconds: float, busy_seconds: float, chunks: int = 1) -> None:
        """`chunks` chunks (a worker's relay sends several at once) made `audio_seconds` of
        audio in `busy_seconds` of wall time."""
        ...

    def underrun(self) -> None:
        """Production fell behind the wall clock: listeners have used up their burst."""
        ...

    def pipeline_failed(self) -> None: ...

    def mixer_failed(self) -> None: ...

    def tracks_failed(self, count: int) -> None: ...


# The figures a relay may carry (a worker's `stats` message names one).
STAT_NAMES = frozenset(
    {"chunk_produced", "underrun", "pipeline_failed", "mixer_failed", "tracks_failed"}
)


class Uncounted:
    """`MixerStats` for a mixer nobody counts (tests, benchmarks)."""

    def chunk_produced(self, audio_seconds: float, busy_seconds: float, chunks: int = 1) -> None:
        pass

    def underrun(self) -> None:
        pass

    def pipeline_failed(self) -> None:
        pass

    def mixer_failed(self) -> None:
        pass

    def tracks_failed(self, count: int) -> None:
        pass


UNCOUNTED = Uncounted()


class LeadWatch:
    """When one run's production falls behind the wall clock: an underrun, once per spell.

    Only after the run was once ahead of it: a first chunk slower than real time (a cold
    start) keeps a listener waiting for its first bytes, it does not run it dry.
    """

    def __init__(self) -> None:
        self._led = False
        self._behind = False

    def reset(self) -> None:
        """A new run (a start or resume re-anchors the lead)."""
        self._led = self._behind = False

    def fell_behind(self, lead: float) -> bool:
        """Seconds of audio in hand now; True when this starts a spell behind."""
        behind = self._led and lead < 0
        started = behind and not self._behind
        self._behind = behind
        self._led = self._led or lead > 0
        return started
