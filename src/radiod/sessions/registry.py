"""All sessions of this process: creation and admission, cookie bindings, split detection,
and the reaper that closes idle, never-attached and failed sessions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

import structlog

from radiod.admission import Admission
from radiod.audio.runner import LocalMixers, MixerHost
from radiod.catalog import Catalog
from radiod.config import Config
from radiod.node import node_name
from radiod.sessions.ids import new_session_id
from radiod.sessions.session import Session

if TYPE_CHECKING:
    from radiod.metrics import Metrics

log = structlog.get_logger(__name__)

# Client cookie -> session bindings kept; the oldest binding is forgotten first.
CLIENT_BINDINGS_LIMIT = 10_000


class SessionLimitError(Exception):
    """`max_sessions` sessions already exist."""


class DrainingError(Exception):
    """The instance is draining (SIGTERM): new sessions belong on another instance."""


class SessionRegistry:
    """All sessions of this process, the cookie bindings, and the idle reaper."""

    def __init__(
        self,
        config: Config,
        catalog: Catalog,
        metrics: Metrics,
        mixers: MixerHost | None = None,
    ) -> None:
        self._config = config
        server = config.server
        self.node = node_name(server.node, server.host, server.port)
        self.draining = False
        self._catalog = catalog
        self._metrics = metrics
        self._mixers = mixers or LocalMixers(catalog, config.audio, config.stream, metrics.worker())
        self._sessions: dict[str, Session] = {}
        self._closing: set[asyncio.Task[None]] = set()  # failed sessions being reaped
        self._bindings: OrderedDict[str, str] = OrderedDict()
        self._reaper: asyncio.Task[None] | None = None
        # The budget is per encoding process: each has a GIL of its own (radiod.admission).
        self.admission = Admission(
            config.session.max_encoder_load * self._mixers.processes,
            lambda: [s.mixer for s in self._sessions.values()],
            cpu_clock=self._mixers.cpu_seconds,
        )

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def create(self, client_id: str) -> Session:
        """A new session created by `client_id`.

        Raises SessionLimitError at `max_sessions`, OverloadedError when one more session
        would not be encoded in real time (`radiod.admission`), DrainingError while draining.
        """
        if self.draining:
            raise DrainingError()
        if len(self._sessions) >= self._config.session.max_sessions:
            raise SessionLimitError(self._config.session.max_sessions)
        self.admission.check(len(self._sessions))
        session_id = new_session_id(self.node)
        session = Session(
            session_id,
            client_id,
            self._config,
            self._catalog,
            asyncio.get_running_loop(),
            self._session_failed,
            self._metrics,
            self._mixers,
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
        other_channel = "events" if channel == "audio" else "audio"
        for other in self._sessions.values():
            if other is not session and other.has_client(client_id, other_channel):
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

    async def end_all(self, reason: str) -> None:
        """End every session with the SSE error `session_ended` (`reason`): pages start anew.

        The page treats it as it treats a mixer that gave up (web/static/events.js): a new
        session, which the proxy places on another instance once this one refuses them.
        """
        sessions = self.sessions()
        for session in sessions:
            session.publish("error", {"message": "session_ended", "reason": reason})
        await asyncio.gather(*(self.reap(s, reason=reason) for s in sessions))

    async def close(self) -> None:
        """Stop the reaper, then close every session (shutdown); idempotent."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        await asyncio.gather(*(self.reap(s, reason="shutdown") for s in self.sessions()))
        await asyncio.gather(*self._closing)
