"""The audit's replay: the kept lines in time order → channel intervals → an `AuditReport`.

The replay rebuilds, per client cookie (`client_id`), when its audio channel
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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

from radiod.audit.model import (
    AFTER_EVERY_LINE,
    AUDIO,
    BEFORE_ANY_LINE,
    EVENTS,
    RESTART_WINDOW_SECONDS,
    AuditReport,
    EventKind,
    EventsWithoutAudio,
    KeptLine,
    LiveOnlySplit,
    Location,
    Place,
    Position,
    SessionWithoutAudio,
    SharedSession,
    SplitIncident,
    Summary,
)
from radiod.audit.reader import ReadLog

_RESTART_WINDOW_US = int(RESTART_WINDOW_SECONDS * 1e6)


@dataclass(slots=True, eq=False)
class _Interval:
    """One connection of a channel (audio or events) to a session, from connect to close."""

    channel: str  # AUDIO or EVENTS
    session_id: str | None
    client_id: str | None
    connection_id: str | None  # listener_id or event_client_id
    start: Place
    end: Place | None  # None: still open
    connect: KeptLine | None  # the connect line; None: connected before the log begins


class _SplitKey(NamedTuple):
    """Who split, and how: a client with audio on one session and events on another."""

    client_id: str | None
    audio_session_id: str | None
    events_session_id: str | None


@dataclass(slots=True)
class _Overlaps:
    """Every overlap of one client's audio and events on one pair of sessions, so far."""

    start: Place
    end: Place
    audio_connect: KeptLine | None
    events_connect: KeptLine | None
    count: int = 1


@dataclass(slots=True)
class _LiveDetections:
    """The server's own `split_session.detected` lines for one client and pair of sessions."""

    first_ts: int
    at: Location
    count: int = 1


@dataclass(slots=True)
class _ClientAudio:
    """A client's audio so far: connections open now, and its latest close (for restarts)."""

    open: int = 0
    closed_ts: int | None = None
    closed_session_id: str | None = None


def _before_lines_at(ts: int) -> Position:
    """The place just before every line stamped `ts`."""
    return Position(ts, BEFORE_ANY_LINE, BEFORE_ANY_LINE)


def replay(log: ReadLog, since: int | None, until: int | None) -> AuditReport:
    """Build intervals in time order, find splits and orphans, and summarise.

    Args:
        log: what the reader kept, in time order.
        since, until: the window the intervals are clipped to (µs since the epoch or None).
    """
    return _Replay(log, since, until).run()


class _Replay:
    """One pass over the kept lines in time order: one handler per event kind."""

    def __init__(self, log: ReadLog, since: int | None, until: int | None) -> None:
        self.log = log
        self.since, self.until = since, until
        first = log.first_ts if log.first_ts is not None else 0
        last = log.last_ts if log.last_ts is not None else 0
        self.log_start = _before_lines_at(first)
        self.log_end = Position(last, AFTER_EVERY_LINE, AFTER_EVERY_LINE)
        self.window_start = self.log_start if since is None else _before_lines_at(since)
        self.window_end = self.log_end if until is None else _before_lines_at(until)
        self.intervals: list[_Interval] = []
        # (channel, connection id) -> intervals still open, oldest first. A browser that
        # re-requests the stream reuses its listener id, so two may briefly be open at once.
        self.open: dict[tuple[str, str | None], list[_Interval]] = {}
        self.last_kept: dict[int, KeptLine] = {}  # source → its latest kept line so far
        self.audio: dict[str | None, _ClientAudio] = {}  # client → its audio so far
        self.created: list[KeptLine] = []  # session.created lines in the window
        self.live: dict[_SplitKey, _LiveDetections] = {}
        self.restarts = 0
        self.handlers: dict[EventKind, Callable[[KeptLine], None]] = {
            # A channel's connect and close differ only by channel: one method each, bound.
            EventKind.AUDIO_OPEN: partial(self.on_connected, AUDIO),
            EventKind.AUDIO_CLOSE: partial(self.on_closed, AUDIO),
            EventKind.EVENTS_OPEN: partial(self.on_connected, EVENTS),
            EventKind.EVENTS_CLOSE: partial(self.on_closed, EVENTS),
            EventKind.SESSION_CREATED: self.on_session_created,
            EventKind.LIVE_SPLIT: self.on_live_split,
            EventKind.SERVER_STARTED: self.on_server_started,
            EventKind.SERVER_STOPPED: self.on_server_stopped,
        }

    def run(self) -> AuditReport:
        handlers, last_kept = self.handlers, self.last_kept
        for line in self.log.kept:
            handlers[line.kind](line)
            last_kept[line.source] = line
        clipped = [iv for iv in (self.clip(iv) for iv in self.intervals) if iv is not None]
        splits = self.find_splits(clipped)
        return self.summarise(clipped, splits)

    def in_window(self, ts: int) -> bool:
        return (self.since is None or ts >= self.since) and (self.until is None or ts < self.until)

    def location(self, line: KeptLine | None) -> Location | None:
        return None if line is None else self.log.location(line)

    # -- one handler per event kind ------------------------------------------------------------

    def on_connected(self, channel: str, line: KeptLine) -> None:
        iv = _Interval(
            channel, line.session_id, line.client_id, line.connection_id, line, None, line
        )
        self.intervals.append(iv)
        self.open.setdefault((channel, line.connection_id), []).append(iv)
        if channel == AUDIO:
            self.client_audio(line.client_id).open += 1

    def on_closed(self, channel: str, line: KeptLine) -> None:
        key = (channel, line.connection_id)
        stack = self.open.get(key)
        if stack:
            # Same connection id on the same session; a close that lost its session_id (an
            # untagged line, reported as such) takes the oldest open one.
            for iv in stack:
                if line.session_id is None or iv.session_id == line.session_id:
                    stack.remove(iv)
                    if not stack:
                        del self.open[key]
                    self.ended(iv, line)
                    return
        # Connected before the log begins (or in a rotated file not given).
        iv = _Interval(
            channel, line.session_id, line.client_id, line.connection_id, self.log_start, None, None
        )
        self.intervals.append(iv)
        self.ended(iv, line)

    def on_session_created(self, line: KeptLine) -> None:
        session_id, client_id, ts = line.session_id, line.client_id, line.ts
        if session_id is None or not self.in_window(ts):
            return
        self.created.append(line)
        audio = self.audio.get(client_id)
        if (
            client_id is not None
            and audio is not None
            and audio.open == 0
            and audio.closed_ts is not None
            and audio.closed_session_id != session_id
            and 0 <= ts - audio.closed_ts <= _RESTART_WINDOW_US
        ):
            self.restarts += 1

    def on_live_split(self, line: KeptLine) -> None:
        if not self.in_window(line.ts):
            return
        key = _SplitKey(line.client_id, line.session_id, line.events_session_id)
        seen = self.live.get(key)
        if seen is None:
            self.live[key] = _LiveDetections(line.ts, self.log.location(line))
        else:
            seen.count += 1

    def on_server_started(self, line: KeptLine) -> None:
        # Sessions live in memory: a restart means every connection that node had open is
        # gone, at the latest when it last logged anything we kept.
        source = line.source
        self.end_source(source, self.last_kept.get(source, line))

    def on_server_stopped(self, line: KeptLine) -> None:
        self.end_source(line.source, line)

    # -- intervals -----------------------------------------------------------------------------

    def end_source(self, source: int, end: Place) -> None:
        """End every interval the input `source` still has open, at `end`."""
        for key, stack in list(self.open.items()):
            gone = [iv for iv in stack if iv.start.source == source]
            for iv in gone:
                stack.remove(iv)
                self.ended(iv, end)
            if not stack:
                del self.open[key]

    def ended(self, iv: _Interval, end: Place) -> None:
        iv.end = end
        if iv.channel == AUDIO:
            audio = self.client_audio(iv.client_id)
            audio.open = max(audio.open - 1, 0)
            audio.closed_ts, audio.closed_session_id = end.ts, iv.session_id

    def client_audio(self, client_id: str | None) -> _ClientAudio:
        audio = self.audio.get(client_id)
        if audio is None:
            audio = self.audio[client_id] = _ClientAudio()
        return audio

    def clip(self, iv: _Interval) -> _Interval | None:
        """`iv` cut to the window (open ones run to the log's end); None if nothing is left."""
        start = max(iv.start, self.window_start)
        end = min(iv.end if iv.end is not None else self.log_end, self.window_end)
        if not start < end:
            return None
        iv.start, iv.end = start, end
        return iv

    # -- findings ------------------------------------------------------------------------------

    def find_splits(self, intervals: list[_Interval]) -> list[SplitIncident]:
        splits = [
            self.split_incident(key, overlaps)
            for key, overlaps in _overlapping_pairs(intervals).items()
        ]
        splits.sort(key=lambda split: (split.start, split.client_id))
        return splits

    def split_incident(self, key: _SplitKey, overlaps: _Overlaps) -> SplitIncident:
        live = self.live.pop(key, None)
        return SplitIncident(
            client_id=key.client_id,  # type: ignore[arg-type]
            audio_session_id=key.audio_session_id,  # type: ignore[arg-type]
            events_session_id=key.events_session_id,  # type: ignore[arg-type]
            start=overlaps.start.ts,
            end=overlaps.end.ts,
            overlaps=overlaps.count,
            ongoing=overlaps.end == self.log_end,
            audio_connect=self.location(overlaps.audio_connect),
            events_connect=self.location(overlaps.events_connect),
            live_detections=live.count if live else 0,
        )

    def sessions_without_audio(
        self, audio_sessions: set[str | None], events_sessions: dict[str, list[_Interval]]
    ) -> list[SessionWithoutAudio]:
        return [
            SessionWithoutAudio(
                created.session_id,  # type: ignore[arg-type]
                created.client_id,
                created.ts,
                self.log.location(created),
                created.session_id in events_sessions,
            )
            for created in self.created
            if created.session_id not in audio_sessions
        ]

    def events_without_audio(
        self, audio_sessions: set[str | None], events_sessions: dict[str, list[_Interval]]
    ) -> list[EventsWithoutAudio]:
        found = []
        for session_id, ivs in events_sessions.items():
            if session_id in audio_sessions:
                continue
            first = min(ivs, key=lambda iv: iv.start)
            found.append(
                EventsWithoutAudio(
                    session_id=session_id,
                    client_ids=tuple(sorted({iv.client_id for iv in ivs if iv.client_id})),
                    connections=len(ivs),
                    first_connect=first.start.ts,
                    at=self.location(first.connect),
                )
            )
        found.sort(key=lambda orphan: orphan.first_connect)
        return found

    @staticmethod
    def shared_sessions(intervals: list[_Interval]) -> list[SharedSession]:
        """Sessions more than one client attached to (devices sharing a station; no split)."""
        by_session: dict[str, list[_Interval]] = {}
        for iv in intervals:
            if iv.session_id is not None and iv.client_id is not None:
                by_session.setdefault(iv.session_id, []).append(iv)
        shared = []
        for session_id, ivs in by_session.items():
            clients = {iv.client_id for iv in ivs if iv.client_id is not None}
            if len(clients) > 1:
                listeners = sum(1 for iv in ivs if iv.channel == AUDIO)
                shared.append(
                    SharedSession(
                        session_id, tuple(sorted(clients)), listeners, len(ivs) - listeners
                    )
                )
        shared.sort(key=lambda found: found.session_id)
        return shared

    def live_only_splits(self) -> list[LiveOnlySplit]:
        """The live detections `find_splits` did not match (it pops the ones it did)."""
        return sorted(
            (
                LiveOnlySplit(*key, seen.first_ts, seen.at, seen.count)
                for key, seen in self.live.items()
            ),
            key=lambda split: split.ts,
        )

    def summarise(self, intervals: list[_Interval], splits: list[SplitIncident]) -> AuditReport:
        audio_sessions = {iv.session_id for iv in intervals if iv.channel == AUDIO}
        events_sessions: dict[str, list[_Interval]] = {}
        clients = {created.client_id for created in self.created}
        for iv in intervals:
            clients.add(iv.client_id)
            if iv.channel == EVENTS and iv.session_id is not None:
                events_sessions.setdefault(iv.session_id, []).append(iv)
        clients.discard(None)
        no_audio = self.sessions_without_audio(audio_sessions, events_sessions)
        events_only = self.events_without_audio(audio_sessions, events_sessions)
        live_only = self.live_only_splits()
        shared = self.shared_sessions(intervals)
        untagged, skipped = self.log.untagged, self.log.skipped
        summary = Summary(
            lines=self.log.lines,
            first_ts=self.log.first_ts,
            last_ts=self.log.last_ts,
            sessions=len(self.created),
            clients=len(clients),
            listeners=sum(1 for iv in intervals if iv.channel == AUDIO),
            event_connections=sum(1 for iv in intervals if iv.channel == EVENTS),
            restarts=self.restarts,
            restarts_logged=self.log.restarts_logged,
            shared_sessions=len(shared),
            splits=len(splits),
            live_splits=sum(1 for split in splits if split.live_detected),
            live_only_splits=len(live_only),
            untagged=untagged.count,
            sessions_without_audio=len(no_audio),
            events_without_audio=len(events_only),
            skipped_lines=skipped.count,
        )
        return AuditReport(
            summary=summary,
            splits=tuple(splits),
            live_only_splits=tuple(live_only),
            sessions_without_audio=tuple(no_audio),
            events_without_audio=tuple(events_only),
            shared_sessions=tuple(shared),
            untagged_count=untagged.count,
            untagged_missing=dict(untagged.missing),
            untagged_by_event=dict(untagged.by_event),
            untagged_examples=untagged.examples,
            skipped_by_reason=dict(skipped.by_reason),
            skipped_examples=skipped.examples,
            since=self.since,
            until=self.until,
            listener_view=self.log.listener_view,
        )


def _overlapping_pairs(intervals: list[_Interval]) -> dict[_SplitKey, _Overlaps]:
    """Every client's audio and events intervals that overlap on two different sessions."""
    per_client: dict[str, list[_Interval]] = {}
    for iv in intervals:
        if iv.client_id is not None and iv.session_id is not None:
            per_client.setdefault(iv.client_id, []).append(iv)
    found: dict[_SplitKey, _Overlaps] = {}
    for client_id, ivs in per_client.items():
        ivs.sort(key=lambda iv: iv.start)
        # Sweep by start: each new interval overlaps exactly the still-active ones.
        active: list[_Interval] = []
        for iv in ivs:
            active = [x for x in active if x.end > iv.start]  # type: ignore[operator]
            for other in active:
                if other.channel == iv.channel or other.session_id == iv.session_id:
                    continue
                audio, events = (iv, other) if iv.channel == AUDIO else (other, iv)
                key = _SplitKey(client_id, audio.session_id, events.session_id)
                end = min(iv.end, other.end)  # type: ignore[type-var]
                seen = found.get(key)
                if seen is None:
                    found[key] = _Overlaps(iv.start, end, audio.connect, events.connect)
                else:
                    seen.end = max(seen.end, end)
                    seen.count += 1
            active.append(iv)
    return found
