"""Measure the library's loudness in the background, once per file version.

Measuring decodes a whole track (~250x realtime with the true-peak meter on this machine),
so it never runs on the event loop and never before a session starts: one low-priority
thread walks the catalog, measures what the cache does not know, and records each figure as
it lands. A track the sweep has not reached plays at unity or at its tag; its next play
uses the measurement. The catalog is looked at again every `POLL_SECONDS` (an unchanged
library is the same tuple object, so that costs nothing) to measure added or changed files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import structlog

from radiod.audio.loudness import MeasureError, measure_file
from radiod.audio.loudness_cache import LoudnessCache, file_signature
from radiod.library import printable

if TYPE_CHECKING:
    from radiod.catalog import Catalog
    from radiod.config import AudioConfig
    from radiod.library import Track

log = structlog.get_logger(__name__)

POLL_SECONDS = 5.0
# Nice value of the sweep thread (Linux nices threads one by one): mixers come first.
SWEEP_NICENESS = 10
STOP_TIMEOUT_SECONDS = 5.0


class LoudnessSweep:
    """One thread that measures every track of `catalog` missing from `cache`."""

    def __init__(self, catalog: Catalog, cache: LoudnessCache) -> None:
        self._catalog = catalog
        self._cache = cache
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="loudness-sweep", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end after the file it is measuring, and wait a little for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_SECONDS)

    def sweep(self) -> int:
        """Measure what the cache lacks, untagged tracks first; returns how many were measured."""
        tracks = sorted(self._catalog.tracks(), key=lambda track: track.replaygain is not None)
        count = 0
        for track in tracks:
            if self._stop.is_set():
                break
            signature = file_signature(track.path)
            if signature is None or self._cache.known(track.path, signature):
                continue
            self._measure(track, signature)
            count += 1
        return count

    def _measure(self, track: Track, signature: tuple[int, int]) -> None:
        started = time.perf_counter()
        try:
            loudness = measure_file(track.path)
        except MeasureError as exc:
            # Recorded, so it is not tried again until the file changes; it plays at unity.
            log.warning("loudness.unmeasurable", path=printable(str(track.path)), reason=str(exc))
            self._cache.put(track.path, signature, str(exc))
        else:
            self._cache.put(track.path, signature, loudness)
            log.info(
                "loudness.measured",
                path=printable(str(track.path)),
                lufs=loudness.lufs,
                true_peak=loudness.true_peak,
                seconds=round(time.perf_counter() - started, 3),
            )

    def _run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SWEEP_NICENESS)
        seen: tuple[Track, ...] | None = None
        while not self._stop.is_set():
            tracks = self._catalog.tracks()
            if tracks is not seen:
                seen = tracks
                try:
                    self.sweep()
                except Exception:  # a bug here must cost the loudness, never the server
                    log.exception("loudness.sweep_failed")
            self._stop.wait(POLL_SECONDS)


def loudness_sweep_ctx(
    audio: AudioConfig, catalog: Catalog
) -> Callable[[Any], AsyncIterator[None]]:
    """An aiohttp `cleanup_ctx` running the sweep while the server runs (if loudness is on)."""

    async def ctx(_app: Any) -> AsyncIterator[None]:
        sweep = LoudnessSweep(catalog, LoudnessCache(audio.loudness_cache))
        if audio.loudness:
            sweep.start()
        yield
        await asyncio.get_running_loop().run_in_executor(None, sweep.stop)

    return ctx
