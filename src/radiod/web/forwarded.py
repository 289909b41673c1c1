"""The real client behind a trusted proxy: `X-Forwarded-For`, believed only from the proxy.

Behind nginx every connection comes from the proxy's address, so per-IP limits
(web/guards.py) would count one client. The proxy appends the peer it saw to
`X-Forwarded-For`; the header is read from right to left, skipping hops that are
themselves trusted proxies (`server.trusted_proxies`), and the first other address is the
client. Anything to the left of it was written by the client and is never believed; from a
peer that is not a trusted proxy the header is ignored altogether.
"""

from __future__ import annotations

import functools
import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in trusted)


def is_trusted(address: str | None, trusted: tuple[str, ...]) -> bool:
    """Whether `address` (an IP literal) lies in one of the `trusted` networks."""
    if not trusted or not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in _networks(trusted))


def forwarded_client(peer: str | None, header: str | None, trusted: tuple[str, ...]) -> str | None:
    """The client address a request came from: `peer`, or the one its trusted proxy names.

    Args:
        peer: the connection's remote address.
        header: the request's `X-Forwarded-For` (None when absent).
        trusted: `server.trusted_proxies`.
    """
    if header is None or not is_trusted(peer, trusted):
        return peer
    client = peer
    for hop in reversed(header.split(",")):
        hop = hop.strip()
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return client  # not an address a proxy of ours wrote: stop at the last one that was
        client = hop
        if not is_trusted(hop, trusted):
            return hop
    return client
