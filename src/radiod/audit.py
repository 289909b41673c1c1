"""`radiod audit LOG…`: find split sessions, untagged lines and orphans in radiod's JSON logs.

The audit rebuilds, per client cookie (`client_id`), when its audio channel
(`stream.connected` → `stream.closed`, matched by `listener_id`) and its events channel
(`events.connected` → `events.closed`, matched by `event_client_id`) were attached to which
session. A **split session** is an audio interval and an events interval of the same client,
on different session IDs, that overlap in time: the rule the server applies live when it
logs `split_session.detected`, so the two are cross-checked.

Rules the intervals follow:
- a channel still open when the logs end runs to the last timestamp of all inputs;
- a close with no connect (connected before the log begins) starts at the first timestamp;
- `server.started` ends every channel the same file still had open, at that file's last
  kept line before it (sessions live in memory: a crashed server's connections are gone),
  and `server.stopped` ends them at once;
- with --since/--until, every connect and close is still read, and intervals are clipped
  to the window; all other lines outside the window are ignored.

A **restart** is a `session.created` for a client that has no audio attached at that moment
and whose last audio connection (on another session) closed at most
RESTART_WINDOW_SECONDS before: the page gave up on a dead stream and started over.

Reading is one pass over each file in binary mode, line by line. A line is only decoded
with orjson when a byte-level look says it can matter: one of the events the replay needs
(channel connects and closes, `session.created`, `split_session.detected`, `server.*`), a
line that may lack its `session_id`/`client_id`, or one whose timestamp is not in radiod's
own shape (an out-of-range one is then skipped and counted as `bad_ts`). The access-log,
mixer and library lines that make up most of a busy log cost a few substring searches and
two dict lookups each. Only the replayed events are kept in memory (about 250 bytes each);
they are sorted by time before the intervals are built, so the logs of several nodes can
be given in any order, and lines with equal timestamps keep their order within a file.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import io
import re
import sys
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import orjson

SCHEMA_VERSION = 1
# A session.created this soon after the client's audio went away counts as a restart.
RESTART_WINDOW_SECONDS = 60.0
EXAMPLES = 5

# Events whose lines must carry session_id: they are always about one session.
SESSION_SCOPED_PREFIXES = ("stream.", "events.", "mixer.", "session.", "split_session.")
# Channels whose request lines must carry session_id (api and page may come before one exists).
SESSION_CHANNELS = frozenset({"audio", "events"})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_FOREVER = 1 << 62  # sorts after every real source index / line number

# Codes of the lines kept for the time-ordered replay.
_AUDIO_OPEN, _AUDIO_CLOSE, _EVENTS_OPEN, _EVENTS_CLOSE = 0, 1, 2, 3
_CREATED, _LIVE_SPLIT, _SERVER_STARTED, _SERVER_STOPPED = 4, 5, 6, 7
_KEPT = {
    "stream.connected": _AUDIO_OPEN,
    "stream.closed": _AUDIO_CLOSE,
    "events.connected": _EVENTS_OPEN,
    "events.closed": _EVENTS_CLOSE,
    "session.created": _CREATED,
    "split_session.detected": _LIVE_SPLIT,
    "server.started": _SERVER_STARTED,
    "server.stopped": _SERVER_STOPPED,
}
_AUDIO, _EVENTS = "audio", "events"

# Byte-level prefilter. orjson writes `"event":"…"` with no spaces; a line written some
# other way simply takes the slow path, so the prefilter can only cost time, never findings.
_EVENT_KEY = b'"event":"'
_KEPT_VALUES = tuple(f'{name}"'.encode() for name in (*_KEPT, "session.restart"))
_SCOPED_VALUES = tuple(prefix.encode() for prefix in SESSION_SCOPED_PREFIXES)
# The fast path also needs the timestamp radiod writes, last on the line: UTC ("Z"), a date
# that exists in years 1000-9999, a time of day, 0 or 6 digits of fraction. Any other
# timestamp is decoded, and counted as `bad_ts` if it does not parse.
_TS_KEY = b'"ts":"'
_TS_TAILS = frozenset({b'Z"}', b'Z"}\n'})
_DATE_RE = re.compile(rb"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}")
_TIME_RE = re.compile(rb"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]")


class _Valid(dict[bytes, bool]):
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


class LogReadError(Exception):
    """An input that cannot be read (missing file, corrupt gzip); printed as one line."""


# -- values ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Location:
    """A line of the input: file name as given (`-` for stdin) and 1-based line number."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line}


@dataclass(frozen=True, slots=True)
class SplitIncident:
    """One client's audio and events attached to two different sessions at once.

    `start`/`end` span every overlap of the two channels on these two sessions (clipped to
    --since/--until); `ongoing` says the overlap was still open when the log ended.
    """

    client_id: str
    audio_session_id: str
    events_session_id: str
    start: int  # µs since the epoch
    end: int
    overlaps: int
    ongoing: bool
    audio_connect: Location | None  # None: connected before the log begins
    events_connect: Location | None
    live_detections: int

    @property
    def live_detected(self) -> bool:
        return self.live_detections > 0

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / 1e6


@dataclass(frozen=True, slots=True)
class LiveOnlySplit:
    """A `split_session.detected` the server logged that the audit could not reconstruct."""

    client_id: str | None
    audio_session_id: str | None
    events_session_id: str | None
    ts: int
    at: Location
    count: int


@dataclass(frozen=True, slots=True)
class SessionWithoutAudio:
    """A session created in the window that no audio listener ever attached to."""

    session_id: str
    client_id: str | None
    created: int
    at: Location
    events_attached: bool


@dataclass(frozen=True, slots=True)
class EventsWithoutAudio:
    """A session that event clients attached to but no audio listener ever did."""

    session_id: str
    client_ids: tuple[str, ...]
    connections: int
    first_connect: int
    at: Location | None


@dataclass(frozen=True, slots=True)
class LineNote:
    """An example of an untagged or skipped line."""

    at: Location
    event: str | None
    problem: str  # "session_id", "client_id", "session_id,client_id", or a skip reason


@dataclass(frozen=True, slots=True)
class Summary:
    lines: int
    first_ts: int | None
    last_ts: int | None
    sessions: int
    clients: int
    listeners: int
    event_connections: int
    restarts: int
    restarts_logged: int
    splits: int
    live_splits: int
    live_only_splits: int
    untagged: int
    sessions_without_audio: int
    events_without_audio: int
    skipped_lines: int


@dataclass(frozen=True, slots=True)
class AuditReport:
    """Everything `radiod audit` found; `to_json()` is the documented `--json` schema."""

    summary: Summary
    splits: tuple[SplitIncident, ...]
    live_only_splits: tuple[LiveOnlySplit, ...]
    sessions_without_audio: tuple[SessionWithoutAudio, ...]
    events_without_audio: tuple[EventsWithoutAudio, ...]
    untagged_count: int
    untagged_missing: dict[str, int]
    untagged_by_event: dict[str, int]
    untagged_examples: tuple[LineNote, ...]
    skipped_by_reason: dict[str, int]
    skipped_examples: tuple[LineNote, ...]
    since: int | None = None
    until: int | None = None

    @property
    def clean(self) -> bool:
        """No split session, neither reconstructed nor logged live."""
        return not self.splits and not self.live_only_splits

    @property
    def exit_code(self) -> int:
        return 0 if self.clean else 1

    def to_json(self) -> dict[str, Any]:
        """The `--json` document (schema version 1; see the README)."""
        s = self.summary
        return {
            "version": SCHEMA_VERSION,
            "clean": self.clean,
            "summary": {
                "lines": s.lines,
                "first_ts": format_ts(s.first_ts),
                "last_ts": format_ts(s.last_ts),
                "since": format_ts(self.since),
                "until": format_ts(self.until),
                "sessions": s.sessions,
                "clients": s.clients,
                "listeners": s.listeners,
                "event_connections": s.event_connections,
                "restarts": s.restarts,
                "restarts_logged": s.restarts_logged,
                "splits": s.splits,
                "live_splits": s.live_splits,
                "live_only_splits": s.live_only_splits,
                "untagged": s.untagged,
                "sessions_without_audio": s.sessions_without_audio,
                "events_without_audio": s.events_without_audio,
                "skipped_lines": s.skipped_lines,
            },
            "splits": [
                {
                    "client_id": x.client_id,
                    "audio_session_id": x.audio_session_id,
                    "events_session_id": x.events_session_id,
                    "start": format_ts(x.start),
                    "end": format_ts(x.end),
                    "seconds": round(x.seconds, 6),
                    "ongoing": x.ongoing,
                    "overlaps": x.overlaps,
                    "audio_connect": _loc_json(x.audio_connect),
                    "events_connect": _loc_json(x.events_connect),
                    "live_detected": x.live_detected,
                    "live_detections": x.live_detections,
                }
                for x in self.splits
            ],
            "live_only_splits": [
                {
                    "client_id": x.client_id,
                    "audio_session_id": x.audio_session_id,
                    "events_session_id": x.events_session_id,
                    "ts": format_ts(x.ts),
                    "at": x.at.to_json(),
                    "count": x.count,
                }
                for x in self.live_only_splits
            ],
            "orphans": {
                "sessions_without_audio": [
                    {
                        "session_id": x.session_id,
                        "client_id": x.client_id,
                        "created": format_ts(x.created),
                        "at": x.at.to_json(),
                        "events_attached": x.events_attached,
                    }
                    for x in self.sessions_without_audio
                ],
                "events_without_audio": [
                    {
                        "session_id": x.session_id,
                        "client_ids": list(x.client_ids),
                        "connections": x.connections,
                        "first_connect": format_ts(x.first_connect),
                        "at": _loc_json(x.at),
                    }
                    for x in self.events_without_audio
                ],
            },
            "untagged": {
                "count": self.untagged_count,
                "missing": dict(self.untagged_missing),
                "by_event": dict(self.untagged_by_event),
                "examples": [
                    {"at": x.at.to_json(), "event": x.event, "missing": x.problem.split(",")}
                    for x in self.untagged_examples
                ],
            },
            "skipped_lines": s.skipped_lines,
            "skipped": {
                "by_reason": dict(self.skipped_by_reason),
                "examples": [
                    {"at": x.at.to_json(), "reason": x.problem} for x in self.skipped_examples
                ],
            },
        }


def _loc_json(loc: Location | None) -> dict[str, Any] | None:
    return None if loc is None else loc.to_json()


# -- time --------------------------------------------------------------------------------------


def parse_ts(value: object) -> int | None:
    """An ISO-8601 timestamp as integer µs since the epoch (naive means UTC); None if invalid.

    Integers rather than strings because `isoformat()` drops `.000000` on whole seconds,
    which would sort "…:01Z" after "…:01.5Z".
    """
    if type(value) is not str:
        return None
    try:
        dt = datetime.fromisoformat(value)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        # Years 1-9999 in UTC: "0001-01-01T00:00+01:00" parses, but lies before year 1
        # and could never be printed back.
        dt = dt.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return (dt - _EPOCH) // _ONE_US


def format_ts(us: int | None) -> str | None:
    """µs since the epoch as the log's own format, "2026-11-24T13:40:01.123456Z"."""
    if us is None:
        return None
    return (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _cli_time(text: str) -> int:
    us = parse_ts(text)
    if us is None:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}")
    return us


# -- reading -----------------------------------------------------------------------------------

# A place in the merged logs: (µs, source index, line number, …). Tuple order is time order,
# with log order breaking timestamp ties; kept lines serve as their own positions.
_Pos = tuple[Any, ...]


@dataclass(slots=True)
class _Interval:
    kind: str
    session_id: str | None
    client_id: str | None
    conn: str | None  # listener_id or event_client_id
    start: _Pos
    end: _Pos | None
    connect: _Pos | None  # the connect line; None: connected before the log begins


@dataclass(slots=True)
class _Incident:
    start: _Pos
    end: _Pos
    audio_connect: _Pos | None
    events_connect: _Pos | None
    overlaps: int = 1


@dataclass(slots=True)
class LogAuditor:
    """Collects what the audit needs from any number of log sources, then reports.

    Feed sources in the order given on the command line; `report()` may be called once
    everything is fed. Lines may be `bytes` (as read from files) or `str` (tests).

    Args:
        since: ignore lines before this time (µs since the epoch, see `parse_ts`).
        until: ignore lines at or after this time. Channel intervals that cross either
            bound are clipped to it rather than dropped.
    """

    since: int | None = None
    until: int | None = None
    fast_lines: int = 0  # lines the byte-level prefilter passed without decoding (bench)
    _sources: list[str] = field(default_factory=list)
    _lines: int = 0
    _first_ts: int | None = None
    _last_ts: int | None = None
    _kept: list[tuple[Any, ...]] = field(default_factory=list)
    _strings: dict[str, str] = field(default_factory=dict)
    _restarts_logged: int = 0
    _untagged: int = 0
    _untagged_missing: dict[str, int] = field(default_factory=dict)
    _untagged_by_event: dict[str, int] = field(default_factory=dict)
    _untagged_examples: list[LineNote] = field(default_factory=list)
    _skipped: dict[str, int] = field(default_factory=dict)
    _skipped_examples: list[LineNote] = field(default_factory=list)

    def feed(self, lines: Iterable[bytes | str], source: str = "<input>") -> None:
        """Read one source (a file's lines, in order) named `source` in locations."""
        with _gc_paused():
            self._feed(lines, source)

    def _feed(self, lines: Iterable[bytes | str], source: str) -> None:
        src = len(self._sources)
        self._sources.append(source)
        head: bytes | None = None
        tail: bytes | None = None
        number = fast = 0
        find, key, kept, scoped = bytes.find, _EVENT_KEY, _KEPT_VALUES, _SCOPED_VALUES
        rfind, ts_key, tails = bytes.rfind, _TS_KEY, _TS_TAILS
        real_date, real_time = _Valid(_DATE_RE, date=True), _Valid(_TIME_RE, date=False)
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

    def _skip(self, reason: str, src: int, number: int) -> None:
        self._skipped[reason] = self._skipped.get(reason, 0) + 1
        if len(self._skipped_examples) < EXAMPLES:
            self._skipped_examples.append(
                LineNote(Location(self._sources[src], number), None, reason)
            )

    def _intern(self, value: object) -> str | None:
        # Session and client IDs repeat on every line of a connection: keep one copy each.
        if type(value) is not str or not value:
            return None
        return self._strings.setdefault(value, value)

    def _parse(self, line: bytes, src: int, number: int) -> None:
        try:
            d = orjson.loads(line)
        except orjson.JSONDecodeError:
            if line.strip():  # blank lines are not worth a mention
                self._skip("not_json", src, number)
            return
        if type(d) is not dict:
            self._skip("not_object", src, number)
            return
        event = d.get("event")
        if type(event) is not str:
            self._skip("no_event", src, number)
            return
        ts = parse_ts(d.get("ts"))
        if ts is None:
            self._skip("bad_ts", src, number)
            return
        self._see_ts(ts)
        in_window = (self.since is None or ts >= self.since) and (
            self.until is None or ts < self.until
        )
        if in_window:
            self._check_tags(d, event, src, number)
        code = _KEPT.get(event)
        if code is None:
            if event == "session.restart" and in_window:
                self._restarts_logged += 1
            return
        if code == _LIVE_SPLIT:
            a, b = d.get("audio_session_id"), d.get("events_session_id")
        elif code in (_AUDIO_OPEN, _AUDIO_CLOSE):
            a, b = d.get("session_id"), d.get("listener_id")
        elif code in (_EVENTS_OPEN, _EVENTS_CLOSE):
            a, b = d.get("session_id"), d.get("event_client_id")
        else:
            a, b = d.get("session_id"), None
        intern = self._intern
        if code in (_AUDIO_OPEN, _AUDIO_CLOSE, _EVENTS_OPEN, _EVENTS_CLOSE):
            # Connection ids are mostly unique: interning them would only cost a dict entry.
            b = b if type(b) is str and b else None
        else:
            b = intern(b)
        self._kept.append((ts, src, number, code, intern(a), b, intern(d.get("client_id"))))

    def _check_tags(self, d: dict[str, Any], event: str, src: int, number: int) -> None:
        channel = d.get("channel")
        missing = []
        # `rejected`: the request named no usable session (malformed, or none at all).
        if (
            d.get("session_id") is None
            and "rejected" not in d
            and (
                event.startswith(SESSION_SCOPED_PREFIXES)
                or (type(channel) is str and channel in SESSION_CHANNELS)
            )
        ):
            missing.append("session_id")
        if channel is not None and d.get("client_id") is None:
            missing.append("client_id")
        if not missing:
            return
        self._untagged += 1
        for name in missing:
            self._untagged_missing[name] = self._untagged_missing.get(name, 0) + 1
        # Access-log events are "METHOD /path?query status …": group them, do not list URLs.
        group = event if " " not in event else "(access log)"
        self._untagged_by_event[group] = self._untagged_by_event.get(group, 0) + 1
        if len(self._untagged_examples) < EXAMPLES:
            self._untagged_examples.append(
                LineNote(Location(self._sources[src], number), event, ",".join(missing))
            )

    # -- the replay ------------------------------------------------------------------------

    def report(self) -> AuditReport:
        """Build intervals in time order, find splits and orphans, and summarise."""
        with _gc_paused():
            return _Replay(self).run()


@contextmanager
def _gc_paused() -> Iterator[None]:
    # The audit makes hundreds of thousands of small objects and no reference cycles; the
    # cyclic collector's passes over them cost a quarter of the run (bench/audit.py).
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _as_bytes(raw: bytes | str | bytearray | memoryview) -> bytes:
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else bytes(raw)


def _ts_of(line: bytes) -> int | None:
    try:
        d = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return parse_ts(d.get("ts")) if type(d) is dict else None


class _Replay:
    """One pass over the kept lines in time order; the analysis half of `LogAuditor`."""

    def __init__(self, auditor: LogAuditor) -> None:
        self.a = auditor
        first, last = auditor._first_ts, auditor._last_ts
        self.log_start = (first if first is not None else 0, -1, -1)
        self.log_end = (last if last is not None else 0, _FOREVER, _FOREVER)
        self.lo = (auditor.since, -1, -1) if auditor.since is not None else self.log_start
        self.hi = (auditor.until, -1, -1) if auditor.until is not None else self.log_end
        self.intervals: list[_Interval] = []
        self.created: list[tuple[str, str | None, int, _Pos]] = []
        self.live: dict[tuple[Any, Any, Any], list[Any]] = {}
        self.restarts = 0

    def at(self, where: _Pos) -> Location:
        return Location(self.a._sources[where[1]], where[2])

    def loc(self, where: _Pos | None) -> Location | None:
        return None if where is None else self.at(where)

    def in_window(self, ts: int) -> bool:
        a = self.a
        return (a.since is None or ts >= a.since) and (a.until is None or ts < a.until)

    def run(self) -> AuditReport:
        self.build_intervals()
        kept = [iv for iv in (self.clip(iv) for iv in self.intervals) if iv is not None]
        splits = self.find_splits(kept)
        return self.summarise(kept, splits)

    def build_intervals(self) -> None:
        a = self.a
        # (kind, connection id) -> intervals still open, oldest first. A browser that
        # re-requests the stream reuses its listener id, so two may briefly be open at once.
        opened: dict[tuple[str, str | None], list[_Interval]] = {}
        last_pos: dict[int, _Pos] = {}
        audio_open: dict[str | None, int] = {}
        last_audio_close: dict[str | None, tuple[int, str | None]] = {}
        restart_window = int(RESTART_WINDOW_SECONDS * 1e6)

        def ended(iv: _Interval, pos: _Pos) -> None:
            iv.end = pos
            if iv.kind == _AUDIO:
                audio_open[iv.client_id] = max(audio_open.get(iv.client_id, 0) - 1, 0)
                last_audio_close[iv.client_id] = (pos[0], iv.session_id)

        # (ts, source, line) is unique, so plain tuple order never reaches the other fields,
        # and lines with equal timestamps stay in file order (files in the order given).
        a._kept.sort()
        for pos in a._kept:
            # The kept line is its own position: it starts with (ts, source, line).
            ts, src, _, code, sid, conn, client = pos
            if code in (_AUDIO_OPEN, _EVENTS_OPEN):
                kind = _AUDIO if code == _AUDIO_OPEN else _EVENTS
                iv = _Interval(kind, sid, client, conn, pos, None, pos)
                self.intervals.append(iv)
                opened.setdefault((kind, conn), []).append(iv)
                if kind == _AUDIO:
                    audio_open[client] = audio_open.get(client, 0) + 1
            elif code in (_AUDIO_CLOSE, _EVENTS_CLOSE):
                kind = _AUDIO if code == _AUDIO_CLOSE else _EVENTS
                stack = opened.get((kind, conn))
                match = None
                if stack:
                    # Same connection id on the same session; a close that lost its session_id
                    # (an untagged line, reported as such) takes the oldest open one.
                    for x in stack:
                        if sid is None or x.session_id == sid:
                            match = x
                            break
                if match is not None:
                    stack.remove(match)  # type: ignore[union-attr]
                    if not stack:
                        del opened[(kind, conn)]
                    ended(match, pos)
                else:
                    # Connected before the log begins (or in a rotated file not given).
                    iv = _Interval(kind, sid, client, conn, self.log_start, None, None)
                    self.intervals.append(iv)
                    ended(iv, pos)
            elif code in (_SERVER_STARTED, _SERVER_STOPPED):
                # Sessions live in memory: a (re)start means every connection that node had
                # open is gone, at the latest when it last logged anything we kept.
                end = pos if code == _SERVER_STOPPED else last_pos.get(src, pos)
                for key, stack in list(opened.items()):
                    for iv in [x for x in stack if x.start[1] == src]:
                        stack.remove(iv)
                        ended(iv, end)
                    if not stack:
                        del opened[key]
            elif code == _CREATED:
                if sid is not None and self.in_window(ts):
                    self.created.append((sid, client, ts, pos))
                    gone = last_audio_close.get(client)
                    if (
                        client is not None
                        and audio_open.get(client, 0) == 0
                        and gone is not None
                        and gone[1] != sid
                        and 0 <= ts - gone[0] <= restart_window
                    ):
                        self.restarts += 1
            elif code == _LIVE_SPLIT and self.in_window(ts):
                entry = self.live.get((client, sid, conn))
                if entry is None:
                    self.live[(client, sid, conn)] = [ts, self.at(pos), 1]
                else:
                    entry[2] += 1
            last_pos[src] = pos

    def clip(self, iv: _Interval) -> _Interval | None:
        start = max(iv.start, self.lo)
        end = min(iv.end if iv.end is not None else self.log_end, self.hi)
        if not start < end:
            return None
        iv.start, iv.end = start, end
        return iv

    def find_splits(self, intervals: list[_Interval]) -> list[SplitIncident]:
        per_client: dict[str, list[_Interval]] = {}
        for iv in intervals:
            if iv.client_id is not None and iv.session_id is not None:
                per_client.setdefault(iv.client_id, []).append(iv)
        found: dict[tuple[str, str, str], _Incident] = {}
        for client, ivs in per_client.items():
            ivs.sort(key=lambda iv: iv.start)
            # Sweep by start: each new interval overlaps exactly the still-active ones.
            active: list[_Interval] = []
            for iv in ivs:
                active = [x for x in active if x.end > iv.start]  # type: ignore[operator]
                for other in active:
                    if other.kind == iv.kind or other.session_id == iv.session_id:
                        continue
                    audio, events = (iv, other) if iv.kind == _AUDIO else (other, iv)
                    key = (client, audio.session_id, events.session_id)
                    start, end = iv.start, min(iv.end, other.end)  # type: ignore[type-var]
                    hit = found.get(key)
                    if hit is None:
                        found[key] = _Incident(start, end, audio.connect, events.connect)
                    else:
                        hit.end = max(hit.end, end)
                        hit.overlaps += 1
                active.append(iv)
        splits = []
        for (client, audio_sid, events_sid), hit in found.items():
            live = self.live.pop((client, audio_sid, events_sid), None)
            splits.append(
                SplitIncident(
                    client_id=client,
                    audio_session_id=audio_sid,  # type: ignore[arg-type]
                    events_session_id=events_sid,  # type: ignore[arg-type]
                    start=hit.start[0],
                    end=hit.end[0],
                    overlaps=hit.overlaps,
                    ongoing=hit.end == self.log_end,
                    audio_connect=self.loc(hit.audio_connect),
                    events_connect=self.loc(hit.events_connect),
                    live_detections=live[2] if live else 0,
                )
            )
        splits.sort(key=lambda x: (x.start, x.client_id))
        return splits

    def summarise(self, intervals: list[_Interval], splits: list[SplitIncident]) -> AuditReport:
        a = self.a
        audio_sids = {iv.session_id for iv in intervals if iv.kind == _AUDIO}
        events_by_sid: dict[str, list[_Interval]] = {}
        clients: set[str] = set()
        for iv in intervals:
            if iv.client_id is not None:
                clients.add(iv.client_id)
            if iv.kind == _EVENTS and iv.session_id is not None:
                events_by_sid.setdefault(iv.session_id, []).append(iv)
        sessions_without_audio = []
        for sid, client, ts, at in self.created:
            if client is not None:
                clients.add(client)
            if sid not in audio_sids:
                sessions_without_audio.append(
                    SessionWithoutAudio(sid, client, ts, self.at(at), sid in events_by_sid)
                )
        events_without_audio = []
        for sid, ivs in events_by_sid.items():
            if sid in audio_sids:
                continue
            first = min(ivs, key=lambda iv: iv.start)
            events_without_audio.append(
                EventsWithoutAudio(
                    session_id=sid,
                    client_ids=tuple(sorted({iv.client_id for iv in ivs if iv.client_id})),
                    connections=len(ivs),
                    first_connect=first.start[0],
                    at=self.loc(first.connect),
                )
            )
        events_without_audio.sort(key=lambda x: x.first_connect)
        live_only = sorted(
            (
                LiveOnlySplit(client, audio_sid, events_sid, ts, at, count)
                for (client, audio_sid, events_sid), (ts, at, count) in self.live.items()
            ),
            key=lambda x: x.ts,
        )
        skipped = sum(a._skipped.values())
        summary = Summary(
            lines=a._lines,
            first_ts=a._first_ts,
            last_ts=a._last_ts,
            sessions=len(self.created),
            clients=len(clients),
            listeners=sum(1 for iv in intervals if iv.kind == _AUDIO),
            event_connections=sum(1 for iv in intervals if iv.kind == _EVENTS),
            restarts=self.restarts,
            restarts_logged=a._restarts_logged,
            splits=len(splits),
            live_splits=sum(1 for x in splits if x.live_detected),
            live_only_splits=len(live_only),
            untagged=a._untagged,
            sessions_without_audio=len(sessions_without_audio),
            events_without_audio=len(events_without_audio),
            skipped_lines=skipped,
        )
        return AuditReport(
            summary=summary,
            splits=tuple(splits),
            live_only_splits=tuple(live_only),
            sessions_without_audio=tuple(sessions_without_audio),
            events_without_audio=tuple(events_without_audio),
            untagged_count=a._untagged,
            untagged_missing=dict(a._untagged_missing),
            untagged_by_event=dict(
                sorted(a._untagged_by_event.items(), key=lambda kv: (-kv[1], kv[0]))
            ),
            untagged_examples=tuple(a._untagged_examples),
            skipped_by_reason=dict(a._skipped),
            skipped_examples=tuple(a._skipped_examples),
            since=a.since,
            until=a.until,
        )


# -- entry points --------------------------------------------------------------------------------


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
    auditor = LogAuditor(since=_as_us(since), until=_as_us(until))
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
    auditor = LogAuditor(since=_as_us(since), until=_as_us(until))
    for path in paths:
        name = str(path)
        try:
            with _open_log(name, stdin) as stream:
                auditor.feed(stream, name)
        except (OSError, EOFError, zlib.error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise LogReadError(f"cannot read {name}: {reason or type(exc).__name__}") from None
    return auditor.report()


def _as_us(value: int | datetime | str | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return (value - _EPOCH) // _ONE_US
    us = parse_ts(value)
    if us is None:
        raise ValueError(f"not an ISO-8601 time: {value!r}")
    return us


_GZIP_MAGIC = b"\x1f\x8b"


@contextmanager
def _open_log(name: str, stdin: BinaryIO | None) -> Iterator[BinaryIO]:
    """A binary line iterator over a plain or gzip file; `.gz` names must be gzip."""
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


# -- output ----------------------------------------------------------------------------------------


def render_json(report: AuditReport) -> str:
    return orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n"


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _where(loc: Location | None) -> str:
    return str(loc) if loc is not None else "(before log)"


def render_human(report: AuditReport) -> str:
    """The default report: worst first (splits, untagged, orphans), then the summary."""
    s = report.summary
    out: list[str] = []
    splits = len(report.splits) + len(report.live_only_splits)
    verdict = "clean" if report.clean else f"{splits} split session(s)"
    out.append(f"radiod audit: {verdict}")

    if report.splits:
        out += ["", f"SPLIT SESSIONS ({len(report.splits)})"]
        rows = [["client", "audio session", "events session", "from", "to", "s", "live", "at"]]
        for x in report.splits:
            rows.append(
                [
                    x.client_id,
                    x.audio_session_id,
                    x.events_session_id,
                    format_ts(x.start) or "",
                    ("open at end" if x.ongoing else format_ts(x.end)) or "",
                    f"{x.seconds:.1f}",
                    "yes" if x.live_detected else "NO",
                    f"audio {_where(x.audio_connect)}, events {_where(x.events_connect)}",
                ]
            )
        out += _table(rows)
    if report.live_only_splits:
        out += ["", f"LOGGED LIVE BUT NOT RECONSTRUCTED ({len(report.live_only_splits)})"]
        rows = [["client", "audio session", "events session", "first", "count", "at"]]
        for y in report.live_only_splits:
            rows.append(
                [
                    y.client_id or "?",
                    y.audio_session_id or "?",
                    y.events_session_id or "?",
                    format_ts(y.ts) or "",
                    str(y.count),
                    str(y.at),
                ]
            )
        out += _table(rows)
    if report.untagged_count:
        missing = ", ".join(f"no {k} {v}" for k, v in sorted(report.untagged_missing.items()))
        out += ["", f"UNTAGGED LINES ({report.untagged_count}: {missing})"]
        groups = list(report.untagged_by_event.items())[:EXAMPLES]
        out += _table([[f"{n} x", event] for event, n in groups])
        out.append("  e.g.")
        out += _table(
            [
                [str(x.at), _short(x.event or "", 60), "missing " + x.problem]
                for x in report.untagged_examples
            ],
            indent="    ",
        )
    if report.sessions_without_audio or report.events_without_audio:
        out += ["", "ORPHANS"]
        if report.sessions_without_audio:
            out.append(f"  sessions never attached to audio: {len(report.sessions_without_audio)}")
            out += _table(
                [
                    [
                        x.session_id,
                        f"client {x.client_id or '?'}",
                        f"created {format_ts(x.created)}",
                        str(x.at),
                        "events attached" if x.events_attached else "no events",
                    ]
                    for x in report.sessions_without_audio[:EXAMPLES]
                ],
                indent="    ",
            )
        if report.events_without_audio:
            out.append(
                f"  event channels on sessions no audio used: {len(report.events_without_audio)}"
            )
            out += _table(
                [
                    [
                        x.session_id,
                        f"client {','.join(x.client_ids) or '?'}",
                        f"{x.connections} connection(s)",
                        f"first {format_ts(x.first_connect)}",
                        _where(x.at),
                    ]
                    for x in report.events_without_audio[:EXAMPLES]
                ],
                indent="    ",
            )
    out += ["", "SUMMARY"]
    window = f"{format_ts(s.first_ts) or '-'} .. {format_ts(s.last_ts) or '-'}"
    if report.since is not None or report.until is not None:
        window += f"  (window {format_ts(report.since) or '…'} .. {format_ts(report.until) or '…'})"
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(report.skipped_by_reason.items()))
    rows = [
        ["log", window],
        ["lines", str(s.lines)],
        ["sessions created", str(s.sessions)],
        ["clients", str(s.clients)],
        ["listeners (audio)", str(s.listeners)],
        ["event connections", str(s.event_connections)],
        [
            "restarts",
            f"{s.restarts} inferred"
            + (f", {s.restarts_logged} logged" if s.restarts_logged else ""),
        ],
        [
            "splits",
            f"{s.splits} found, {s.live_splits} also logged live, "
            f"{s.live_only_splits} only logged live",
        ],
        ["untagged lines", str(s.untagged)],
        [
            "orphans",
            f"{s.sessions_without_audio} sessions without audio, "
            f"{s.events_without_audio} events-only sessions",
        ],
        ["skipped lines", f"{s.skipped_lines}" + (f" ({skipped})" if skipped else "")],
    ]
    out += _table(rows)
    if report.skipped_examples:
        out.append(
            "  skipped e.g. " + ", ".join(f"{x.at} {x.problem}" for x in report.skipped_examples)
        )
    return "\n".join(out) + "\n"


# -- command line ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `radiod audit` options: LOG…, --json, --since, --until."""
    parser.add_argument(
        "logs", nargs="+", metavar="LOG", help="JSON log file, plain or .gz; '-' for stdin"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable report")
    parser.add_argument(
        "--since", type=_cli_time, metavar="TIME", help="ignore lines before this ISO-8601 time"
    )
    parser.add_argument(
        "--until", type=_cli_time, metavar="TIME", help="ignore lines from this ISO-8601 time on"
    )


def run(args: argparse.Namespace, stdout: TextIO) -> int:
    """Audit `args.logs`; 0 clean, 1 when a split session was found, 2 unreadable input."""
    since, until = args.since, args.until
    if since is not None and until is not None and until <= since:
        print("radiod audit: error: --until must be later than --since", file=sys.stderr)
        return 2
    try:
        report = audit_paths(args.logs, since=since, until=until)
    except LogReadError as exc:
        print(f"radiod audit: error: {exc}", file=sys.stderr)
        return 2
    stdout.write(render_json(report) if args.json else render_human(report))
    return report.exit_code
