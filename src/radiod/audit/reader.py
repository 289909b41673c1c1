"""Reading radiod's JSON logs for the audit: one streaming pass → a frozen `ReadLog`.

Reading is one pass over each file in binary mode, line by line. A line is only decoded
with orjson when a byte-level look says it can matter: one of the events the replay needs
(channel connects and closes, `session.created`, `split_session.detected`, `server.*`), a
line that may lack its `session_id`/`client_id`, or one whose timestamp is not in radiod's
own shape (an out-of-range one is then skipped and counted as `bad_ts`). The access-log,
mixer and library lines that make up most of a busy log cost a few substring searches and
two dict lookups each. Only the replayed events are kept in memory (`KeptLine`); they are
sorted by time when reading ends, so the logs of several nodes can be given in any order,
and lines with equal timestamps keep their order within a file.
"""

from __future__ import annotations

import gc
import gzip
import io
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

import orjson

from radiod.audit.listener_view import VIEW_EVENTS, SessionView, ViewTally
from radiod.audit.model import (
    CONNECTION_ID_FIELD,
    EXAMPLES,
    KEPT_EVENTS,
    RESTART_EVENT,
    SESSION_CHANNELS,
    SESSION_SCOPED_PREFIXES,
    EventKind,
    KeptLine,
    LineNote,
    Location,
    Place,
    parse_ts,
)

# Byte-level prefilter. orjson writes `"event":"…"` with no spaces; a line written some
# other way simply takes the slow path, so the prefilter can only cost time, never findings.
_EVENT_KEY = b'"event":"'
_KEPT_VALUES = tuple(f'{name}"'.encode() for name in (*KEPT_EVENTS, *sorted(VIEW_EVENTS)))
_SCOPED_VALUES = tuple(prefix.encode() for prefix in SESSION_SCOPED_PREFIXES)
# The fast path also needs the timestamp radiod writes, last on the line: UTC ("Z"), a date
# that exists in years 1000-9999, a time of day, 0 or 6 digits of fraction. Any other
# timestamp is decoded, and counted as `bad_ts` if it does not parse.
_TS_KEY = b'"ts":"'
_TS_TAILS = frozenset({b'Z"}', b'Z"}\n'})
_DATE_RE = re.compile(rb"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}")
_TIME_RE = re.compile(rb"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]")
_GZIP_MAGIC = b"\x1f\x8b"
_LIVE_SPLIT = EventKind.LIVE_SPLIT


class LogReadError(Exception):
    """An input that cannot be read (missing file, corrupt gzip); printed as one line."""


class _RealParts(dict[bytes, bool]):
    """Whether a date (b"YYYY-MM-DD") or a time (b"THH:MM:SS") is real, each checked once:
    both repeat from line to line, so a dict lookup is all most lines cost."""

    def __init__(self, pattern: re.Pattern[bytes], *, date: bool) -> None:
        super().__init__()
        self._pattern = pattern
        self._date = date

    def __missing__(self, text: bytes) -> bool:
        valid = self._pattern.fullmatch(text) is not None
        if valid and self._date:
            try:
                datetime.fromisoformat(text.decode())
            except ValueError:
                valid = False
        self[text] = valid
        return valid


@dataclass(slots=True)
class _NoteTally:
    """Counts of noted lines by key, and the first EXAMPLES of them."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: list[LineNote] = field(default_factory=list)

    def count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def example(self, note: LineNote) -> None:
        if len(self.examples) < EXAMPLES:
            self.examples.append(note)


@dataclass(frozen=True, slots=True)
class UntaggedLines:
    """Lines in the window that lack a `session_id` or `client_id` they should carry."""

    count: int
    missing: dict[str, int]  # tag name → lines missing it
    by_event: dict[str, int]  # event (access-log lines as one group) → lines, most first
    examples: tuple[LineNote, ...]


@dataclass(frozen=True, slots=True)
class SkippedLines:
    """Lines that could not be read as a radiod log line, by reason."""

    by_reason: dict[str, int]
    examples: tuple[LineNote, ...]

    @property
    def count(self) -> int:
        return sum(self.by_reason.values())


@dataclass(frozen=True, slots=True)
class ReadLog:
    """Everything the replay needs from the inputs, read once; `kept` is in time order."""

    sources: tuple[str, ...]
    lines: int
    first_ts: int | None
    last_ts: int | None
    kept: tuple[KeptLine, ...]
    restarts_logged: int
    listener_view: tuple[SessionView, ...]
    untagged: UntaggedLines
    skipped: SkippedLines

    def location(self, place: Place) -> Location:
        return Location(self.sources[place.source], place.line)


@dataclass(slots=True)
class LogReader:
    """Reads any number of log sources; `finish()` hands what it kept to the replay.

    Feed sources in the order given on the command line. Lines may be `bytes` (as read
    from files) or `str` (tests).

    Args:
        since: lines before this time (µs since the epoch) do not count for tags or restarts.
        until: nor lines at or after this time. Connects and closes are kept whatever
            their time: the replay clips channel intervals to the window.
    """

    since: int | None = None
    until: int | None = None
    fast_lines: int = 0  # lines the byte-level prefilter passed without decoding (bench)
    _sources: list[str] = field(default_factory=list)
    _lines: int = 0
    _first_ts: int | None = None
    _last_ts: int | None = None
    _kept: list[KeptLine] = field(default_factory=list)
    _strings: dict[str, str] = field(default_factory=dict)
    _restarts_logged: int = 0
    _views: ViewTally = field(default_factory=ViewTally)
    _untagged: _NoteTally = field(default_factory=_NoteTally)  # counted by event
    _missing_tags: dict[str, int] = field(default_factory=dict)  # tag → lines missing it
    _skipped: _NoteTally = field(default_factory=_NoteTally)

    def feed(self, lines: Iterable[bytes | str], source: str = "<input>") -> None:
        """Read one source (a file's lines, in order) named `source` in locations."""
        with gc_paused():
            self._feed(lines, source)

    def finish(self) -> ReadLog:
        """What was read, with the kept lines in time order."""
        by_event = self._untagged.counts
        # (ts, source, line) is unique, so the order is total and equal timestamps stay in
        # file order (files in the order given).
        self._kept.sort()
        return ReadLog(
            sources=tuple(self._sources),
            lines=self._lines,
            first_ts=self._first_ts,
            last_ts=self._last_ts,
            kept=tuple(self._kept),
            restarts_logged=self._restarts_logged,
            listener_view=self._views.finish(),
            untagged=UntaggedLines(
                count=sum(by_event.values()),
                missing=dict(self._missing_tags),
                by_event=dict(sorted(by_event.items(), key=lambda group: (-group[1], group[0]))),
                examples=tuple(self._untagged.examples),
            ),
            skipped=SkippedLines(dict(self._skipped.counts), tuple(self._skipped.examples)),
        )

    def _feed(self, lines: Iterable[bytes | str], source: str) -> None:
        src = len(self._sources)
        self._sources.append(source)
        head: bytes | None = None
        tail: bytes | None = None
        number = fast = 0
        find, key, kept, scoped = bytes.find, _EVENT_KEY, _KEPT_VALUES, _SCOPED_VALUES
        rfind, ts_key, tails = bytes.rfind, _TS_KEY, _TS_TAILS
        real_date, real_time = _RealParts(_DATE_RE, date=True), _RealParts(_TIME_RE, date=False)
        for number, raw in enumerate(lines, 1):
            line = raw if raw.__class__ is bytes else _as_bytes(raw)
            # Fast path, for lines the replay does not need: one event key, the shape of a JSON
            # object, and the tag rules of `_check_tags` met on the bytes. (Only a nested object
            # repeating `session_id`/`client_id` could fool it; radiod logs none.)
            i = find(line, key)
            if (
                i >= 0
                and not line.startswith(kept, i + 9)
                and find(line, key, i + 9) < 0
                and line[:1] == b"{"
                and (line[-2:] == b"}\n" or line[-1:] == b"}")
                and (j := rfind(line, ts_key)) > 0
                and real_date[line[j + 6 : j + 16]]
                and real_time[line[j + 16 : j + 25]]
                and (
                    (tail := line[j + 25 :]) in tails
                    or (tail[:1] == b"." and tail[7:] in tails and tail[1:7].isdigit())
                )
            ):
                tagged = b'"session_id":"' in line
                if (tagged or not line.startswith(scoped, i + 9)) and (
                    b'"channel"' not in line
                    or (
                        b'"client_id":"' in line
                        and (tagged or b'"channel":"page"' in line or b'"channel":"api"' in line)
                    )
                ):
                    if head is None:
                        head = line
                    tail = line
                    fast += 1
                    continue
            self._parse(line, src, number)
        self._lines += number
        self.fast_lines += fast
        # Lines that took the fast path were never decoded; the first and last of them
        # bound the log's time range (open channels run to its end).
        for line in (head, tail):
            if line is not None:
                self._see_ts(_ts_of(line))

    def _see_ts(self, ts: int | None) -> None:
        if ts is None:
            return
        if self._first_ts is None or ts < self._first_ts:
            self._first_ts = ts
        if self._last_ts is None or ts > self._last_ts:
            self._last_ts = ts

    def _location(self, src: int, number: int) -> Location:
        return Location(self._sources[src], number)

    def _skip(self, reason: str, src: int, number: int) -> None:
        self._skipped.count(reason)
        self._skipped.example(LineNote(self._location(src, number), None, reason))

    def _intern(self, value: object) -> str | None:
        # Session and client IDs repeat on every line of a connection: keep one copy each.
        if type(value) is not str or not value:
            return None
        return self._strings.setdefault(value, value)

    def _parse(self, line: bytes, src: int, number: int) -> None:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            if line.strip():  # blank lines are not worth a mention
                self._skip("not_json", src, number)
            return
        if type(record) is not dict:
            self._skip("not_object", src, number)
            return
        event = record.get("event")
        if type(event) is not str:
            self._skip("no_event", src, number)
            return
        ts = parse_ts(record.get("ts"))
        if ts is None:
            self._skip("bad_ts", src, number)
            return
        self._see_ts(ts)
        in_window = (self.since is None or ts >= self.since) and (
            self.until is None or ts < self.until
        )
        if in_window:
            self._check_tags(record, event, src, number)
        kind = KEPT_EVENTS.get(event)
        if kind is not None:
            self._kept.append(self._kept_line(record, kind, ts, src, number))
        elif in_window and event in VIEW_EVENTS:
            self._views.see(event, record, ts)
            if event == RESTART_EVENT:
                self._restarts_logged += 1

    def _kept_line(
        self, record: dict[str, Any], kind: EventKind, ts: int, src: int, number: int
    ) -> KeptLine:
        """The fields the replay reads from one of its events, IDs interned."""
        intern = self._intern
        client_id = intern(record.get("client_id"))
        if kind is _LIVE_SPLIT:
            audio_session_id = intern(record.get("audio_session_id"))
            events_session_id = intern(record.get("events_session_id"))
            return KeptLine(
                ts, src, number, kind, audio_session_id, client_id, None, events_session_id
            )
        session_id = intern(record.get("session_id"))
        connection_field = CONNECTION_ID_FIELD.get(kind)
        if connection_field is None:
            return KeptLine(ts, src, number, kind, session_id, client_id)
        # Connection ids are mostly unique: interning them would only cost a dict entry.
        connection_id = record.get(connection_field)
        if type(connection_id) is not str or not connection_id:
            connection_id = None
        return KeptLine(ts, src, number, kind, session_id, client_id, connection_id)

    def _check_tags(self, record: dict[str, Any], event: str, src: int, number: int) -> None:
        channel = record.get("channel")
        missing = []
        # `rejected`: the request named no usable session (malformed, or none at all).
        if (
            record.get("session_id") is None
            and "rejected" not in record
            and (
                event.startswith(SESSION_SCOPED_PREFIXES)
                or (type(channel) is str and channel in SESSION_CHANNELS)
            )
        ):
            missing.append("session_id")
        if channel is not None and record.get("client_id") is None:
            missing.append("client_id")
        if not missing:
            return
        for name in missing:
            self._missing_tags[name] = self._missing_tags.get(name, 0) + 1
        # Access-log events are "METHOD /path?query status …": group them, do not list URLs.
        self._untagged.count(event if " " not in event else "(access log)")
        self._untagged.example(LineNote(self._location(src, number), event, ",".join(missing)))


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while the audit reads or replays.

    The audit makes hundreds of thousands of small objects and no reference cycles; the
    cyclic collector's passes over them cost a quarter of the run (bench/audit.py).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@contextmanager
def open_log(name: str, stdin: BinaryIO | None) -> Iterator[BinaryIO]:
    """A binary line iterator over a plain or gzip file; `.gz` names must be gzip.

    `-` reads `stdin` (default `sys.stdin.buffer`), gzip or plain as its first bytes say.
    """
    if name == "-":
        raw: BinaryIO = stdin if stdin is not None else sys.stdin.buffer
        buffered = raw if hasattr(raw, "peek") else io.BufferedReader(raw)  # type: ignore[arg-type]
        if buffered.peek(2)[:2] == _GZIP_MAGIC:  # type: ignore[attr-defined]
            yield gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[misc]
        else:
            yield buffered
        return
    with open(name, "rb") as plain:
        if name.endswith(".gz") or plain.peek(2)[:2] == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=plain, mode="rb") as unzipped:
                yield unzipped  # type: ignore[misc]
        else:
            yield plain


def _as_bytes(raw: bytes | str | bytearray | memoryview) -> bytes:
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else bytes(raw)


def _ts_of(line: bytes) -> int | None:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return parse_ts(record.get("ts")) if type(record) is dict else None
