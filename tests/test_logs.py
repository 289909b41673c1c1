"""The JSON log shape: what operators and `radiod audit` rely on."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime

import structlog

from radiod.logs import configure_logging


def _lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_line_inside_a_bound_context_carries_the_session(tmp_path) -> None:
    buffer = io.StringIO()
    configure_logging(stream=buffer)
    with structlog.contextvars.bound_contextvars(
        session_id="session_abc", client_id="c1", channel="audio", remote="127.0.0.1"
    ):
        structlog.get_logger("radiod.somewhere.deep").info("mixer.track_started", title="x")
    structlog.get_logger("radiod").info("server.started")
    first, second = _lines(buffer)
    assert first["event"] == "mixer.track_started"
    assert first["level"] == "info"
    assert (first["session_id"], first["client_id"], first["channel"]) == (
        "session_abc",
        "c1",
        "audio",
    )
    assert first["remote"] == "127.0.0.1"
    assert first["title"] == "x"
    assert datetime.fromisoformat(first["ts"]).utcoffset().total_seconds() == 0
    assert "session_id" not in second


def test_stdlib_loggers_go_through_the_same_pipeline() -> None:
    buffer = io.StringIO()
    configure_logging(stream=buffer)
    with structlog.contextvars.bound_contextvars(session_id="session_xyz", client_id="c2"):
        logging.getLogger("aiohttp.access").info('"GET /stream HTTP/1.1" 200')
    (line,) = _lines(buffer)
    assert line["event"] == '"GET /stream HTTP/1.1" 200'
    assert line["session_id"] == "session_xyz"
    assert line["client_id"] == "c2"
    assert line["level"] == "info"
    assert "ts" in line


def test_level_filters_and_file_output(tmp_path) -> None:
    path = tmp_path / "radiod.log"
    configure_logging(level="warning", path=str(path))
    log = structlog.get_logger("radiod")
    log.info("quiet")
    log.warning("split_session.detected", client_id="c")
    for handler in logging.getLogger().handlers:
        handler.flush()
    (line,) = [json.loads(x) for x in path.read_text().splitlines()]
    assert line["event"] == "split_session.detected"
    assert line["level"] == "warning"


def test_exceptions_are_rendered_into_the_line() -> None:
    buffer = io.StringIO()
    configure_logging(stream=buffer)
    try:
        raise ValueError("boom")
    except ValueError:
        structlog.get_logger("radiod").exception("mixer.crashed")
    (line,) = _lines(buffer)
    assert "ValueError: boom" in line["exception"]
