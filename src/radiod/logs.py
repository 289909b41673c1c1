"""structlog configuration: one pipeline for radiod's own lines and for stdlib loggers.

Every line is one JSON object with `ts` (ISO-8601 UTC), `level` and `event`. Request
handlers bind `session_id`, `client_id`, `channel` and `remote` once with
`structlog.contextvars.bind_contextvars`; `merge_contextvars` then puts them on every
line logged under that request, including lines from library code it calls and from
stdlib loggers such as aiohttp's access log. That is what lets `radiod audit` prove,
from the logs alone, which session each channel was attached to.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import orjson
import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


# Errors that come in storms (accept() failing, one address hammering) log once per this.
REPEAT_INTERVAL_SECONDS = 10.0
# asyncio's message when accept() fails with EMFILE/ENFILE/ENOBUFS/ENOMEM.
ACCEPT_ERROR = "socket.accept() out of system resource"
# Its echo: the accept retries still pending when the listening socket closes at shutdown.
ACCEPT_RETRY_ERROR = "Exception in callback BaseSelectorEventLoop._start_serving"


class Throttle:
    """Lets one occurrence through per interval and counts the rest.

    For errors a hostile or overloaded peer can repeat thousands of times a second: the
    first is worth a line, the repeats only a count on the next line let through.
    """

    def __init__(
        self,
        interval: float = REPEAT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._next = -math.inf
        self._suppressed = 0

    def ready(self) -> int | None:
        """None while throttled (this occurrence is counted); else the count suppressed since."""
        now = self._clock()
        if now < self._next:
            self._suppressed += 1
            return None
        self._next = now + self._interval
        suppressed, self._suppressed = self._suppressed, 0
        return suppressed


class AcceptErrorFilter(logging.Filter):
    """One `socket.accept() out of system resource` line per interval, with a repeat count.

    Out of file descriptors, asyncio's `_accept_connection` (Python 3.11) logs this with a
    traceback once per queued connection, up to the listen backlog, and schedules a retry
    for each; every retry fails the same way a second later. Measured: 986 kB of log in 3 s
    of a 60-connection flood at 32 descriptors. The line let through keeps the error text
    and counts what was dropped (`suppressed`); the retries that fail at shutdown, because
    the socket is closed by then, are throttled the same way.
    """

    def __init__(self, throttle: Callable[[], Throttle] = Throttle) -> None:
        super().__init__()
        self._throttles = {ACCEPT_ERROR: throttle(), ACCEPT_RETRY_ERROR: throttle()}

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str):
            return True
        kind = next((k for k in self._throttles if record.msg.startswith(k)), None)
        if kind is None:
            return True
        suppressed = self._throttles[kind].ready()
        if suppressed is None:
            return False
        error = record.exc_info[1] if record.exc_info else None
        record.msg, record.args, record.exc_info, record.exc_text = kind, (), None, None
        record.error = str(error)
        record.suppressed = suppressed
        return True


def _serialize(event_dict: Any, **_: Any) -> str:
    # orjson: log volume grows with listeners; `default=str` keeps Paths and exceptions printable.
    return orjson.dumps(event_dict, default=str).decode()


def _shared_processors() -> list[structlog.types.Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        structlog.processors.format_exc_info,
    ]


def configure_logging(
    *, fmt: str = "json", level: str = "info", stream: TextIO | None = None, path: str = ""
) -> None:
    """Route structlog and stdlib logging through one formatter writing to `stream` or `path`.

    Args:
        fmt: "json" for JSON lines (the contract operators audit), "console" for humans.
        level: minimum level name.
        stream: where to write when `path` is empty (default stderr).
        path: append to this file instead of a stream.
    """
    renderer: structlog.types.Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_serialize)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *_shared_processors()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler: logging.Handler
    if path:
        handler = logging.FileHandler(path, encoding="utf-8")
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS[level])
    aio = logging.getLogger("asyncio")
    for old_filter in [f for f in aio.filters if isinstance(f, AcceptErrorFilter)]:
        aio.removeFilter(old_filter)
    aio.addFilter(AcceptErrorFilter())
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
