"""A listener's radio: the one owner of everything a listener hears and sees.

A `Session` owns one `Mixer`, one `Ring`, its audio listeners and its event clients.
Audio and metadata for a listener both come from that one object, so the server cannot
split a listener by construction. Its parts live beside it (`listeners`: who hears it and
the resume rule; `event_hub`: SSE events and replay; `now_playing`: the tracks); this
module wires them to the mixer and keeps the lifecycle: the mixer starts with the first
listener and stops `stop_grace_seconds` after the last one left, so a reload reuses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from radiod.audio.fanout import Fanout
from radiod.audio.outputs import TrackEvent
from radiod.audio.ring import Chunk, Ring, RingReader
from radiod.audio.runner import LocalMixers, MixerHandle, MixerHost
from radiod.catalog import Catalog
from radiod.config import Config
from radiod.library import Track
from radiod.sessions.event_hub import EventClient, EventHub, SessionEvent
from radiod.sessions.listeners import Listener, Listeners
from radiod.sessions.now_playing import NowPlaying

if TYPE_CHECKING:
    from radiod.metrics import Metrics

log = structlog.get_logger(__name__)


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


class MixerSwitch:
    """Runs a session's mixer while someone listens.

    On with the first listener; off `grace` seconds after the last one left, so a reload
    (the audio drops and comes back moments later) continues the same stream: a reload is
    not a stop.
    """

    def __init__(
        self, mixer: MixerHandle, session_id: str, grace: float, heard: Callable[[], bool]
    ) -> None:
        self._mixer = mixer
        self._session_id = session_id
        self._grace = grace
        self._heard = heard
        self._stop_timer: asyncio.TimerHandle | None = None
        self._stopping: asyncio.Future[None] | None = None

    async def settle(self) -> None:
        """Cancel a pending stop, and wait for one under way to finish."""
        self._cancel_stop()
        if self._stopping is not None:
            # A reload right after the grace period: let the old thread finish first. The
            # stop is shared by every listener arriving now; one leaving must not cancel it.
            await asyncio.shield(self._stopping)

    def start(self) -> None:
        if not self._mixer.running:
            # The mixer thread copies the caller's log context: give it the session's
            # alone, not the first listener's client and channel.
            contextvars.Context().run(self._in_session, self._mixer.start)

    def prime(self) -> None:
        """Have the first chunk made now (item 4 of issue 11: a first listener arriving a
        moment later finds audio waiting instead of waiting for a pipeline to open)."""
        contextvars.Context().run(self._in_session, self._mixer.prime)

    def _in_session(self, action: Callable[[], None]) -> None:
        structlog.contextvars.bind_contextvars(session_id=self._session_id)
        action()

    def stop_later(self) -> None:
        """The last listener left: stop after the grace period unless one comes back."""
        self._stop_timer = asyncio.get_running_loop().call_later(self._grace, self._stop_if_unheard)

    def _cancel_stop(self) -> None:
        if self._stop_timer is not None:
            self._stop_timer.cancel()
            self._stop_timer = None

    def _stop_if_unheard(self) -> None:
        self._stop_timer = None
        # A stop under way already covers this one (a listener that left while waiting on it).
        if not self._heard() and self._mixer.running and self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())

    async def _stop(self) -> None:
        try:
            # Joining the mixer thread blocks; never on the event loop.
            await asyncio.get_running_loop().run_in_executor(None, self._mixer.stop)
        finally:
            self._stopping = None

    async def close(self) -> None:
        """Stop for good (the session closes)."""
        self._cancel_stop()
        await asyncio.get_running_loop().run_in_executor(None, self._mixer.close)


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
        metrics: Metrics,
        mixers: MixerHost | None = None,
    ) -> None:
        self.id = session_id
        self.created_by = client_id
        self.created_at = time.time()
        self.last_active = time.monotonic()
        self.ring = Ring(
            ring_seconds=config.stream.ring_seconds,
            burst_seconds=config.stream.burst_seconds,
            on_skip=metrics.listener_skipped,
        )
        self.fanout = Fanout(self.ring)  # writes each chunk to every listener's socket
        host = mixers or LocalMixers(catalog, config.audio, config.stream, metrics.worker())
        self.mixer = host.mixer(session_id, _LoopSink(self, loop))
        self._on_failed = on_failed
        self._listeners = Listeners()
        self._switch = MixerSwitch(
            self.mixer, session_id, config.stream.stop_grace_seconds, lambda: bool(self._listeners)
        )
        self._events = EventHub()
        self._now_playing = NowPlaying()
        self.closed = False
        self._switch.prime()
        # Whether an audio listener or events client ever came: never-attached sessions are
        # reaped after `unattached_timeout_seconds`, sooner than idle ones.
        self.attached = False

    @property
    def content_type(self) -> str:
        return self.mixer.content_type

    @property
    def idle(self) -> bool:
        return not self._listeners and not self._events

    @property
    def listener_count(self) -> int:
        """Open `/stream` connections."""
        return len(self._listeners)

    @property
    def event_client_count(self) -> int:
        """Open `/events` connections."""
        return len(self._events)

    def has_client(self, client_id: str, channel: str) -> bool:
        """Whether `client_id` has a connection of `channel` ("audio" or "events") here."""
        members = self._listeners if channel == "audio" else self._events
        return members.has_client(client_id)

    def listeners_named(self, listener_id: str | None) -> list[Listener]:
        """The connections of the listener named `listener_id`; every one for None."""
        return self._listeners.named(listener_id)

    # -- audio listeners -------------------------------------------------------------
    async def attach_listener(self, listener: Listener, resume_at: int = 0) -> RingReader:
        """Register a listener and start the mixer if it is the first one.

        `resume_at` is the byte offset a browser asked to resume a dropped connection from
        (`Range: bytes=N-`). When it is exactly where this listener id left off and the
        ring still holds what follows, the new reader continues from there, with no burst,
        so nothing is heard twice.
        """
        # Registered before any wait, so the reaper never sees this session as idle. The
        # caller detaches in a `finally` around this call: a client that leaves during the
        # wait below must not stay registered.
        self._listeners.add(listener)
        self.attached = True
        self.last_active = time.monotonic()
        await self._switch.settle()
        if self.closed:
            return self.ring.reader()  # the ring is closed: the handler ends at once
        self._switch.start()
        point = self._listeners.resume_point(listener.id, resume_at)
        if point is not None:
            reader = self.ring.reader(after_seq=point.last_seq)
            if reader.resumes_after(point.last_seq):
                listener.resume(point)
                return reader
        return self.ring.reader()

    def listener_started(self, listener: Listener, stream_start: float) -> None:
        """The listener got its first bytes: announce where its clock starts in stream time."""
        listener.start(stream_start)
        self.publish("listener", self._listener_payload("attached", listener))

    def detach_listener(self, listener: Listener) -> None:
        """Forget a listener; the mixer stops after the grace period if it was the last."""
        if not self._listeners.remove(listener):
            return  # detached already
        self.last_active = time.monotonic()
        self.publish("listener", self._listener_payload("detached", listener))
        if not self._listeners and not self.closed:
            self._switch.stop_later()

    def _listener_payload(self, action: str, listener: Listener) -> dict[str, Any]:
        return {
            "action": action,
            "listenerId": listener.id,
            "streamStart": listener.stream_start,
            "listeners": len(self._listeners),
        }

    # -- event clients ---------------------------------------------------------------
    def subscribe(self, client: EventClient) -> bool:
        """Attach an event client; False when the session has already been closed."""
        if self.closed:
            return False
        self._events.add(client)
        self.attached = True
        self.last_active = time.monotonic()
        return True

    def unsubscribe(self, client: EventClient) -> None:
        if self._events.remove(client):
            self.last_active = time.monotonic()

    def publish(self, type_: str, payload: dict[str, Any]) -> SessionEvent:
        """Number an event, keep it for replay, and queue it for every event client."""
        return self._events.publish(type_, payload)

    def events_since(self, last_id: int | None) -> list[SessionEvent]:
        """What a (re)connecting event client gets before live events (`EventHub`)."""
        return self._events.events_since(last_id)

    def close_event_clients(self) -> int:
        """End every `/events` response of this session; how many there were."""
        return self._events.close_clients()

    # -- mixer callbacks (on the loop, via _LoopSink) ----------------------------------
    def track_started(self, event: TrackEvent) -> None:
        self._now_playing.started(event)
        self.publish("track", self._now_playing.payload())

    def track_at(self, stream_time: float) -> TrackEvent | None:
        """The track audible at `stream_time` (the latest one started by then)."""
        return self._now_playing.track_at(stream_time)

    def next_chosen(self, track: Track) -> None:
        self._now_playing.next_chosen(track)
        self.publish("track", self._now_playing.payload())

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
        self._events.close_clients()
        self._on_failed(self)

    def skip(self) -> None:
        self.mixer.skip()

    def status(self) -> dict[str, Any]:
        """`GET /sessions/{id}`: what plays, who listens, and for how long it has run."""
        return {
            "sessionId": self.id,
            "listeners": len(self._listeners),
            "eventClients": len(self._events),
            "playing": self.mixer.running,
            "streamTime": round(self.ring.head_time, 3),
            "uptimeSeconds": round(time.time() - self.created_at, 3),
            **self._now_playing.payload(),
        }

    async def close(self) -> None:
        """End every response of this session and stop its mixer."""
        self.closed = True
        self.ring.close()
        self._events.close_clients()
        await self._switch.close()
