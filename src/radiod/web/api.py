"""JSON endpoints: create a session, control it, read its status, liveness."""

from __future__ import annotations

import asyncio
import time

import structlog
from aiohttp import web

from radiod.admission import OverloadedError
from radiod.sessions import DrainingError, SessionLimitError
from radiod.web.context import CLIENT_REMOTE, client_id, json_error, require_session
from radiod.web.guards import CREATE_LIMITER, client_address
from radiod.web.keys import REGISTRY, STARTED
from radiod.web.session_cookie import remember_session

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

# At `max_sessions` a slot frees only when a session is reaped: a quicker retry finds it full.
FULL_RETRY_AFTER_SECONDS = 10


@routes.post("/create-session")
async def create_session(request: web.Request) -> web.Response:
    refused = request.app[CREATE_LIMITER].retry_after(
        client_address(request[CLIENT_REMOTE]), client_id(request)
    )
    if refused is not None:
        retry_after, limit = refused
        structlog.contextvars.bind_contextvars(rejected="rate_limited")
        log.warning("session.rate_limited", limit=limit, retry_after=retry_after)
        return json_error(
            429,
            f"Too many new sessions; retry in {retry_after} s",
            **{"Retry-After": str(retry_after)},
        )
    try:
        session = request.app[REGISTRY].create(client_id(request))
    except SessionLimitError as exc:
        # `rejected`: this request and its lines belong to no session (see `radiod audit`).
        structlog.contextvars.bind_contextvars(rejected="session_limit")
        log.warning("session.limit_reached", max_sessions=exc.args[0])
        return json_error(
            503,
            f"Server is at its limit of {exc.args[0]} sessions; try later",
            **{"Retry-After": str(FULL_RETRY_AFTER_SECONDS)},
        )
    except DrainingError:
        # 503 is what the proxy retries on another instance (deploy/nginx.conf.j2).
        structlog.contextvars.bind_contextvars(rejected="draining")
        log.info("session.refused_draining")
        return json_error(503, "Server is draining; try another instance", **{"Retry-After": "1"})
    except OverloadedError as exc:
        # Before any session is named: `rejected` keeps these lines honest in `radiod audit`.
        structlog.contextvars.bind_contextvars(rejected="overloaded")
        log.warning("session.admission_refused", reason=exc.reason, **exc.figures)
        return json_error(
            503,
            "Server cannot encode another session in real time; try later",
            **{"Retry-After": str(exc.retry_after)},
        )
    structlog.contextvars.bind_contextvars(session_id=session.id)
    remember_session(request, session.id)
    return web.json_response({"sessionId": session.id, "createdAt": session.created_at}, status=201)


@routes.post("/sessions/{session_id}/skip")
async def skip(request: web.Request) -> web.Response:
    session = require_session(request, request.match_info["session_id"])
    session.skip()
    log.info("session.skip_requested")
    return web.json_response({"ok": True, "sessionId": session.id}, status=202)


@routes.get("/sessions/{session_id}")
async def status(request: web.Request) -> web.Response:
    session = require_session(request, request.match_info["session_id"])
    return web.json_response({**session.status(), "node": request.app[REGISTRY].node})


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    sessions = registry.sessions()
    return web.json_response(
        {
            # While draining: 503, so health checks (a load balancer's, Kubernetes'
            # readiness) take the instance out while its listeners play on.
            "status": "draining" if registry.draining else "ok",
            "node": registry.node,
            "sessions": len(sessions),
            "listeners": sum(s.listener_count for s in sessions),
            "eventClients": sum(s.event_client_count for s in sessions),
            # asyncio tasks alive (one per open response and a few of the server's own): the
            # soak bench watches it for leaks; counting is cheap beside serving those tasks.
            "tasks": len(asyncio.all_tasks()),
            "uptimeSeconds": round(time.time() - request.app[STARTED], 3),
        },
        status=503 if registry.draining else 200,
    )
