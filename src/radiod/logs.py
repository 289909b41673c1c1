"""structlog configuration: one pipeline for radiod's own lines and for stdlib loggers.

Every line is one JSON object with `ts` (ISO-8601 UTC), `level` and `event`. Request
handlers bind `session_id`, `client_id`, `channel` and `remote` once with
`structlog.contextvars.bind_contextvars`; `merge_contextvars` then puts them on every
line logged under that request, including lines from library code it calls and from
stdlib loggers such as aiohttp's access log. That is what lets `radiod audit` prove,
from the logs alone, which session each channel was attached to.

Clients choose some of what is logged (a Range header, a path, a cookie's fate): no value
may break a line. JSON strings are escaped by orjson, plus the three line breaks it leaves
raw; the console format escapes every control character. A malformed HTTP request is one
`http.bad_request` line, not aiohttp's stack trace.
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
from aiohttp.http_exceptions import HttpProcessingError

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


# Line breaks to `str.splitlines()` (and so to many log tools) that JSON may leave raw.
_RAW_BREAKS = {"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}
# C0, DEL, C1 and the Unicode line/paragraph separators, as Python escapes.
_CONTROL_ESCAPES = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)
}
# In a traceback, newlines are the server's; a continuation line is indented so text from
# an exception message can never pass for a line of its own.
_TRACEBACK_ESCAPES = {**_CONTROL_ESCAPES, ord("\n"): "\n    "}


def _utf8(text: str) -> str:
    """`text` with any lone surrogate written as an escape, so it can be encoded.

    aiohttp keeps header bytes that are not UTF-8 as lone surrogates ("surrogateescape");
    orjson (rightly) refuses them, and a file opened as UTF-8 cannot write them.
    """
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that does not stand for a byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def _encodable(value: Any) -> Any:
    if isinstance(value, str):
        return _utf8(value)
    if isinstance(value, dict):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encodable(v) for v in value]
    return value


def _serialize(event_dict: Any, **_: Any) -> str:
    # orjson: log volume grows with listeners; `default=str` keeps Paths and exceptions printable.
    try:
        text = orjson.dumps(event_dict, default=str).decode()
    except orjson.JSONEncodeError:
        text = orjson.dumps(_encodable(event_dict), default=str).decode()
    if not text.isascii():
        for raw, escaped in _RAW_BREAKS.items():
            text = text.replace(raw, escaped)
    return text


class _Shown:
    """A value the console renderer prints as given: it `repr()`s whatever is not a str."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def escape_controls(
    _: Any, __: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Console format: no control character from a string value reaches the terminal raw.

    The console renderer prints a string raw unless it holds a space or a quote, so a
    client value with `\\x85` or an ANSI sequence could otherwise forge a line or repaint
    the terminal. Values are shown as `repr()` shows them (quoted, escaped); the event name
    is escaped in place; a traceback keeps its newlines, each continuation line indented.
    """
    for key, value in event_dict.items():
        if type(value) is not str or value.isprintable():
            continue
        if key in ("exception", "stack"):
            event_dict[key] = _utf8(value).translate(_TRACEBACK_ESCAPES)
        elif key == "event":
            event_dict[key] = _utf8(value).translate(_CONTROL_ESCAPES)
        else:
            event_dict[key] = _Shown(repr(value))
    return event_dict


class OneLineBadRequests(logging.Filter):
    """aiohttp logs each malformed request (a bad request line or header, a header too
    long, a NUL, bytes that are not HTTP) with a ~1 kB stack trace at level error. That is
    a client's mistake, not ours: one info line saying what was wrong, with no client bytes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else None
        record.msg, record.args = "http.bad_request", ()
        record.exc_info, record.exc_text = None, None
        if record.levelno > logging.INFO:
            record.levelno, record.levelname = logging.INFO, "INFO"
        # The message names the fault, then quotes the client's bytes after a colon.
        record.__dict__.update(
            http_status=exc.code,
            error=type(exc).__name__,
            reason=str(exc.message).split(":", 1)[0].strip(),
            remote=remote,
        )
        return True


def _node_adder(node: str | None) -> structlog.types.Processor:
    """Put `node` (this instance, radiod.node) on every line: merged logs of a cluster."""

    def add_node(
        _: Any, __: str, event_dict: structlog.types.EventDict
    ) -> structlog.types.EventDict:
        if node is not None:
            event_dict.setdefault("node", node)
        return event_dict

    return add_node


def _shared_processors(node: str | None = None) -> list[structlog.types.Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        _node_adder(node),
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        structlog.processors.format_exc_info,
    ]


def configure_logging(
    *,
    fmt: str = "json",
    level: str = "info",
    stream: TextIO | None = None,
    path: str = "",
    node: str | None = None,
) -> None:
    """Route structlog and stdlib logging through one formatter writing to `stream` or `path`.

    Args:
        fmt: "json" for JSON lines (the contract operators audit), "console" for humans.
        level: minimum level name.
        stream: where to write when `path` is empty (default stderr).
        path: append to this file instead of a stream.
        node: this instance's name, put on every line (None: no `node` key).
    """
    renderers: list[structlog.types.Processor]
    if fmt == "console":
        renderers = [escape_controls, structlog.dev.ConsoleRenderer()]
    else:
        renderers = [structlog.processors.JSONRenderer(serializer=_serialize)]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *_shared_processors(node)],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderers],
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
    server_log = logging.getLogger("aiohttp.server")
    for old_filter in [f for f in server_log.filters if isinstance(f, OneLineBadRequests)]:
        server_log.removeFilter(old_filter)
    server_log.addFilter(OneLineBadRequests())
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(node),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
