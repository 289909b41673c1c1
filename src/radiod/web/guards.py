"""Guards against hostile clients: foreign hosts and origins, session floods, hoarded sockets.

Per request (`guard_middleware`, and `CreateLimiter` asked by `POST /create-session`):
- the `Host` header must name this server, so a page whose own name was re-pointed at us
  (DNS rebinding) cannot read a listener's SSE or stream: `421`;
- a state-changing request whose `Origin` is another site's gets `403` (cross-site forgery);
- new sessions come from token buckets per client address and per client cookie: `429`.

Per connection (`GuardedSite`, the listening socket `radiod serve` uses):
- open connections per client address are capped; one over the cap is closed at once;
- a connection's first request line and headers must arrive within `header_timeout_seconds`.

A client address is an IPv4 address or an IPv6 /64: one subscriber gets a whole /64.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from yarl import URL

from radiod.config import LimitsConfig, ServerConfig
from radiod.logs import Throttle
from radiod.web.context import json_error
from radiod.web.forwarded import is_trusted

log = structlog.get_logger(__name__)

# Keys each table of token buckets remembers; the least recently used is forgotten first
# (it comes back with a full bucket, which only the same client address could exploit).
BUCKET_KEYS_LIMIT = 10_000
# Methods that change nothing: a cross-site page may send them, CORS keeps their answers.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Origin = tuple[str, str, int | None]


def client_address(address: str | None) -> str:
    """The unit limits count: an IPv4 address or an IPv6 /64 (IPv4-mapped counts as IPv4)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return address or "unknown"  # a Unix socket: one local peer
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


# -- Host and Origin -------------------------------------------------------------------


def _host_name(header: str) -> str | None:
    """`name`, `name:port`, `[v6]:port` -> the lowercased name; None when malformed."""
    try:
        host = URL.build(scheme="http", authority=header).host
    except (ValueError, TypeError):
        return None
    return host.lower().rstrip(".") if host else None


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _origin(text: str) -> Origin | None:
    """`scheme://host[:port]` as a comparable (scheme, host, port with defaults filled)."""
    try:
        url = URL(text)
    except ValueError:
        return None
    if url.scheme not in ("http", "https") or not url.host:
        return None
    return url.scheme, url.host.lower().rstrip("."), url.port


class HostPolicy:
    """Which `Host` and `Origin` values a server answers, from `[server]`.

    Allowed hosts: the bound host, `localhost`, `server.allowed_hosts`, and every IP literal
    (any port). An IP literal cannot be a rebinding: the attack needs the browser to send
    the attacker's own name, and a page loaded from an IP literal is our own origin anyway.
    """

    def __init__(self, config: ServerConfig) -> None:
        names = {config.host, "localhost", *config.allowed_hosts}
        self._any_host = "*" in names
        self._names = {n.lower().strip("[]").rstrip(".") for n in names}
        self._origins = {o for o in map(_origin, config.allowed_origins) if o is not None}

    def allows_host(self, header: str) -> bool:
        name = _host_name(header)
        if name is None:
            return False
        return self._any_host or name in self._names or _is_ip_literal(name)

    def allows_origin(self, header: str, scheme: str, host: str) -> bool:
        origin = _origin(header)
        return origin is not None and (
            origin == _origin(f"{scheme}://{host}") or origin in self._origins
        )


def guard_middleware(config: ServerConfig) -> Middleware:
    """Middleware answering `421` to an unknown `Host` and `403` to a foreign `Origin`.

    It runs inside `context_middleware`, so its lines carry the request's client and
    channel; `rejected` tells `radiod audit` they belong to no session.
    """
    policy = HostPolicy(config)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Without Host: HTTP/1.0 (no browser); aiohttp's parser already answers 1.1 with 400.
        host = request.headers.get("Host")
        if host is not None and not policy.allows_host(host):
            return _reject(421, "unknown_host", "Misdirected request: unknown Host", host=host)
        origin = request.headers.get("Origin")
        if (
            origin is not None
            and request.method not in SAFE_METHODS
            and not policy.allows_origin(origin, request.scheme, host or "")
        ):
            return _reject(403, "foreign_origin", "Cross-origin request refused", origin=origin)
        return await handler(request)

    return middleware


def _reject(status: int, reason: str, message: str, **values: str) -> web.Response:
    structlog.contextvars.bind_contextvars(rejected=reason)
    # Client-chosen text: logged (an operator needs the name to allow it), but cut short.
    log.info("request.rejected", status=status, **{k: v[:200] for k, v in values.items()})
    return json_error(status, message)


# -- POST /create-session rate limits ----------------------------------------------------


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class TokenBuckets:
    """A token bucket per key: `burst` tokens at once, refilled at `per_minute`.

    Bounded: beyond `max_keys` the least recently used key is forgotten.
    """

    def __init__(
        self,
        burst: int,
        per_minute: float,
        max_keys: int = BUCKET_KEYS_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst = burst
        self._rate = per_minute / 60.0  # tokens a second
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _bucket(self, key: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self._burst), now)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.stamp) * self._rate)
            bucket.stamp = now
        return bucket

    def wait(self, key: str) -> float:
        """Seconds until `key` has a token (0.0: it has one now)."""
        missing = 1.0 - self._bucket(key).tokens
        return max(missing, 0.0) / self._rate

    def take(self, key: str) -> None:
        """Spend one token of `key` (after `wait` said it had one)."""
        self._bucket(key).tokens -= 1.0


class CreateLimiter:
    """`POST /create-session` limits: per client address and per client cookie.

    Both must have a token, and only then is one spent from each, so a client refused by
    one limit does not drain the other. Fresh cookies cost an address its own tokens.
    """

    def __init__(self, limits: LimitsConfig) -> None:
        self.enabled = limits.create_burst > 0 and limits.create_per_minute > 0
        self._by_address = TokenBuckets(limits.create_burst, limits.create_per_minute)
        self._by_client = TokenBuckets(limits.create_burst, limits.create_per_minute)

    def retry_after(self, address: str, client: str) -> tuple[int, str] | None:
        """None when admitted (a token spent from each); else (whole seconds to wait, limit)."""
        if not self.enabled:
            return None
        waits = {"address": self._by_address.wait(address), "client": self._by_client.wait(client)}
        limit = max(waits, key=waits.__getitem__)
        if waits[limit] > 0:
            return max(1, math.ceil(waits[limit])), limit
        self._by_address.take(address)
        self._by_client.take(client)
        return None


CREATE_LIMITER = web.AppKey("create_limiter", CreateLimiter)


# -- connections -------------------------------------------------------------------------


class ConnectionGuard:
    """Open connections per client address, and the rules a new connection must follow.

    Over `limits.connections_per_ip` a connection is closed as soon as it is accepted,
    before any byte is read: it costs one accept() and one close(), where a `429` would
    need its request read and parsed first, and the cap exists because one address is
    hoarding sockets. Browsers open at most 6 connections per host (Chromium), so the cap
    only meets crowds behind one NAT and floods. Rejections log once per interval.
    """

    def __init__(
        self, per_ip: int, header_timeout: float, trusted_proxies: tuple[str, ...] = ()
    ) -> None:
        self.per_ip = per_ip
        self.header_timeout = header_timeout
        # The proxy carries every client's connections: its own cap is nginx `limit_conn`.
        self.trusted_proxies = trusted_proxies
        self._open: dict[str, int] = {}
        self._rejections = Throttle()
        self._timeouts = Throttle()

    def open_connections(self) -> dict[str, int]:
        """Open connections by client address (only addresses with some)."""
        return dict(self._open)

    def admit(self, address: str, *, exempt: bool = False) -> bool:
        """Count a connection from `address`; False when over the cap (`exempt`: no cap)."""
        count = self._open.get(address, 0)
        if self.per_ip and count >= self.per_ip and not exempt:
            suppressed = self._rejections.ready()
            if suppressed is not None:
                log.warning(
                    "connection.rejected",
                    reason="connections_per_ip",
                    remote=address,
                    limit=self.per_ip,
                    suppressed=suppressed,
                )
            return False
        self._open[address] = count + 1
        return True

    def release(self, address: str) -> None:
        count = self._open[address] - 1
        if count:
            self._open[address] = count
        else:
            del self._open[address]  # the table holds only live addresses: no growth

    def headers_timed_out(self, address: str) -> None:
        suppressed = self._timeouts.ready()
        if suppressed is not None:
            log.info(
                "connection.header_timeout",
                remote=address,
                seconds=self.header_timeout,
                suppressed=suppressed,
            )

    def protocol_factory(
        self, make_protocol: Callable[[], asyncio.Protocol]
    ) -> Callable[[], asyncio.Protocol]:
        """Wrap aiohttp's protocol factory so every connection passes through this guard."""
        return lambda: _GuardedConnection(self, make_protocol)


class _GuardedConnection(asyncio.Protocol):
    """Counts one connection against its address and times its first request's headers.

    Everything else goes straight to aiohttp's protocol. Later requests on a kept-alive
    connection are bounded by aiohttp's own keep-alive timer, which partial data does not
    reset: a half-sent second request is closed `keepalive_timeout` after the response.
    """

    # One per open connection: slotted, so thousands of listeners stay small.
    __slots__ = ("_address", "_guard", "_inner", "_make_protocol", "_tail", "_timer")

    def __init__(self, guard: ConnectionGuard, make_protocol: Callable[[], asyncio.Protocol]):
        self._guard = guard
        self._make_protocol = make_protocol
        self._inner: asyncio.Protocol | None = None
        self._address = ""
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""  # the end of the bytes so far, to find a blank line split in two

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) else None
        address = client_address(host)
        exempt = is_trusted(host, self._guard.trusted_proxies)
        if not self._guard.admit(address, exempt=exempt):
            transport.abort()
            return
        self._address = address
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._guard.header_timeout, self._timed_out, transport)
        self._inner = self._make_protocol()
        self._inner.connection_made(transport)

    def _timed_out(self, transport: asyncio.BaseTransport) -> None:
        self._timer = None
        self._guard.headers_timed_out(self._address)
        transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if self._timer is not None:
            seen = self._tail + data
            # The blank line ending the headers (a bare LF is tolerated by parsers too).
            if b"\n\r\n" in seen or b"\n\n" in seen:
                self._timer.cancel()
                self._timer = None
                self._tail = b""
            else:
                self._tail = seen[-2:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is None:
            return  # refused: never counted
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._guard.release(self._address)
        self._inner.connection_lost(exc)


class GuardedSite(web.BaseSite):
    """A TCP site whose connections pass through a `ConnectionGuard`."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        guard: ConnectionGuard,
        backlog: int = 128,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self.guard = guard

    @property
    def name(self) -> str:
        return str(URL.build(scheme="http", host=self._host, port=self._port))

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None  # BaseSite refuses a runner that was not set up
        self._server = await asyncio.get_running_loop().create_server(
            self.guard.protocol_factory(server), self._host, self._port, backlog=self._backlog
        )
