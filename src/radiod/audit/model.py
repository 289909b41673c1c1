"""What the audit reads and what it reports: event kinds, timestamps, and the report's values.

The values here are the documented `--json` schema (version 1, see the README): each one
knows its own JSON form, and `AuditReport.to_json()` puts them together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from radiod.audit.listener_view import SessionView

SCHEMA_VERSION = 1
# A session.created this soon after the client's audio went away counts as a restart.
RESTART_WINDOW_SECONDS = 60.0
EXAMPLES = 5

AUDIO, EVENTS = "audio", "events"  # the two channels a client attaches to a session

# Events whose lines must carry session_id: they are always about one session.
SESSION_SCOPED_PREFIXES = (
    "stream.",
    "events.",
    "mixer.",
    "session.",
    "split_session.",
    "client.",
)
# Channels whose request lines must carry session_id (api and page may come before one exists).
SESSION_CHANNELS = frozenset({AUDIO, EVENTS})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


# -- event kinds -------------------------------------------------------------------------------


class EventKind(IntEnum):
    """The events the replay needs; every other line only counts for tags and time range."""

    AUDIO_OPEN = 0
    AUDIO_CLOSE = 1
    EVENTS_OPEN = 2
    EVENTS_CLOSE = 3
    SESSION_CREATED = 4
    LIVE_SPLIT = 5
    SERVER_STARTED = 6
    SERVER_STOPPED = 7


KEPT_EVENTS = {
    "stream.connected": EventKind.AUDIO_OPEN,
    "stream.closed": EventKind.AUDIO_CLOSE,
    "events.connected": EventKind.EVENTS_OPEN,
    "events.closed": EventKind.EVENTS_CLOSE,
    "session.created": EventKind.SESSION_CREATED,
    "split_session.detected": EventKind.LIVE_SPLIT,
    "server.started": EventKind.SERVER_STARTED,
    "server.stopped": EventKind.SERVER_STOPPED,
}
# Counted (when in the window) but not replayed: the page said it restarted (its report).
RESTART_EVENT = "client.restart"
# The field that names a channel's connection, on its connect and close lines.
CONNECTION_ID_FIELD = {
    EventKind.AUDIO_OPEN: "listener_id",
    EventKind.AUDIO_CLOSE: "listener_id",
    EventKind.EVENTS_OPEN: "event_client_id",
    EventKind.EVENTS_CLOSE: "event_client_id",
}


# -- places and kept lines ---------------------------------------------------------------------

# Source and line numbers of the log's bounds: before, and after, every real line.
BEFORE_ANY_LINE = -1
AFTER_EVERY_LINE = 1 << 62


class Position(NamedTuple):
    """A place in the merged logs that no line holds: the log's bounds, the window's.

    Tuple order is time order, log order breaking timestamp ties (files in the order
    given), so a Position and a `KeptLine` compare as places in C.
    """

    ts: int  # µs since the epoch
    source: int  # index of the input, in the order given
    line: int  # 1-based line number in that input


class KeptLine(NamedTuple):
    """One line the replay needs, with only the fields it reads; also its own place.

    A named tuple rather than a dataclass: a busy log keeps ~100,000 of them per 100 MB.
    A frozen slotted dataclass, with a Position to sort by, cost about 1 µs more per kept
    line (7% of bench/audit.py); a tuple is built and ordered in C. `(ts, source, line)`
    is unique, so ordering never reaches `kind`.

    For `split_session.detected`, `session_id` is the audio session and
    `events_session_id` the events session; `connection_id` is the `listener_id` or
    `event_client_id` of a channel's connect or close line.
    """

    ts: int
    source: int
    line: int
    kind: EventKind
    session_id: str | None
    client_id: str | None
    connection_id: str | None = None
    events_session_id: str | None = None


# Where an interval starts or ends: a kept line, or one of the log's or window's bounds.
Place = Position | KeptLine


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


def as_us(value: int | datetime | str | None) -> int | None:
    """A time bound given as µs, a datetime (naive means UTC) or an ISO-8601 string, as µs.

    Raises:
        ValueError: a string that is not an ISO-8601 time.
    """
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


# -- report values -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Location:
    """A line of the input: file name as given (`-` for stdin) and 1-based line number."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line}


def location_json(loc: Location | None) -> dict[str, Any] | None:
    """A location's JSON form; None for a channel connected before the log begins."""
    return None if loc is None else loc.to_json()


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

    def to_json(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "audio_session_id": self.audio_session_id,
            "events_session_id": self.events_session_id,
            "start": format_ts(self.start),
            "end": format_ts(self.end),
            "seconds": round(self.seconds, 6),
            "ongoing": self.ongoing,
            "overlaps": self.overlaps,
            "audio_connect": location_json(self.audio_connect),
            "events_connect": location_json(self.events_connect),
            "live_detected": self.live_detected,
            "live_detections": self.live_detections,
        }


@dataclass(frozen=True, slots=True)
class LiveOnlySplit:
    """A `split_session.detected` the server logged that the audit could not reconstruct."""

    client_id: str | None
    audio_session_id: str | None
    events_session_id: str | None
    ts: int
    at: Location
    count: int

    def to_json(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "audio_session_id": self.audio_session_id,
            "events_session_id": self.events_session_id,
            "ts": format_ts(self.ts),
            "at": self.at.to_json(),
            "count": self.count,
        }


@dataclass(frozen=True, slots=True)
class SessionWithoutAudio:
    """A session created in the window that no audio listener ever attached to."""

    session_id: str
    client_id: str | None
    created: int
    at: Location
    events_attached: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "client_id": self.client_id,
            "created": format_ts(self.created),
            "at": self.at.to_json(),
            "events_attached": self.events_attached,
        }


@dataclass(frozen=True, slots=True)
class EventsWithoutAudio:
    """A session that event clients attached to but no audio listener ever did."""

    session_id: str
    client_ids: tuple[str, ...]
    connections: int
    first_connect: int
    at: Location | None

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "client_ids": list(self.client_ids),
            "connections": self.connections,
            "first_connect": format_ts(self.first_connect),
            "at": location_json(self.at),
        }


@dataclass(frozen=True, slots=True)
class SharedSession:
    """A session whose channels served more than one client: one station, several devices.

    Not a finding: a listener who opened the page's share link on a phone, or a native
    player given the session's playlist, is another client of the same session. Listed so
    an operator can tell "two devices on one station" from a split at a glance.
    """

    session_id: str
    client_ids: tuple[str, ...]
    listeners: int  # audio connections, all clients together
    event_connections: int

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "client_ids": list(self.client_ids),
            "listeners": self.listeners,
            "event_connections": self.event_connections,
        }


@dataclass(frozen=True, slots=True)
class LineNote:
    """An example of an untagged or skipped line."""

    at: Location
    event: str | None
    problem: str  # "session_id", "client_id", "session_id,client_id", or a skip reason

    def untagged_json(self) -> dict[str, Any]:
        return {"at": self.at.to_json(), "event": self.event, "missing": self.problem.split(",")}

    def skipped_json(self) -> dict[str, Any]:
        return {"at": self.at.to_json(), "reason": self.problem}


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
    shared_sessions: int
    splits: int
    live_splits: int
    live_only_splits: int
    untagged: int
    sessions_without_audio: int
    events_without_audio: int
    skipped_lines: int

    def to_json(self, since: int | None, until: int | None) -> dict[str, Any]:
        """The summary object; `since`/`until` are the report's window, shown with the range."""
        return {
            "lines": self.lines,
            "first_ts": format_ts(self.first_ts),
            "last_ts": format_ts(self.last_ts),
            "since": format_ts(since),
            "until": format_ts(until),
            "sessions": self.sessions,
            "clients": self.clients,
            "listeners": self.listeners,
            "event_connections": self.event_connections,
            "restarts": self.restarts,
            "restarts_logged": self.restarts_logged,
            "shared_sessions": self.shared_sessions,
            "splits": self.splits,
            "live_splits": self.live_splits,
            "live_only_splits": self.live_only_splits,
            "untagged": self.untagged,
            "sessions_without_audio": self.sessions_without_audio,
            "events_without_audio": self.events_without_audio,
            "skipped_lines": self.skipped_lines,
        }


@dataclass(frozen=True, slots=True)
class AuditReport:
    """Everything `radiod audit` found; `to_json()` is the documented `--json` schema."""

    summary: Summary
    splits: tuple[SplitIncident, ...]
    live_only_splits: tuple[LiveOnlySplit, ...]
    sessions_without_audio: tuple[SessionWithoutAudio, ...]
    events_without_audio: tuple[EventsWithoutAudio, ...]
    shared_sessions: tuple[SharedSession, ...]
    untagged_count: int
    untagged_missing: dict[str, int]
    untagged_by_event: dict[str, int]
    untagged_examples: tuple[LineNote, ...]
    skipped_by_reason: dict[str, int]
    skipped_examples: tuple[LineNote, ...]
    since: int | None = None
    until: int | None = None
    # Sessions with listener reports or server-side trouble (`listener_view`).
    listener_view: tuple[SessionView, ...] = ()

    @property
    def clean(self) -> bool:
        """No split session, neither reconstructed nor logged live."""
        return not self.splits and not self.live_only_splits

    @property
    def exit_code(self) -> int:
        return 0 if self.clean else 1

    def to_json(self) -> dict[str, Any]:
        """The `--json` document (schema version 1; see the README).

        `listener_view` is there only when a session has something in it, so a log
        without health reports audits to the same document as before the key existed.
        """
        document = {
            "version": SCHEMA_VERSION,
            "clean": self.clean,
            "summary": self.summary.to_json(self.since, self.until),
            "splits": [split.to_json() for split in self.splits],
            "live_only_splits": [split.to_json() for split in self.live_only_splits],
            "shared_sessions": [shared.to_json() for shared in self.shared_sessions],
            "orphans": {
                "sessions_without_audio": [
                    orphan.to_json() for orphan in self.sessions_without_audio
                ],
                "events_without_audio": [orphan.to_json() for orphan in self.events_without_audio],
            },
            "untagged": {
                "count": self.untagged_count,
                "missing": dict(self.untagged_missing),
                "by_event": dict(self.untagged_by_event),
                "examples": [note.untagged_json() for note in self.untagged_examples],
            },
            "skipped_lines": self.summary.skipped_lines,
            "skipped": {
                "by_reason": dict(self.skipped_by_reason),
                "examples": [note.skipped_json() for note in self.skipped_examples],
            },
        }
        if self.listener_view:
            document["listener_view"] = [session.to_json() for session in self.listener_view]
        return document
