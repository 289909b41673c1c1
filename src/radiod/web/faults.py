"""Test-only fault hooks, mounted only when config `testing.fault_hooks` is true.

The browser tests need a server that misbehaves on purpose: stop feeding one listener
while its socket stays open, abort a listener's TCP connection, cut the SSE channel.

What the hooks can do to a `/stream` connection is kept here, by connection id, and only
for connections that `watch` put within their reach (all of them with the hooks on, none
with them off): production objects carry no fault state.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import structlog
from aiohttp import web

from radiod.sessions import Listener
from radiod.web.context import require_session
from radiod.web.keys import CONFIG

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()


class ConnectionFaults:
    """The hooks' hold on one `/stream` connection: stalled or not, how to stall and abort it."""

    __slots__ = ("__weakref__", "abort", "hold", "stalled")

    def __init__(self, abort: Callable[[], None] | None) -> None:
        self.stalled = False
        self.abort = abort
        self.hold: Callable[[], None] | None = None  # stops the broadcast step writing to it

    def stall(self) -> None:
        self.stalled = True
        if self.hold is not None:
            self.hold()


# The connection's own request holds its `ConnectionFaults`; this index only finds them by
# connection id, weakly, so a connection that ended leaves nothing behind. It is kept by
# the module because these hooks are mounted as routes alone, and aiohttp freezes the
# application's state before the first request could add an index there.
_FAULTS = web.RequestKey("connection_faults", ConnectionFaults)
_BY_CONNECTION: weakref.WeakValueDictionary[str, ConnectionFaults] = weakref.WeakValueDictionary()


def watch(request: web.Request, listener: Listener) -> None:
    """Put `listener`'s connection (`request`) within the hooks' reach, if they are on."""
    if not request.app[CONFIG].testing.fault_hooks:
        return
    faults = ConnectionFaults(request.transport.abort if request.transport is not None else None)
    request[_FAULTS] = faults
    _BY_CONNECTION[listener.connection_id] = faults


def on_stall(request: web.Request, hold: Callable[[], None]) -> None:
    """Have the stall hook call `hold` for this connection (at once if it was stalled)."""
    faults = request.get(_FAULTS)
    if faults is not None:
        faults.hold = hold
        if faults.stalled:
            hold()


def stalled(request: web.Request) -> bool:
    """True once the stall hook hit this connection: it stays open, nothing more is sent."""
    faults = request.get(_FAULTS)
    return faults is not None and faults.stalled


def _connections(request: web.Request) -> list[tuple[str, ConnectionFaults | None]]:
    """The named session's connections (of `?listener=` alone if given), by listener id."""
    session = require_session(request, request.match_info["session_id"])
    listeners = session.listeners_named(request.query.get("listener"))
    return [(x.id, _BY_CONNECTION.get(x.connection_id)) for x in listeners]


@routes.post("/_faults/sessions/{session_id}/stall")
async def stall(request: web.Request) -> web.Response:
    connections = _connections(request)
    for _, faults in connections:
        if faults is not None:
            faults.stall()
    names = [name for name, _ in connections]
    log.warning("fault.stall", listeners=names)
    return web.json_response({"stalled": names})


@routes.post("/_faults/sessions/{session_id}/abort")
async def abort(request: web.Request) -> web.Response:
    connections = _connections(request)
    for _, faults in connections:
        if faults is not None and faults.abort is not None:
            faults.abort()
    names = [name for name, _ in connections]
    log.warning("fault.abort", listeners=names)
    return web.json_response({"aborted": names})


@routes.post("/_faults/sessions/{session_id}/cut-events")
async def cut_events(request: web.Request) -> web.Response:
    session = require_session(request, request.match_info["session_id"])
    cut = session.close_event_clients()
    log.warning("fault.cut_events", event_clients=cut)
    return web.json_response({"cut": cut})
