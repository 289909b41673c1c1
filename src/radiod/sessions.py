"""Listener sessions: the one owner of everything a listener hears and sees.

A `Session` owns one `Mixer`, one `Ring`, its audio listeners and its event clients.
Audio and metadata for a listener both come from that one object, so the server cannot
split a listener by construction; `SessionRegistry` creates, finds, binds (client cookie
-> session) and reaps them, and notices the moment a client's two channels disagree.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import re
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from radiod.admission import Admission
from radiod.audio.outputs import TrackEvent
from radiod.audio.ring import Chunk, Ring, RingReader
from radiod.audio.runner import Mixer
from radiod.catalog import Catalog
from radiod.config import Config
from radiod.library import Track

log = structlog.get_logger(__name__)

SESSION_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
# Events kept for `Last-Event-ID` replay; a reconnect older than this gets a fresh snapshot.
EVENT_BACKLOG = 64
# An SSE client this far behind gets a snapshot of the latest state instead of every event.
EVENT_QUEUE_LIMIT = 256
# Client cookie -> session bindings kept; the oldest binding is forgotten first.
CLIENT_BINDINGS_LIMIT = 10_000
# Dropped connections per session that can still be resumed byte-exactly.
RESUME_POINTS_LIMIT = 32
# Half the longest codec frame (AAC: 1024 samples at 22.05 kHz), plus rounding.
FRAME_SLACK_SECONDS = 0.025


class SessionLimitError(Exception):
    """`max_sessions` sessions already exist."""


def valid_session_id(value: str) -> bool:
    """True when `value` has the shape of an ID (it may still be unknown)."""
    return SESSION_ID_RE.fullmatch(value) is not None


def new_token() -> str:
    """128 random bits, URL-safe; the same alphabet as session IDs."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """One SSE message: `id` orders them per session so reconnects skip what they had."""

    id: int
    type: str
    payload: dict[str, Any]


def track_json(track: Track | None) -> dict[str, Any] | None:
    if track is None:
        return None
    return {
        "trackId": track.track_id,
        "title": track.title,
        "artist": track.artist,
        "album": track.album,
        "duration": round(track.duration, 3),
    }


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where a dropped `/stream` connection left off, so its re-request can continue it."""

    bytes_sent: int
    last_seq: int
    stream_start: float | None


@dataclass(slots=True, eq=False)
class Listener:
    """One `/stream` response attached to a session.

    `id` is the name the page chose (`?listener=`): it is echoed in `listener` events and
    selects a resume point, nothing more, since any client may send any name.
    `connection_id` is made here, one per response, and keys `Session.listeners`, so two
    connections that share a name never remove each other.
    """

    id: str
    client_id: str
    connection_id: str = field(default_factory=new_token)
    stream_start: float | None = None
    bytes_sent: int = 0
    last_seq: int | None = None  # the last chunk written, to resume a dropped connection
    resumed: bool = False
    # Test-only fault hooks (config `testing.fault_hooks`): stop feeding, or drop the socket.
    stalled: asyncio.Event = field(default_factory=asyncio.Event)
    abort: Callable[[], None] | None = None


# In an event client's queue: send the latest state (`events_since(None)`) instead of what
# overflowed the queue.
RESYNC = SessionEvent(0, "resync", {})


@dataclass(slots=True, eq=False)
class EventClient:
    """One `/events` response attached to a session; its queue is fed by `Session.publish`."""

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


class _LoopSink:
    """`MixerSink` for a mixer thread: hops each callback onto the session's event loop."""

    def __init__(self, session: Session, loop: asyncio.AbstractEventLoop) -> None:
        self._session = session
        self._loop = loop

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        # RuntimeError: the loop closed at shutdown; nobody is left to hear it.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(fn, *args)

    def on_header(self, header: bytes) -> None:
        self._call(self._session.ring.set_header, header)

    def on_chunk(self, chunk: Chunk) -> None:
        self._call(self._session.ring.push, chunk)

    def on_track(self, event: TrackEvent) -> None:
        self._call(self._session.track_started, event)

    def on_next(self, track: Track) -> None:
        self._call(self._session.next_chosen, track)

    def on_track_failed(self, track: Track, reason: str, count: int) -> None:
        self._call(self._session.track_failed, track, reason, count)

    def on_failed(self, reason: str) -> None:
        self._call(self._session.fail, reason)


class Session:
    """A listener's radio: mixer, ring, audio listeners and event clients, and their history."""

    def __init__(
        self,
        session_id: str,
        client_id: str,
        config: Config,
        catalog: Catalog,
        loop: asyncio.AbstractEventLoop,
        on_failed: Callable[[Session], None],
    ) -> None:
        self.id = session_id
        self.created_by = client_id
        self.created_at = time.time()
        self.last_active = time.monotonic()
        self._config = config
        self.ring = Ring(
            ring_seconds=config.stream.ring_seconds, burst_seconds=config.stream.burst_seconds
        )
        self.mixer = Mixer(catalog, config.audio, config.stream, _LoopSink(self, loop))
        self._on_failed = on_failed
        self.listeners: dict[str, Listener] = {}  # by connection_id
        self.event_clients: dict[str, EventClient] = {}
        self.current: TrackEvent | None = None
        # Recent track starts: a listener joins up to a burst behind the newest one.
        self.track_history: deque[TrackEvent] = deque(maxlen=16)
        self.next_track: Track | None = None
        self.closed = False
        # Whether an audio listener or events client ever came: never-attached sessions are
        # reaped after `unattached_timeout_seconds`, sooner than idle ones.
        self.attached = False
        self._event_ids = itertools.count(1)
        self._backlog: deque[SessionEvent] = deque(maxlen=EVENT_BACKLOG)
        # The newest event of each type: what a new client needs, however busy the backlog.
        self._latest: dict[str, SessionEvent] = {}
        self._stop_timer: asyncio.TimerHandle | None = None
        # Where connections that ended left off, by listener id.
        self._resume_points: dict[str, ResumePoint] = {}
        self._stopping: asyncio.Future[None] | None = None

    @property
    def content_type(self) -> str:
        return self.mixer.content_type

    @property
    def idle(self) -> bool:
        return not self.listeners and not self.event_clients

    # -- audio listeners -------------------------------------------------------------
    async def attach_listener(self, listener: Listener, resume_at: int = 0) -> RingReader:
        """Register a listener and start the mixer if it is the first one.

        `resume_at` is the byte offset a browser asked to resume a dropped connection from
        (`Range: bytes=N-`). When it is exactly where this listener id left off and the
        ring still holds what follows, the new reader continues from there, with no burst,
        so nothing is heard twice.
        """
        if self._stop_timer is not None:
            self._stop_timer.cancel()
            self._stop_timer = None
        # Registered before any wait, so the reaper never sees this session as idle. The
        # caller detaches in a `finally` around this call: a client that leaves during the
        # wait below must not stay registered.
        self.listeners[listener.connection_id] = listener
        self.attached = True
        self.last_active = time.monotonic()
        if self._stopping is not None:
            # A reload right after the grace period: let the old thread finish first. The
            # stop is shared by every listener arriving now; one leaving must not cancel it.
            await asyncio.shield(self._stopping)
        if self.closed:
            return self.ring.reader()  # the ring is closed: the handler ends at once
        if not self.mixer.running:
            # The mixer thread copies the caller's log context: give it the session's
            # alone, not the first listener's client and channel.
            contextvars.Context().run(self._start_mixer)
        resume = self._resume_points.pop(listener.id, None)
        if resume_at and resume is not None and resume.bytes_sent == resume_at:
            reader = self.ring.reader(after_seq=resume.last_seq)
            if reader.resumes_after(resume.last_seq):
                listener.bytes_sent, listener.last_seq = resume.bytes_sent, resume.last_seq
                listener.stream_start = resume.stream_start
                listener.resumed = True
                return reader
        return self.ring.reader()

    def _start_mixer(self) -> None:
        structlog.contextvars.bind_contextvars(session_id=self.id)
        self.mixer.start()

    def listener_started(self, listener: Listener, stream_start: float) -> None:
        """The listener got its first bytes: announce where its clock starts in stream time."""
        listener.stream_start = stream_start
        self.publish("listener", self._listener_payload("attached", listener))

    def detach_listener(self, listener: Listener) -> None:
        """Forget a listener; the mixer stops after the grace period if it was the last."""
        if listener.last_seq is not None:
            self._resume_points[listener.id] = ResumePoint(
                listener.bytes_sent, listener.last_seq, listener.stream_start
            )
            while len(self._resume_points) > RESUME_POINTS_LIMIT:
                self._resume_points.pop(next(iter(self._resume_points)))
        if self.listeners.pop(listener.connection_id, None) is None:
            return  # detached already
        self.last_active = time.monotonic()
        self.publish("listener", self._listener_payload("detached", listener))
        if not self.listeners and not self.closed:
            grace = self._config.stream.stop_grace_seconds
            self._stop_timer = asyncio.get_running_loop().call_later(grace, self._stop_if_unheard)

    def _listener_payload(self, action: str, listener: Listener) -> dict[str, Any]:
        return {
            "action": action,
            "listenerId": listener.id,
            "streamStart": listener.stream_start,
            "listeners": len(self.listeners),
        }

    def _stop_if_unheard(self) -> None:
        self._stop_timer = None
        # A stop under way already covers this one (a listener that left while waiting on it).
        if not self.listeners and self.mixer.running and self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop_mixer())

    async def _stop_mixer(self) -> None:
        try:
            # Joining the mixer thread blocks; never on the event loop.
            await asyncio.get_running_loop().run_in_executor(None, self.mixer.stop)
        finally:
            self._stopping = None

    # -- event clients ---------------------------------------------------------------
    def subscribe(self, client: EventClient) -> bool:
        """Attach an event client; False when the session has already been closed."""
        if self.closed:
            return False
        self.event_clients[client.id] = client
        self.attached = True
        self.last_active = time.monotonic()
        return True

    def unsubscribe(self, client: EventClient) -> None:
        if self.event_clients.pop(client.id, None) is not None:
            self.last_active = time.monotonic()

    def publish(self, type_: str, payload: dict[str, Any]) -> SessionEvent:
        """Number an event, keep it for replay, and queue it for every event client."""
        event = SessionEvent(next(self._event_ids), type_, payload)
        self._backlog.append(event)
        self._latest[type_] = event
        for client in list(self.event_clients.values()):
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

    # -- mixer callbacks (on the loop, via _LoopSink) ----------------------------------
    def track_started(self, event: TrackEvent) -> None:
        self.current = event
        self.track_history.append(event)
        if event.next_track is not None:
            self.next_track = event.next_track
        self.publish("track", self.track_payload())

    def track_at(self, stream_time: float) -> TrackEvent | None:
        """The track audible at `stream_time` (the latest one started by then)."""
        started = [e for e in self.track_history if e.starts_at <= stream_time]
        return started[-1] if started else None

    def track_starting_in(self, chunk: Chunk) -> TrackEvent | None:
        """The track that becomes audible at the start of `chunk`.

        The mixer cuts a chunk at the codec frame boundary nearest each track start, so
        the start lies within half a frame (at most ~23 ms, AAC) of some chunk's start.
        """
        for event in self.track_history:
            if abs(event.starts_at - chunk.stream_time) <= FRAME_SLACK_SECONDS:
                return event
        return None

    def next_chosen(self, track: Track) -> None:
        self.next_track = track
        self.publish("track", self.track_payload())

    def track_failed(self, track: Track, reason: str, count: int) -> None:
        """One SSE message per failure or burst of failures, never one per file of a burst:
        a folder that vanished must not flood event clients into being dropped as slow."""
        self.publish("track_failed", {"trackId": track.track_id, "reason": reason, "count": count})

    def fail(self, reason: str) -> None:
        """The mixer gave up: end every response with an error so clients restart cleanly.

        Event clients get an `error` event (the page restarts on a new session); audio
        responses end (the page sees `ended`). The registry then forgets the session.
        """
        if self.closed:
            return
        log.error("session.failed", session_id=self.id, reason=reason)
        self.publish("error", {"message": "session_ended", "reason": reason})
        self.closed = True
        self.ring.close()
        for client in list(self.event_clients.values()):
            client.close()
        self._on_failed(self)

    def track_payload(self) -> dict[str, Any]:
        current = self.current
        return {
            "nowPlaying": track_json(current.track if current else None),
            "startsAt": round(current.starts_at, 3) if current else None,
            "next": track_json(self.next_track),
        }

    def skip(self) -> None:
        self.mixer.skip()

    def status(self) -> dict[str, Any]:
        return {
            "sessionId": self.id,
            "listeners": len(self.listeners),
            "eventClients": len(self.event_clients),
            "playing": self.mixer.running,
            "streamTime": round(self.ring.head_time, 3),
            "uptimeSeconds": round(time.time() - self.created_at, 3),
            **self.track_payload(),
        }

    async def close(self) -> None:
        """End every response of this session and stop its mixer."""
        self.closed = True
        if self._stop_timer is not None:
            self._stop_timer.cancel()
        self.ring.close()
        for client in list(self.event_clients.values()):
            client.close()
        await asyncio.get_running_loop().run_in_executor(None, self.mixer.close)


class SessionRegistry:
    """All sessions of this process, the cookie bindings, and the idle reaper."""

    def __init__(self, config: Config, catalog: Catalog) -> None:
        self._config = config
        self._catalog = catalog
        self._sessions: dict[str, Session] = {}
        self._closing: set[asyncio.Task[None]] = set()  # failed sessions being reaped
        self._bindings: OrderedDict[str, str] = OrderedDict()
        self._reaper: asyncio.Task[None] | None = None
        self.admission = Admission(
            config.session.max_encoder_load,
            lambda: [s.mixer for s in self._sessions.values()],
        )

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def create(self, client_id: str) -> Session:
        """A new session created by `client_id`.

        Raises SessionLimitError at `max_sessions`, OverloadedError when one more session
        would not be encoded in real time (`radiod.admission`).
        """
        if len(self._sessions) >= self._config.session.max_sessions:
            raise SessionLimitError(self._config.session.max_sessions)
        self.admission.check(len(self._sessions))
        session_id = f"session_{new_token()}"
        session = Session(
            session_id,
            client_id,
            self._config,
            self._catalog,
            asyncio.get_running_loop(),
            self._session_failed,
        )
        self._sessions[session_id] = session
        self.bind(client_id, session_id)
        log.info("session.created", session_id=session_id, sessions=len(self._sessions))
        return session

    # -- client cookie binding (the seed's persistAudioSessionBinding) -----------------
    def bind(self, client_id: str, session_id: str) -> None:
        self._bindings[client_id] = session_id
        self._bindings.move_to_end(client_id)
        while len(self._bindings) > CLIENT_BINDINGS_LIMIT:
            self._bindings.popitem(last=False)

    def bound_session(self, client_id: str) -> Session | None:
        session_id = self._bindings.get(client_id)
        return self._sessions.get(session_id) if session_id else None

    def check_split(self, client_id: str, channel: str, session: Session) -> None:
        """Log `split_session.detected` if the client's other channel is on another session."""
        for other in self._sessions.values():
            if other is session:
                continue
            members = other.event_clients if channel == "audio" else other.listeners
            if any(m.client_id == client_id for m in members.values()):
                audio, events = (session, other) if channel == "audio" else (other, session)
                # client_id, channel (the one attaching) and session_id come from the context.
                log.warning(
                    "split_session.detected", audio_session_id=audio.id, events_session_id=events.id
                )

    # -- lifecycle ---------------------------------------------------------------------
    def start_reaper(self) -> None:
        self._reaper = asyncio.create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        config = self._config.session
        shortest = min(config.idle_timeout_seconds, config.unattached_timeout_seconds)
        while True:
            await asyncio.sleep(min(max(shortest / 4, 0.05), 5.0))
            now = time.monotonic()
            for session in list(self._sessions.values()):
                reason = self._expired(session, now)
                if reason is not None:
                    try:
                        await self.reap(session, reason=reason)
                    except Exception:
                        # One session failing to close must not end reaping for all others.
                        log.exception("session.reap_failed", session_id=session.id)

    def _session_failed(self, session: Session) -> None:
        task = asyncio.ensure_future(self.reap(session, reason="failed"))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _expired(self, session: Session, now: float) -> str | None:
        """Why `session` should be reaped now ("unattached", "idle"), or None."""
        if not session.idle:
            return None
        waited = now - session.last_active
        if not session.attached and waited >= self._config.session.unattached_timeout_seconds:
            return "unattached"
        if waited >= self._config.session.idle_timeout_seconds:
            return "idle"
        return None

    async def reap(self, session: Session, *, reason: str) -> None:
        if self._sessions.pop(session.id, None) is None:
            return
        await session.close()
        log.info(
            "session.reaped", session_id=session.id, reason=reason, created_by=session.created_by
        )

    async def close(self) -> None:
        """Stop the reaper, then close every session (shutdown); idempotent."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        await asyncio.gather(*(self.reap(s, reason="shutdown") for s in self.sessions()))
        await asyncio.gather(*self._closing)
