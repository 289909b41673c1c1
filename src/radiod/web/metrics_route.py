"""`GET /metrics`: the Prometheus text, for the addresses and the token config allows.

Metrics tell a stranger how many people listen and when: they are not public. A request
passes with `Authorization: Bearer <metrics.token>` from anywhere, or from an address in
`metrics.allowed_ips` (default: loopback only). Otherwise `401` when a token would open it
(with `WWW-Authenticate`), `403` when nothing could; both JSON, like every error here.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from radiod.config import MetricsConfig
from radiod.metrics import METRICS
from radiod.web.context import json_error
from radiod.web.keys import CONFIG

routes = web.RouteTableDef()

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=4)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    # Validated by config.py: every entry parses.
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def address_allowed(remote: str | None, entries: tuple[str, ...]) -> bool:
    """Whether `remote` (an IPv4-mapped IPv6 address counts as IPv4) is in `entries`."""
    try:
        ip = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in _networks(entries))


def _token_matches(header: str | None, token: str) -> bool:
    scheme, _, given = (header or "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given, token)


def refusal(request: web.Request, config: MetricsConfig) -> web.Response | None:
    """None when `request` may read the metrics; else the answer it gets."""
    authorization = request.headers.get("Authorization")
    if _token_matches(authorization, config.token) or address_allowed(
        request.remote, config.allowed_ips
    ):
        return None
    if config.token:
        message = "Invalid metrics token" if authorization else "Metrics need a bearer token"
        return json_error(401, message, **{"WWW-Authenticate": 'Bearer realm="radiod metrics"'})
    return json_error(403, "Metrics are not served to this address (metrics.allowed_ips)")


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    refused = refusal(request, request.app[CONFIG].metrics)
    if refused is not None:
        return refused
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
