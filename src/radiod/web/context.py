"""Per-request context: the client cookie, log binding, session lookup and JSON errors.

One middleware binds `client_id`, `channel` and `remote` with structlog's contextvars,
so every line logged while handling the request (ours, library code's, aiohttp's access
log) carries them; `lookup_session` adds `session_id` once the session is known.

The client cookie is `<client id>.<signature>`, signed with config `server.secret`
(itsdangerous). A cookie that does not verify is treated as absent: the client gets a
new id, so a forged value never selects a cookie->session binding and never reaches the
logs as a `client_id` (which `radiod audit` groups channels by). A request that names no
session follows the signed session cookie (web/session_cookie.py: what a proxy routes by),
then the client's in-memory binding.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie

import structlog
from aiohttp import web
from itsdangerous import BadSignature

from radiod.sessions import Session, new_token, valid_session_id
from radiod.web.forwarded import forwarded_client
from radiod.web.keys import CONFIG, REGISTRY
from radiod.web.session_cookie import cookie_session_id, remember_session
from radiod.web.signing import signer

CLIENT_COOKIE = "radiod_client"
CLIENT_COOKIE_MAX_AGE = 365 * 24 * 3600
CLIENT_ID = web.RequestKey("client_id", str)
# The client's address: the peer, or the client a trusted proxy names (web/forwarded.py).
CLIENT_REMOTE = web.RequestKey("client_remote", str)
_NEW_CLIENT = web.RequestKey("new_client", bool)
# The shape of a cookie we signed: a client id, a dot, a URL-safe signature. Checked
# before verifying, so odd bytes never reach the signer.
_SIGNED_RE = re.compile(r"[A-Za-z0-9_-]{1,128}\.[A-Za-z0-9_-]{1,128}")
_SALT = "radiod.client"

log = structlog.get_logger(__name__)


def channel_of(path: str) -> str:
    if path == "/stream":
        return "audio"
    if path == "/events":
        return "events"
    if path == "/" or path.startswith("/static/"):
        return "page"
    return "api"


def client_id(request: web.Request) -> str:
    return request[CLIENT_ID]


def sign_client_id(secret: str, cid: str) -> str:
    """The cookie value for client id `cid` (`server.secret` = `secret`)."""
    return signer(secret, _SALT).sign(cid).decode("ascii")


def verified_client_id(secret: str, cookie: str) -> str | None:
    """The client id inside a cookie we signed, or None for anything else."""
    if not _SIGNED_RE.fullmatch(cookie):
        return None
    try:
        return signer(secret, _SALT).unsign(cookie).decode("ascii")
    except BadSignature:
        return None


def json_error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def context_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    # Keep-alive connections serve several requests in one task: start from a clean context.
    structlog.contextvars.clear_contextvars()
    server = request.app[CONFIG].server
    cid = verified_client_id(server.secret, request.cookies.get(CLIENT_COOKIE, ""))
    if cid is None:
        cid = new_token()
        request[_NEW_CLIENT] = True
    request[CLIENT_ID] = cid
    remote = forwarded_client(
        request.remote, request.headers.get("X-Forwarded-For"), server.trusted_proxies
    )
    request[CLIENT_REMOTE] = remote or ""
    structlog.contextvars.bind_contextvars(
        client_id=cid, channel=channel_of(request.path), remote=remote
    )
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status == 405:
            # A method no route takes: about no session, even on /stream or /events.
            structlog.contextvars.bind_contextvars(rejected="method_not_allowed")
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        # aiohttp's own 404/405 are text; clients of this API always get JSON errors.
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
        return json_error(exc.status, exc.reason, **allow)


async def set_client_cookie(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: give a browser its client cookie on the first response.

    Streaming handlers prepare their own responses, so the middleware cannot add it
    afterwards; and by the time this signal runs aiohttp has already rendered
    `response.cookies`, hence the header is written directly.
    """
    if request.get(_NEW_CLIENT):
        secret = request.app[CONFIG].server.secret
        cookie = SimpleCookie()
        cookie[CLIENT_COOKIE] = sign_client_id(secret, request[CLIENT_ID])
        morsel = cookie[CLIENT_COOKIE]
        morsel.update({"max-age": str(CLIENT_COOKIE_MAX_AGE), "path": "/", "httponly": True})
        morsel["samesite"] = "Lax"
        response.headers.add("Set-Cookie", morsel.OutputString())


def lookup_session(request: web.Request, raw: str | None) -> Session | None:
    """The session a request names (`raw`), or the one bound to its cookie when it names none.

    A malformed ID is answered 400 here and never looked up. Naming a known session binds
    the client cookie to it (the seed's `persistAudioSessionBinding`).
    """
    registry = request.app[REGISTRY]
    if raw is None:
        # The signed session cookie first: it is what the proxy routed this request by.
        named = cookie_session_id(request)
        session = registry.get(named) if named else None
        session = session or registry.bound_session(client_id(request))
    elif not valid_session_id(raw):
        # Never echo it: it may hold anything a client chose to send. `rejected` tells the
        # audit that these lines belong to no session.
        structlog.contextvars.bind_contextvars(rejected="malformed_session_id")
        log.info("request.rejected", length=len(raw))
        raise web.HTTPBadRequest(
            text='{"error": "Malformed session id: expected 1-128 characters of [A-Za-z0-9_-]"}',
            content_type="application/json",
        )
    else:
        session = registry.get(raw)
        if session is not None:
            registry.bind(client_id(request), session.id)
            remember_session(request, session.id)
    if session is None:
        if raw is None:
            structlog.contextvars.bind_contextvars(rejected="no_session")
        else:
            # Well-formed: the request is about this (unknown) session; say so on its lines.
            structlog.contextvars.bind_contextvars(session_id=raw)
        log.info("session.not_found")
        return None
    structlog.contextvars.bind_contextvars(session_id=session.id)
    return session


def require_session(request: web.Request, raw: str | None) -> Session:
    """`lookup_session` for JSON endpoints: unknown is a 404."""
    session = lookup_session(request, raw)
    if session is None:
        raise web.HTTPNotFound(
            text='{"error": "Session not found"}', content_type="application/json"
        )
    return session
