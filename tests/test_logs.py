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


def test_json_lines_escape_every_line_break_a_tool_may_split_on() -> None:
    buffer = io.StringIO()
    configure_logging(stream=buffer)
    value = "a\nb\rc\x1b[2J\x85d\u2028e\u2029f\x0bg"
    structlog.get_logger("radiod").info("stream.connected", range=value, ua="\udc80\udcff")
    text = buffer.getvalue()
    assert len(text.splitlines()) == 1  # str.splitlines() breaks on NEL, U+2028, \v too
    (line,) = _lines(buffer)
    assert line["range"] == value  # escaped on the wire, the same value once decoded
    assert line["ua"] == "\\x80\\xff"  # bytes that were not UTF-8, shown as escapes


def test_console_lines_show_control_characters_escaped() -> None:
    buffer = io.StringIO()
    configure_logging(stream=buffer, fmt="console")
    log = structlog.get_logger("radiod")
    log.info("GET /x\x1b[2J", ua="\x1b]0;owned\x07", range="1-\n2026-12-01 [info] forged")
    try:
        raise ValueError("bad\n2026-12-01 [info] forged too")
    except ValueError:
        log.exception("mixer.crashed")
    lines = buffer.getvalue().splitlines()
    assert not [x for x in lines if x.startswith("2026-12-01")]  # nothing forged a line
    assert not set(buffer.getvalue()) & {"\x07", "\x85", "\u2028"}
    first = lines[0]
    assert "\\x1b[2J" in first and "'\\x1b]0;owned\\x07'" in first
    assert "\\n2026-12-01 [info] forged" in first
    assert lines[-1].startswith("    ") and "forged too" in lines[-1]
    # Only the renderer's own colours are escape sequences.
    assert "\x1b[2J" not in first and "\x1b]0" not in first
