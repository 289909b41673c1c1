"""The session cookie: which session this browser last named, for requests that name none.

Behind a proxy, a request without `?session=` must reach the instance that holds the
client's session, and the proxy cannot ask radiod which one that is. So whenever a request
names a session (or creates one), the response sets `radiod_session=<session id>.<signature>`:
the proxy routes on the node inside the ID (deploy/nginx.conf.j2), and radiod uses the
session only when the signature (itsdangerous, `server.secret`, which instances share)
verifies. A forged or foreign cookie is ignored like an absent one.
"""

from __future__ import annotations

import re
from http.cookies import SimpleCookie

from aiohttp import web
from itsdangerous import BadSignature

from radiod.sessions import valid_session_id
from radiod.web.keys import CONFIG
from radiod.web.signing import signer

SESSION_COOKIE = "radiod_session"
_NAMED = web.RequestKey("named_session", str)
# A signed session ID: the ID's alphabet, a dot, a URL-safe signature (checked before the
# signer sees anything).
_SIGNED_RE = re.compile(r"[A-Za-z0-9_-]{1,128}\.[A-Za-z0-9_-]{1,128}")


_SALT = "radiod.session"


def sign_session_id(secret: str, session_id: str) -> str:
    """The cookie value naming `session_id` (`server.secret` = `secret`)."""
    return signer(secret, _SALT).sign(session_id).decode("ascii")


def cookie_session_id(request: web.Request) -> str | None:
    """The session the request's verified session cookie names, or None."""
    value = request.cookies.get(SESSION_COOKIE, "")
    if not _SIGNED_RE.fullmatch(value):
        return None
    try:
        session_id = signer(request.app[CONFIG].server.secret, _SALT).unsign(value).decode("ascii")
    except BadSignature:
        return None
    return session_id if valid_session_id(session_id) else None


def remember_session(request: web.Request, session_id: str) -> None:
    """The response to `request` will name `session_id` in the session cookie."""
    request[_NAMED] = session_id


async def set_session_cookie(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: set the session cookie when it changes (see set_client_cookie)."""
    named = request.get(_NAMED)
    if named is None or cookie_session_id(request) == named:
        return
    cookie = SimpleCookie()
    cookie[SESSION_COOKIE] = sign_session_id(request.app[CONFIG].server.secret, named)
    morsel = cookie[SESSION_COOKIE]
    morsel.update({"path": "/", "httponly": True})
    morsel["samesite"] = "Lax"
    response.headers.add("Set-Cookie", morsel.OutputString())
