"""The session from elsewhere: a QR code for another device, playlists for native players.

- `GET /sessions/ID/share.svg`: a QR code of `<origin>/?session=ID`, the page on this session.
  The link is a capability: whoever holds it listens to (and may skip on) this station. It
  carries the session ID and nothing more: no cookie, no client id.
- `GET /sessions/ID/listen.m3u`, `listen.pls`: one entry, the session's stream, for VLC, mpv
  or foobar2000. Those players send `Icy-MetaData: 1`, so the same URL gives them titles
  (web/icy.py).

Every URL is absolute and built from the request's own `Host`, which the guard middleware
has already checked against `server.allowed_hosts` (an unknown one never gets here: 421).
"""

from __future__ import annotations

import io

import segno
from aiohttp import web
from yarl import URL

from radiod.sessions import Session
from radiod.web.context import require_session
from radiod.web.keys import CONFIG

routes = web.RouteTableDef()

STATION_NAME = "radiod"
M3U_TYPE = "audio/x-mpegurl"
PLS_TYPE = "audio/x-scpls"
# A capability must not sit in a shared cache, nor outlive the page that asked for it there.
PRIVATE = {"Cache-Control": "private, no-store"}
# Medium error correction: still reads from a phone camera at an angle, on a dim screen.
QR_ERROR = "m"


class BadHost(ValueError):
    """A `Host` the guard let through (`allowed_hosts = ["*"]`) that is no URL authority."""


def public_url(request: web.Request, path: str, session: Session) -> str:
    """`path?session=ID` as an absolute URL the listener's other device or player can open.

    The scheme is https when `server.allowed_origins` lists this very host as an https
    origin (radiod behind a TLS proxy, see contrib/nginx-radiod.conf); headers such as
    `X-Forwarded-Proto` are not trusted, since any client can send them.
    """
    host = request.headers.get("Host") or _local_address(request)
    scheme = "https" if _https_origin(request, host) else request.scheme
    try:
        url = URL.build(scheme=scheme, authority=host, path=path, query={"session": session.id})
    except (ValueError, TypeError):
        raise BadHost(host) from None
    return str(url)


def _local_address(request: web.Request) -> str:
    """`ip:port` the client reached: for HTTP/1.0 without `Host` (aiohttp's `request.host`
    would ask DNS for this machine's name, blocking the event loop)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname:
        raise BadHost("")
    ip, port = sockname[:2]
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _https_origin(request: web.Request, host: str) -> bool:
    try:
        here = URL(f"https://{host}")
    except ValueError:
        return False
    for origin in request.app[CONFIG].server.allowed_origins:
        allowed = URL(origin)
        if (
            allowed.scheme == "https"
            and (allowed.host or "").lower() == (here.host or "").lower()
            and allowed.port == here.port
        ):
            return True
    return False


def m3u(stream_url: str, title: str = STATION_NAME) -> str:
    """An extended M3U playlist of one endless stream (`-1`: no length)."""
    return f"#EXTM3U\n#EXTINF:-1,{title}\n{stream_url}\n"


def pls(stream_url: str, title: str = STATION_NAME) -> str:
    """A PLS (SHOUTcast) playlist of one endless stream."""
    return (
        "[playlist]\n"
        "NumberOfEntries=1\n"
        f"File1={stream_url}\n"
        f"Title1={title}\n"
        "Length1=-1\n"
        "Version=2\n"
    )


def qr_svg(text: str) -> bytes:
    """`text` as a QR code in SVG: dark on white whatever the page's theme, so it scans."""
    out = io.BytesIO()
    segno.make(text, error=QR_ERROR).save(
        out, kind="svg", scale=4, border=2, dark="#111", light="#fff", xmldecl=False, omitsize=True
    )
    return out.getvalue()


def _session_url(request: web.Request, path: str) -> str:
    """`path` for the session the request names (404 when unknown, 400 for an odd Host)."""
    session = require_session(request, request.match_info["session_id"])
    try:
        return public_url(request, path, session)
    except BadHost:
        raise web.HTTPBadRequest(
            text='{"error": "Host header is not a valid host[:port]"}',
            content_type="application/json",
        ) from None


@routes.get("/sessions/{session_id}/share.svg")
async def share_svg(request: web.Request) -> web.Response:
    url = _session_url(request, "/")
    return web.Response(body=qr_svg(url), content_type="image/svg+xml", headers=PRIVATE)


@routes.get("/sessions/{session_id}/listen.m3u")
async def listen_m3u(request: web.Request) -> web.Response:
    url = _session_url(request, "/stream")
    return _attachment(m3u(url), M3U_TYPE, "radiod.m3u")


@routes.get("/sessions/{session_id}/listen.pls")
async def listen_pls(request: web.Request) -> web.Response:
    url = _session_url(request, "/stream")
    return _attachment(pls(url), PLS_TYPE, "radiod.pls")


def _attachment(text: str, content_type: str, filename: str) -> web.Response:
    """A playlist file: saved by a browser, opened by whatever player owns the type."""
    headers = {**PRIVATE, "Content-Disposition": f'attachment; filename="{filename}"'}
    return web.Response(text=text, content_type=content_type, headers=headers)
