"""The audit as a library: feed log sources, get an `AuditReport` (the CLI's engine)."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from radiod.audit.model import AuditReport, as_us
from radiod.audit.reader import LogReader, LogReadError, gc_paused, open_log
from radiod.audit.replay import replay


class LogAuditor:
    """Collects what the audit needs from any number of log sources, then reports.

    Feed sources in the order given on the command line; `report()` may be called once
    everything is fed. Lines may be `bytes` (as read from files) or `str` (tests).

    Args:
        since: ignore lines before this time (µs since the epoch, see `parse_ts`).
        until: ignore lines at or after this time. Channel intervals that cross either
            bound are clipped to it rather than dropped.
    """

    __slots__ = ("_reader", "since", "until")

    def __init__(self, since: int | None = None, until: int | None = None) -> None:
        self.since, self.until = since, until
        self._reader = LogReader(since=since, until=until)

    @property
    def fast_lines(self) -> int:
        """Lines the byte-level prefilter passed without decoding (bench/audit.py)."""
        return self._reader.fast_lines

    def feed(self, lines: Iterable[bytes | str], source: str = "<input>") -> None:
        """Read one source (a file's lines, in order) named `source` in locations."""
        self._reader.feed(lines, source)

    def report(self) -> AuditReport:
        """Build intervals in time order, find splits and orphans, and summarise."""
        with gc_paused():
            return replay(self._reader.finish(), self.since, self.until)


def audit_lines(
    lines: Iterable[bytes | str],
    *,
    source: str = "<input>",
    since: int | datetime | str | None = None,
    until: int | datetime | str | None = None,
) -> AuditReport:
    """Audit one stream of log lines (for several, use `LogAuditor.feed` once per source).

    Args:
        lines: JSON lines, `bytes` or `str`, with or without their newline.
        source: the name locations use ("radiod.log" → "radiod.log:17").
        since, until: optional time window: µs since the epoch, an aware or naive (UTC)
            datetime, or an ISO-8601 string.
    """
    auditor = LogAuditor(since=as_us(since), until=as_us(until))
    auditor.feed(lines, source)
    return auditor.report()


def audit_paths(
    paths: Sequence[str | Path],
    *,
    since: int | datetime | str | None = None,
    until: int | datetime | str | None = None,
    stdin: BinaryIO | None = None,
) -> AuditReport:
    """Audit log files (plain or gzip; `-` reads `stdin`, default `sys.stdin.buffer`).

    Raises:
        LogReadError: a file is missing or unreadable, or a gzip stream is corrupt.
    """
    auditor = LogAuditor(since=as_us(since), until=as_us(until))
    for path in paths:
        name = str(path)
        try:
            with open_log(name, stdin) as stream:
                auditor.feed(stream, name)
        except (OSError, EOFError, zlib.error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise LogReadError(f"cannot read {name}: {reason or type(exc).__name__}") from None
    return auditor.report()
