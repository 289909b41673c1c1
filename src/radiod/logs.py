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
import sys
from typing import Any, TextIO

import orjson
import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


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
