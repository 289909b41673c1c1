"""This instance's name in a cluster: `server.node`, or one derived from host and port.

The name lands inside every session ID (`session_<node>_<token>`) and in the proxy's
routing map, so it is a short DNS-label-like word: lowercase letters, digits and inner
dashes, 1-32 characters, never `_` (the `_` after it is where the proxy's regex stops).
"""

from __future__ import annotations

import os
import re
import socket

NODE_MAX_LENGTH = 32
NODE_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")
# Hosts that say "every interface": their name says nothing about which machine this is.
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "*"})


def node_problem(value: str) -> str | None:
    """Why `value` cannot be a node name (config error text), or None when it can."""
    if value == "" or NODE_RE.fullmatch(value):
        return None
    return "expected 1-32 characters of a-z, 0-9 and inner '-' (it lands in session IDs)"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def derived_node(host: str, port: int) -> str:
    """The default node name for an instance listening on `host`:`port`.

    The proxy-config generator derives the same name from the same address, so instances
    left unnamed still route. A wildcard host uses the machine's host name; port 0 (an
    ephemeral port, as in tests) uses the process id, which is unique on the machine.
    """
    machine = socket.gethostname() if host in _WILDCARD_HOSTS else host
    suffix = str(port) if port else f"p{os.getpid()}"
    base = _slug(machine)[: NODE_MAX_LENGTH - len(suffix) - 1].strip("-") or "node"
    return f"{base}-{suffix}"


def node_name(node: str, host: str, port: int) -> str:
    """`server.node` when set, else `derived_node(host, port)`."""
    return node or derived_node(host, port)
