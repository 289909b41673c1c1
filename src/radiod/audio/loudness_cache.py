"""The on-disk cache of loudness measurements, keyed by path, size and mtime.

Measuring decodes a whole file, so it happens once per file version: the cache survives
restarts and is shared by every process of the server (the sweep writes, mixers read, in
threads or in worker processes). SQLite does the sharing: one indexed row read per track
start, readers never blocked by the writer (WAL), and no reload of a whole file when one
measurement lands. A corrupt or unreadable cache is only a cache: it is logged, moved
aside and rebuilt, and until then tracks play at unity or at their tags.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from radiod.audio.loudness import Loudness

log = structlog.get_logger(__name__)

CACHE_NAME = "loudness.sqlite3"
# A reader waits at most this long for a lock: a mixer thread must not stall on the cache.
READ_TIMEOUT_SECONDS = 0.5
WRITE_TIMEOUT_SECONDS = 5.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS loudness (
    path BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    lufs REAL,            -- NULL: measured and found unmeasurable (not tried again)
    true_peak REAL,
    error TEXT
)
"""

Signature = tuple[int, int]  # (size, mtime_ns)


def default_cache_path() -> Path:
    """`$XDG_CACHE_HOME/radiod/loudness.sqlite3`, or under `~/.cache` (the demo's neighbour)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    cache = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return cache / "radiod" / CACHE_NAME


def file_signature(path: Path) -> Signature | None:
    """(size, mtime_ns) of `path`, None when it cannot be stat'ed: a changed file is a new key."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


class LoudnessCache:
    """Measurements by file; `get` and `put` never raise (a broken cache means no cache)."""

    def __init__(self, location: str | Path) -> None:
        self.path = Path(location) if str(location) else default_cache_path()

    def get(self, path: Path, signature: Signature | None) -> tuple[float, float | None] | None:
        """(LUFS, dBTP) measured for this version of `path`; None: not measured, or cannot be."""
        row = self._row(path, signature)
        if row is None or row[0] is None:
            return None
        return row[0], row[1]

    def known(self, path: Path, signature: Signature | None) -> bool:
        """Whether this version of `path` was measured already (successfully or not)."""
        return self._row(path, signature) is not None

    def put(self, path: Path, signature: Signature, result: Loudness | str) -> None:
        """Record a measurement, or (a string) why the file cannot be measured."""
        lufs, peak, error = (
            (None, None, result)
            if isinstance(result, str)
            else (result.lufs, result.true_peak, None)
        )
        row = (os.fsencode(path), *signature, lufs, peak, error)
        for _attempt in range(2):
            try:
                with self._connect(WRITE_TIMEOUT_SECONDS, create=True) as db:
                    db.execute("INSERT OR REPLACE INTO loudness VALUES (?, ?, ?, ?, ?, ?)", row)
                return
            except OSError as exc:  # the cache folder cannot be created
                log.warning("loudness.cache_write_failed", path=str(self.path), error=str(exc))
                return
            except sqlite3.DatabaseError as exc:
                if not self._recover(exc):
                    return

    def _row(
        self, path: Path, signature: Signature | None
    ) -> tuple[float | None, float | None] | None:
        if signature is None or not self.path.exists():
            return None
        try:
            with self._connect(READ_TIMEOUT_SECONDS, create=False) as db:
                return db.execute(
                    "SELECT lufs, true_peak FROM loudness WHERE path = ? AND size = ? "
                    "AND mtime_ns = ?",
                    (os.fsencode(path), *signature),
                ).fetchone()
        except sqlite3.DatabaseError as exc:
            # Rebuilding is the writer's job; a reader just plays without the figure.
            log.warning("loudness.cache_unreadable", path=str(self.path), error=str(exc))
            return None

    @contextlib.contextmanager
    def _connect(self, timeout: float, *, create: bool) -> Iterator[sqlite3.Connection]:
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        try:
            if create:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(_SCHEMA)
            yield db
        finally:
            db.close()

    def _recover(self, exc: sqlite3.DatabaseError) -> bool:
        """Move a corrupt cache aside so the next write starts a new one; False if it cannot
        be helped (a locked database stays: the next measurement tries again)."""
        if isinstance(exc, sqlite3.OperationalError):
            log.warning("loudness.cache_write_failed", path=str(self.path), error=str(exc))
            return False
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        log.error(
            "loudness.cache_corrupt", path=str(self.path), error=str(exc), moved_to=str(aside)
        )
        try:
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        except OSError as move:
            log.error("loudness.cache_unusable", path=str(self.path), error=str(move))
            return False
        return True
