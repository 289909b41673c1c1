"""A session's Server-Sent Events: numbered events, the replay backlog, and the clients.

Every event gets the session's next number, which is its SSE `id:`. A reconnecting client
sends back the last one it saw (`Last-Event-ID`); `events_since` answers with exactly the
events after it while the backlog still holds them, else with the latest event of each
type (a snapshot), which is also what a new client starts from.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger(__name__)

# Events kept for `Last-Event-ID` replay; a reconnect older than this gets a fresh snapshot.
EVENT_BACKLOG = 64
# An SSE client this far behind gets a snapshot of the latest state instead of every event.
EVENT_QUEUE_LIMIT = 256


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """One SSE message: `id` orders them per session so reconnects skip what they had."""

    id: int
    type: str
    payload: dict[str, Any]


# In an event client's queue: send the latest state (`events_since(None)`) instead of what
# overflowed the queue.
RESYNC = SessionEvent(0, "resync", {})


@dataclass(slots=True, eq=False)
class EventClient:
    """One `/events` response attached to a session; its queue is fed by `EventHub.publish`."""

    id: str
    client_id: str
    queue: asyncio.Queue[SessionEvent | None] = field(
        default_factory=lambda: asyncio.Queue(EVENT_QUEUE_LIMIT)
    )

    def close(self) -> None:
        """Ask the handler to end the response (it drains what is queued first)."""
        try:
            self.queue.put_nowait(None)
        except asyncio.QueueFull:
            # Its handler is stuck writing; dropping the oldest message makes room for the end.
            self.queue.get_nowait()
            self.queue.put_nowait(None)

    def lag(self) -> None:
        """Its queue is full: replace what it missed with one snapshot, as on a reconnect.

        A client behind a burst (1,000 listener attach/detach events in a few seconds, say)
        still reads; it catches up on the latest state instead of being dropped. One that
        does not read at all is dropped by its write timeout (`web/sending.py`).
        """
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(RESYNC)


class EventHub:
    """A session's event clients, the numbering of its events and what is kept for replay."""

    def __init__(self) -> None:
        self._clients: dict[str, EventClient] = {}
        self._ids = itertools.count(1)
        self._backlog: deque[SessionEvent] = deque(maxlen=EVENT_BACKLOG)
        # The newest event of each type: what a new client needs, however busy the backlog.
        self._latest: dict[str, SessionEvent] = {}

    def __len__(self) -> int:
        return len(self._clients)

    def add(self, client: EventClient) -> None:
        self._clients[client.id] = client

    def remove(self, client: EventClient) -> bool:
        """Forget a client; False if it was gone already."""
        return self._clients.pop(client.id, None) is not None

    def has_client(self, client_id: str) -> bool:
        return any(c.client_id == client_id for c in self._clients.values())

    def publish(self, type_: str, payload: dict[str, Any]) -> SessionEvent:
        """Number an event, keep it for replay, and queue it for every client."""
        event = SessionEvent(next(self._ids), type_, payload)
        self._backlog.append(event)
        self._latest[type_] = event
        for client in list(self._clients.values()):
            try:
                client.queue.put_nowait(event)
            except asyncio.QueueFull:
                log.info("events.client_lagged", event_client_id=client.id)
                client.lag()
        return event

    def events_since(self, last_id: int | None) -> list[SessionEvent]:
        """What a (re)connecting client should get before live events.

        With a `Last-Event-ID` still inside the backlog: exactly the events after it, so a
        reconnect sees no duplicates. Otherwise: the latest track and listener state.
        """
        if last_id is not None and self._backlog and self._backlog[0].id <= last_id + 1:
            return [e for e in self._backlog if e.id > last_id]
        return sorted(self._latest.values(), key=lambda e: e.id)

    def close_clients(self) -> int:
        """End every client's response (each drains what is queued first); how many."""
        clients = list(self._clients.values())
        for client in clients:
            client.close()
        return len(clients)
