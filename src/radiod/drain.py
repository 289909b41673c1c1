"""Draining: how an instance behind a proxy leaves without cutting its listeners.

On SIGTERM with `server.drain_seconds` > 0, `radiod serve` stops taking new sessions
(`POST /create-session` answers 503, so the proxy retries it on another instance) while the
listeners it has play on. When every session is idle, or at the deadline, the sessions that
remain end with the SSE error `session_ended` (reason `draining`): the page restarts on a
new session, which the proxy places elsewhere. Then the server stops as on SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

import structlog

from radiod.sessions import SessionRegistry

log = structlog.get_logger(__name__)
# How often the drain looks whether every listener has gone by itself.
POLL_SECONDS = 0.5


async def drain(registry: SessionRegistry, seconds: float, interrupted: asyncio.Event) -> None:
    """Refuse new sessions; wait until no one listens, `seconds` pass or `interrupted` is set.

    Args:
        registry: this instance's sessions.
        seconds: the deadline (`server.drain_seconds`).
        interrupted: a second signal: stop waiting and end the sessions now.
    """
    registry.draining = True
    started = time.monotonic()
    deadline = started + seconds
    log.info("server.draining", seconds=seconds, sessions=len(registry.sessions()))
    while not interrupted.is_set() and any(not s.idle for s in registry.sessions()):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(interrupted.wait(), min(left, POLL_SECONDS))
    ended = len(registry.sessions())
    await registry.end_all("draining")
    elapsed = round(time.monotonic() - started, 3)
    log.info("server.drained", sessions_ended=ended, seconds=elapsed)


async def until_stopped(registry: SessionRegistry, drain_seconds: float) -> None:
    """Return on SIGINT; on SIGTERM, after draining when `drain_seconds` > 0.

    A second SIGTERM (or a SIGINT) while draining ends the drain at once.
    """
    interrupted, terminated = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, interrupted.set)
    loop.add_signal_handler(
        signal.SIGTERM, lambda: (interrupted if terminated.is_set() else terminated).set()
    )
    signals = [asyncio.ensure_future(e.wait()) for e in (interrupted, terminated)]
    await asyncio.wait(signals, return_when=asyncio.FIRST_COMPLETED)
    for waiter in signals:
        waiter.cancel()
    if terminated.is_set() and not interrupted.is_set() and drain_seconds > 0:
        await drain(registry, drain_seconds, interrupted)
