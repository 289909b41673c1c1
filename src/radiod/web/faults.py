"""Test-only fault hooks, mounted only when config `testing.fault_hooks` is true.

The browser tests need a server that misbehaves on purpose: stop feeding one listener
while its socket stays open, abort a listener's TCP connection, cut the SSE channel.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from radiod.sessions import Listener, Session
from radiod.web.context import require_session

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()


def _listeners(request: web.Request) -> tuple[Session, list[Listener]]:
    session = require_session(request, request.match_info["session_id"])
    wanted = request.query.get("listener")
    return session, [x for x in session.listeners.values() if wanted in (None, x.id)]


@routes.post("/_faults/sessions/{session_id}/stall")
async def stall(request: web.Request) -> web.Response:
    _, listeners = _listeners(request)
    for listener in listeners:
        listener.stalled.set()
    log.warning("fault.stall", listeners=[x.id for x in listeners])
    return web.json_response({"stalled": [x.id for x in listeners]})


@routes.post("/_faults/sessions/{session_id}/abort")
async def abort(request: web.Request) -> web.Response:
    _, listeners = _listeners(request)
    for listener in listeners:
        if listener.abort is not None:
            listener.abort()
    log.warning("fault.abort", listeners=[x.id for x in listeners])
    return web.json_response({"aborted": [x.id for x in listeners]})


@routes.post("/_faults/sessions/{session_id}/cut-events")
async def cut_events(request: web.Request) -> web.Response:
    session = require_session(request, request.match_info["session_id"])
    clients = list(session.event_clients.values())
    for client in clients:
        client.close()
    log.warning("fault.cut_events", event_clients=len(clients))
    return web.json_response({"cut": len(clients)})
