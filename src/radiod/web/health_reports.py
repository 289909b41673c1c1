"""`POST /sessions/ID/health`: the page's own view of its health, as the listener lived it.

The page judges health by what it hears (web/static/health.js); the server only sees bytes
leave. Each transition the page reports becomes one `client.<kind>` log line carrying the
session's `session_id` and the reporter's `client_id`, and a count in `/metrics`, so
`radiod audit` can set what listeners heard beside what the server did.

It is client input, so it is held to a strict shape: a JSON object of at most
MAX_BODY_BYTES, a known `kind`, only the fields that kind takes, integers in range and
reasons from a fixed list. Anything else is a `400` naming the problem, never a 500. Reports
are rate-limited per client and per session with the token buckets of `web/guards.py`;
refusals log at most once per interval.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from aiohttp import web

from radiod.logs import Throttle
from radiod.metrics import METRICS
from radiod.web.context import client_id, json_error, require_session
from radiod.web.guards import TokenBuckets

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

# A report is a few small fields (~150 bytes); anything much bigger is not one.
MAX_BODY_BYTES = 1024
# sendBeacon with a string sends text/plain (a CORS-safelisted type); fetch sends JSON.
CONTENT_TYPES = frozenset({"application/json", "text/plain"})
# A healthy page reports a few transitions a minute; a struggling one a buffering spell
# every few seconds at worst. Per client (cookie): a burst, then a steady rate.
CLIENT_BURST, CLIENT_PER_MINUTE = 20, 30
# Per session: room for the few devices that share one (a phone and a laptop).
SESSION_BURST, SESSION_PER_MINUTE = 60, 120
HOUR_MS = 3_600_000

# Why the page declared the audio dead (health.js) and why it restarted (recovery.js).
DEAD_REASONS = frozenset({"no-progress", "error", "ended"})
RESTART_REASONS = DEAD_REASONS | {
    "session-lost",
    "events-and-audio",
    "unreachable",
    "server-full",
}
_LISTENER_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class ReportError(ValueError):
    """A report that is not one; the message says why (and never echoes client text).

    `status`: 400 for a body that is not a report; 411, 413, 415 for one that is not
    even read.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


Rule = Callable[[str, Any], Any]


def _integer(low: int, high: int) -> Rule:
    def check(name: str, value: Any) -> int:
        if type(value) is not int or not low <= value <= high:
            raise ReportError(f"{name}: expected an integer between {low} and {high}")
        return value

    return check


def _one_of(values: frozenset[str]) -> Rule:
    def check(name: str, value: Any) -> str:
        if type(value) is not str or value not in values:
            raise ReportError(f"{name}: expected one of {', '.join(sorted(values))}")
        return value

    return check


def _listener(name: str, value: Any) -> str:
    if type(value) is not str or not _LISTENER_RE.fullmatch(value):
        raise ReportError(f"{name}: expected 1-64 characters of [A-Za-z0-9_-]")
    return value


_MS, _ATTEMPT, _DELAY = _integer(0, HOUR_MS), _integer(1, 1000), _integer(0, 600_000)

# kind -> (required fields, optional fields); every kind may name its listener.
KINDS: dict[str, tuple[dict[str, Rule], dict[str, Rule]]] = {
    "buffering": ({"ms": _MS}, {}),
    "degraded": ({}, {"ms": _MS}),
    "dead": ({"reason": _one_of(DEAD_REASONS)}, {"ms": _MS}),
    "restart": ({"reason": _one_of(RESTART_REASONS)}, {"attempt": _ATTEMPT, "delayMs": _DELAY}),
    "sse_reconnect": ({}, {"attempt": _ATTEMPT, "delayMs": _DELAY}),
    "play_refused": ({}, {}),
}
# The page's camelCase names, as logged.
_LOG_NAMES = {"delayMs": "delay_ms", "listenerId": "listener_id"}


@dataclass(frozen=True, slots=True)
class HealthReport:
    kind: str
    fields: dict[str, Any]  # validated, with their log names


def parse_report(body: bytes) -> HealthReport:
    """The report in `body`, or ReportError saying what is wrong with it."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ReportError("Malformed report: expected a JSON object") from None
    if type(data) is not dict:
        raise ReportError("Malformed report: expected a JSON object")
    kind = data.get("kind")
    if type(kind) is not str or kind not in KINDS:
        raise ReportError(f"kind: expected one of {', '.join(KINDS)}")
    required, optional = KINDS[kind]
    rules = {**required, **optional, "listenerId": _listener}
    unknown = set(data) - set(rules) - {"kind"}
    if unknown:
        raise ReportError(f"{kind}: unexpected field(s); takes {', '.join(rules) or 'none'}")
    missing = [name for name in required if name not in data]
    if missing:
        raise ReportError(f"{kind}: missing {', '.join(missing)}")
    fields = {_LOG_NAMES.get(k, k): rules[k](k, v) for k, v in data.items() if k != "kind"}
    return HealthReport(kind, fields)


async def read_body(request: web.Request) -> bytes:
    """The request body, if it is small and of a JSON-ish type; else ReportError."""
    if request.content_type not in CONTENT_TYPES:
        raise ReportError("Expected Content-Type application/json or text/plain", 415)
    length = request.content_length
    if length is None:
        raise ReportError("Expected a Content-Length", 411)
    if length > MAX_BODY_BYTES:
        raise ReportError(f"Report too large: at most {MAX_BODY_BYTES} bytes", 413)
    return await request.read()


class ReportLimiter:
    """Reports per client cookie and per session: both need a token, then one is spent from each."""

    def __init__(self) -> None:
        self._by_client = TokenBuckets(CLIENT_BURST, CLIENT_PER_MINUTE)
        self._by_session = TokenBuckets(SESSION_BURST, SESSION_PER_MINUTE)
        self._refusals = Throttle()

    def retry_after(self, client: str, session_id: str) -> int | None:
        """None when admitted (a token spent from each); else whole seconds to wait."""
        wait = max(self._by_client.wait(client), self._by_session.wait(session_id))
        if wait > 0:
            return max(1, math.ceil(wait))
        self._by_client.take(client)
        self._by_session.take(session_id)
        return None

    def refused(self, reason: str, **details: Any) -> None:
        """Log a refusal, at most once per interval (a flood must not flood the log)."""
        suppressed = self._refusals.ready()
        if suppressed is not None:
            log.warning("health_report.refused", reason=reason, suppressed=suppressed, **details)


REPORT_LIMITER = web.AppKey("report_limiter", ReportLimiter)


@routes.post("/sessions/{session_id}/health")
async def health_report(request: web.Request) -> web.Response:
    session = require_session(request, request.match_info["session_id"])
    limiter, metrics = request.app[REPORT_LIMITER], request.app[METRICS]
    retry_after = limiter.retry_after(client_id(request), session.id)
    if retry_after is not None:
        metrics.client_refused.labels("rate_limited").inc()
        limiter.refused("rate_limited", retry_after=retry_after)
        return json_error(
            429, "Too many health reports; slow down", **{"Retry-After": str(retry_after)}
        )
    try:
        report = parse_report(await read_body(request))
    except ReportError as exc:
        metrics.client_refused.labels("invalid").inc()
        limiter.refused("invalid", problem=str(exc))
        return json_error(exc.status, str(exc))
    log.info(f"client.{report.kind}", **report.fields)
    metrics.client_reports.labels(report.kind).inc()
    if report.kind == "restart":
        metrics.client_restarts.labels(report.fields["reason"]).inc()
    elif report.kind == "buffering":
        metrics.client_stalled.inc(report.fields["ms"] / 1000)
    return web.json_response({"accepted": report.kind}, status=202)
