"""Writing to a client that may have stopped reading: the one policy both channels share.

A client whose socket accepts nothing for WRITE_TIMEOUT_SECONDS is gone in all but name.
It is aborted, not ended gracefully: a graceful end would wait for the same unread
buffer to drain. The SSE response and audio probes route their `write` through `send`;
audio streams are written by the fan-out (`audio/fanout.py`), which applies the same
patience without a timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from radiod.metrics import METRICS

WRITE_TIMEOUT_SECONDS = 30.0
# A write this big can fill an empty socket buffer by itself (a 4 s burst is ~64 kB).
_MAY_WAIT_BYTES = 16384


Bytes = bytes | bytearray | memoryview


async def send(
    request: web.BaseRequest, write: Callable[[Bytes], Awaitable[None]], data: Bytes
) -> None:
    """`write(data)`; TimeoutError when the client accepts nothing for WRITE_TIMEOUT_SECONDS.

    A timer per write costs ~13% of the event loop at 1,000 listeners (bench/fanout.py), so
    it is armed only when the write can actually wait: the socket already holds unsent
    bytes, or this write alone is big enough to fill it.
    """
    transport = request.transport
    idle = transport is not None and not transport.get_write_buffer_size()
    if idle and len(data) < _MAY_WAIT_BYTES:
        await write(data)
        return
    async with asyncio.timeout(WRITE_TIMEOUT_SECONDS):
        await write(data)


def drop(request: web.Request, channel: str) -> None:
    """Abort a stuck client's connection (`channel`: "audio" or "events") at once."""
    request.app[METRICS].client_dropped(channel)
    if request.transport is not None:
        request.transport.abort()
