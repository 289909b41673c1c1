"""The signer behind radiod's cookies (itsdangerous, keyed by `server.secret`).

With `server.secret` empty the key is a secret of this process, so cookies last one server
run; instances behind one proxy share `server.secret` so each verifies the others' cookies.
"""

from __future__ import annotations

import functools
import secrets

from itsdangerous import Signer

_RUN_SECRET = secrets.token_urlsafe(32)


@functools.lru_cache(maxsize=8)
def signer(secret: str, salt: str) -> Signer:
    """The signer for one cookie kind (`salt`), so one kind's value never passes as another's."""
    return Signer(secret or _RUN_SECRET, salt=salt)
