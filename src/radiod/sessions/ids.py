"""The ids radiod hands out: session ids, client ids, listener and connection tokens.

Apart from the registry so that listeners and event clients can mint their tokens
without importing the registry that imports them.
"""

from __future__ import annotations

import re
import secrets

SESSION_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")


def valid_session_id(value: str) -> bool:
    """True when `value` has the shape of an ID (it may still be unknown)."""
    return SESSION_ID_RE.fullmatch(value) is not None


def new_session_id(node: str) -> str:
    """`session_<node>_<token>`: the proxy routes on the node with no lookup (radiod.node)."""
    return f"session_{node}_{new_token()}"


def new_token() -> str:
    """128 random bits, URL-safe; the same alphabet as session IDs."""
    return secrets.token_urlsafe(16)
