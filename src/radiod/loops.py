"""Which asyncio event loop `radiod serve` runs on: uvloop where it is installed, else asyncio's.

uvloop (libuv, written in Cython) makes each socket write and each accepted connection
cheaper, and fan-out to thousands of listeners is mostly socket writes: bench/fanout.py
measures both loops in one run. It is an optional dependency (`pip install radiod[uvloop]`);
asyncio's own loop is the fallback and behaves the same.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable

from radiod.config import ConfigError

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(choice: str) -> tuple[str, LoopFactory | None]:
    """(the loop's name, a factory for `asyncio.Runner`) for `server.event_loop`.

    "auto" takes uvloop when it can be imported; "uvloop" insists on it; "asyncio" never
    uses it. A None factory is asyncio's default loop.
    """
    if choice == "asyncio" or (choice == "auto" and importlib.util.find_spec("uvloop") is None):
        return "asyncio", None
    try:
        import uvloop
    except ImportError:
        raise ConfigError(
            "server.event_loop = 'uvloop': uvloop is not installed "
            "(pip install uvloop, or choose 'auto' or 'asyncio')"
        ) from None
    return "uvloop", uvloop.new_event_loop
