"""Listener sessions: the one owner of everything a listener hears and sees.

`session` wires a session's parts to its mixer and keeps its lifecycle; `listeners` holds
its audio listeners and the resume rule; `event_hub` its SSE events and replay;
`now_playing` its tracks; `registry` creates, finds, binds (client cookie -> session) and
reaps sessions, and notices the moment a client's two channels disagree.
"""

from radiod.sessions.event_hub import RESYNC, EventClient, EventHub, SessionEvent
from radiod.sessions.ids import new_token, valid_session_id
from radiod.sessions.listeners import Listener, Listeners, ResumePoint
from radiod.sessions.now_playing import NowPlaying, track_json
from radiod.sessions.registry import DrainingError, SessionLimitError, SessionRegistry
from radiod.sessions.session import Session

__all__ = [
    "RESYNC",
    "DrainingError",
    "EventClient",
    "EventHub",
    "Listener",
    "Listeners",
    "NowPlaying",
    "ResumePoint",
    "Session",
    "SessionEvent",
    "SessionLimitError",
    "SessionRegistry",
    "new_token",
    "track_json",
    "valid_session_id",
]
