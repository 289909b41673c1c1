"""The listener's view beside the server's, per session, and where the two disagree.

The page reports what the listener heard (`client.*` lines, `web/health_reports.py`); the
server logs what it did to their audio: slow readers skipped forward
(`stream.reader_skipped`), clients dropped (`*.slow_client_dropped`), pipelines rebuilt
(`mixer.pipeline_failed`) and sessions ended (`session.failed`). Set side by side:

- **network**: listeners stalled or restarted while the server saw nothing wrong with the
  session: the bytes were sent, so they were lost or late between server and listener;
- **unreported**: the server skipped, dropped or failed a session's audio and no listener
  reported a stall or restart: a page that was closed, a player that is not our page
  (VLC, mpv), or reports that never arrived.

A stall is a `buffering` report (a stall that ended) or a `dead` one (one that never did).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from radiod.audit.model import format_ts

CLIENT_EVENTS = {
    f"client.{kind}": kind
    for kind in ("buffering", "degraded", "dead", "restart", "sse_reconnect", "play_refused")
}
SERVER_EVENTS = (
    "stream.reader_skipped",
    "stream.slow_client_dropped",
    "events.slow_client_dropped",
    "mixer.pipeline_failed",
    "session.failed",
)
VIEW_EVENTS = frozenset(CLIENT_EVENTS) | frozenset(SERVER_EVENTS)
NETWORK, UNREPORTED = "network", "unreported"


@dataclass(frozen=True, slots=True)
class ClientView:
    """What the pages of one session reported."""

    clients: int
    stalls: int
    buffering_seconds: float
    degraded: int
    restarts: int
    restart_reasons: dict[str, int]
    sse_reconnects: int
    play_refused: int

    @property
    def troubled(self) -> bool:
        return bool(self.stalls or self.restarts)

    def to_json(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "stalls": self.stalls,
            "buffering_seconds": round(self.buffering_seconds, 3),
            "degraded": self.degraded,
            "restarts": self.restarts,
            "restart_reasons": dict(self.restart_reasons),
            "sse_reconnects": self.sse_reconnects,
            "play_refused": self.play_refused,
        }


@dataclass(frozen=True, slots=True)
class ServerView:
    """What the server did to one session's audio."""

    skips: int
    skipped_seconds: float
    audio_drops: int
    events_drops: int
    pipeline_failures: int
    session_failures: int

    @property
    def troubled(self) -> bool:
        return bool(
            self.skips or self.audio_drops or self.pipeline_failures or self.session_failures
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "skips": self.skips,
            "skipped_seconds": round(self.skipped_seconds, 3),
            "audio_drops": self.audio_drops,
            "events_drops": self.events_drops,
            "pipeline_failures": self.pipeline_failures,
            "session_failures": self.session_failures,
        }


@dataclass(frozen=True, slots=True)
class SessionView:
    """One session seen by its listeners and by the server."""

    session_id: str
    first: int  # µs since the epoch, of the first line counted
    last: int
    client: ClientView
    server: ServerView

    @property
    def disagreement(self) -> str | None:
        if self.client.troubled and not self.server.troubled:
            return NETWORK
        if self.server.troubled and not self.client.troubled:
            return UNREPORTED
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "first": format_ts(self.first),
            "last": format_ts(self.last),
            "client": self.client.to_json(),
            "server": self.server.to_json(),
            "disagreement": self.disagreement,
        }


@dataclass(slots=True)
class _Tally:
    first: int
    last: int
    clients: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)  # by event
    buffering_ms: int = 0
    skipped_seconds: float = 0.0
    restart_reasons: dict[str, int] = field(default_factory=dict)

    def count(self, event: str) -> int:
        return self.counts.get(event, 0)

    def view(self, session_id: str) -> SessionView:
        client = ClientView(
            clients=len(self.clients),
            stalls=self.count("client.buffering") + self.count("client.dead"),
            buffering_seconds=self.buffering_ms / 1000,
            degraded=self.count("client.degraded"),
            restarts=self.count("client.restart"),
            restart_reasons=dict(sorted(self.restart_reasons.items())),
            sse_reconnects=self.count("client.sse_reconnect"),
            play_refused=self.count("client.play_refused"),
        )
        server = ServerView(
            skips=self.count("stream.reader_skipped"),
            skipped_seconds=self.skipped_seconds,
            audio_drops=self.count("stream.slow_client_dropped"),
            events_drops=self.count("events.slow_client_dropped"),
            pipeline_failures=self.count("mixer.pipeline_failed"),
            session_failures=self.count("session.failed"),
        )
        return SessionView(session_id, self.first, self.last, client, server)


class ViewTally:
    """Counts the view's events per session as the reader meets them (in the window)."""

    __slots__ = ("_sessions",)

    def __init__(self) -> None:
        self._sessions: dict[str, _Tally] = {}

    def see(self, event: str, record: dict[str, Any], ts: int) -> None:
        session_id = record.get("session_id")
        if type(session_id) is not str or not session_id:
            return  # about no session: nothing to set beside
        tally = self._sessions.get(session_id)
        if tally is None:
            tally = self._sessions[session_id] = _Tally(ts, ts)
        tally.first, tally.last = min(tally.first, ts), max(tally.last, ts)
        tally.counts[event] = tally.count(event) + 1
        if event in CLIENT_EVENTS and type(client := record.get("client_id")) is str:
            tally.clients.add(client)
        if event == "client.buffering":
            tally.buffering_ms += _number(record.get("ms"))
        elif event == "stream.reader_skipped":
            tally.skipped_seconds += _number(record.get("skipped_seconds"))
        elif event == "client.restart" and type(reason := record.get("reason")) is str:
            tally.restart_reasons[reason] = tally.restart_reasons.get(reason, 0) + 1

    def finish(self) -> tuple[SessionView, ...]:
        """Every session seen, the ones where the views disagree first, then by time."""
        views = [tally.view(session_id) for session_id, tally in self._sessions.items()]
        views.sort(key=lambda view: (view.disagreement is None, view.first, view.session_id))
        return tuple(views)


def _number(value: Any) -> Any:
    """A count the server logged (an int or float); 0 for anything else in a foreign line."""
    return value if type(value) in (int, float) else 0
