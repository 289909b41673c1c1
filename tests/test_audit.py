"""`radiod audit` on synthetic logs shaped like the server's own JSON lines."""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radiod import audit
from radiod.audit import AuditReport, LogAuditor, audit_lines, format_ts, parse_ts

T0 = datetime(2026, 11, 24, 13, 40, tzinfo=UTC)


class FakeLog:
    """Writes lines the way radiod does (orjson, compact, `ts` last); methods return line numbers.

    The clock only moves when told (`at(seconds)`), so a test reads like a timeline.
    """

    def __init__(self) -> None:
        self.now = T0
        self.lines: list[str] = []

    def at(self, seconds: float) -> FakeLog:
        self.now = T0 + timedelta(seconds=seconds)
        return self

    def emit(self, event: str, level: str = "info", **fields: Any) -> int:
        ts = self.now.isoformat().replace("+00:00", "Z")
        record = {**fields, "event": event, "level": level, "ts": ts}
        self.lines.append(orjson.dumps(record).decode())
        return len(self.lines)

    def raw(self, text: str) -> int:
        self.lines.append(text)
        return len(self.lines)

    # -- what the server logs, with the context its middleware binds ------------------
    @staticmethod
    def _request(client: str | None, channel: str, sid: str | None) -> dict[str, Any]:
        ctx: dict[str, Any] = {"channel": channel, "remote": "127.0.0.1"}
        if client is not None:
            ctx["client_id"] = client
        if sid is not None:
            ctx["session_id"] = sid
        return ctx

    def create(self, sid: str, client: str) -> int:
        line = self.emit("session.created", sessions=1, **self._request(client, "api", sid))
        self.access("POST /create-session 201", client, "api", sid)
        return line

    def audio_open(self, sid: str, client: str, listener: str) -> int:
        ctx = self._request(client, "audio", sid)
        return self.emit("stream.connected", listener_id=listener, listeners=1, **ctx)

    def audio_close(self, sid: str, client: str, listener: str) -> int:
        ctx = self._request(client, "audio", sid)
        line = self.emit("stream.closed", bytes_sent=123456, listener_id=listener, **ctx)
        self.access("GET /stream 200", client, "audio", sid, listener_id=listener)
        return line

    def events_open(self, sid: str, client: str, ecid: str) -> int:
        ctx = self._request(client, "events", sid)
        return self.emit("events.connected", event_client_id=ecid, **ctx)

    def events_close(self, sid: str, client: str, ecid: str) -> int:
        line = self.emit(
            "events.closed", event_client_id=ecid, **self._request(client, "events", sid)
        )
        self.access("GET /events 200", client, "events", sid, event_client_id=ecid)
        return line

    def live_split(self, client: str, audio_sid: str, events_sid: str, channel: str) -> int:
        sid = audio_sid if channel == "audio" else events_sid
        return self.emit(
            "split_session.detected",
            level="warning",
            audio_session_id=audio_sid,
            events_session_id=events_sid,
            **self._request(client, channel, sid),
        )

    def access(
        self, request: str, client: str | None, channel: str, sid: str | None = None, **extra: Any
    ) -> int:
        return self.emit(f'"{request}" 1234 0.001', **extra, **self._request(client, channel, sid))

    def page_load(self, client: str) -> None:
        self.access("GET / 200", client, "page")
        self.access("GET /static/app.js 200", client, "page")

    def visit(self, client: str, sid: str, start: float, end: float) -> None:
        """One well-behaved listener: page, session, events, play, a track, leave."""
        self.at(start).page_load(client)
        self.create(sid, client)
        self.events_open(sid, client, f"e-{sid}")
        self.at(start + 1).audio_open(sid, client, f"l-{sid}")
        self.emit("mixer.track_started", session_id=sid, track_id="t1", title="Song", starts_at=0)
        self.at(end).audio_close(sid, client, f"l-{sid}")
        self.events_close(sid, client, f"e-{sid}")

    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)

    def write(self, path: Path) -> Path:
        data = self.text().encode()
        path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
        return path


def split_log() -> tuple[FakeLog, dict[str, int]]:
    """Client c1 listens on session A while its events sit on session B, twice over."""
    log = FakeLog()
    log.visit("c0", "session_ok", 0, 300)
    lines = {}
    log.at(10).create("session_A", "c1")
    lines["audio"] = log.at(11).audio_open("session_A", "c1", "l1")
    lines["events"] = log.at(20).events_open("session_B", "c1", "e1")
    log.live_split("c1", "session_A", "session_B", "events")
    log.at(30).events_close("session_B", "c1", "e1")
    log.at(40).events_open("session_B", "c1", "e2")  # reconnects to the wrong one again
    log.at(50).events_close("session_B", "c1", "e2")
    log.at(60).audio_close("session_A", "c1", "l1")
    log.at(300).emit("server.stopping")
    return log, lines


def cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    audit.add_arguments(parser)
    return parser.parse_args(list(argv))


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = audit.run(cli(*argv), out)
    return code, out.getvalue()


def report_of(log: FakeLog, **window: Any) -> AuditReport:
    return audit_lines(log.lines, source="radiod.log", **window)


# -- splits ------------------------------------------------------------------------------------


def test_clean_run_audits_clean(tmp_path: Path) -> None:
    log = FakeLog()
    log.visit("c1", "session_a", 0, 100)
    log.visit("c2", "session_b", 5, 50)
    log.visit("c1", "session_c", 100, 200)  # next visit starts as the last one ends
    code, out = run(str(log.write(tmp_path / "radiod.log")))
    assert code == 0
    assert out.startswith("radiod audit: clean")
    summary = report_of(log).summary
    assert (summary.sessions, summary.clients, summary.listeners) == (3, 2, 3)
    assert (summary.event_connections, summary.splits, summary.untagged) == (3, 0, 0)


def test_split_is_one_incident_with_both_ids_and_connect_lines(tmp_path: Path) -> None:
    log, lines = split_log()
    report = report_of(log)
    assert len(report.splits) == 1
    split = report.splits[0]
    assert (split.client_id, split.audio_session_id, split.events_session_id) == (
        "c1",
        "session_A",
        "session_B",
    )
    assert format_ts(split.start) == "2026-11-24T13:40:20.000000Z"
    assert format_ts(split.end) == "2026-11-24T13:40:50.000000Z"
    assert split.overlaps == 2
    assert not split.ongoing
    assert str(split.audio_connect) == f"radiod.log:{lines['audio']}"
    assert str(split.events_connect) == f"radiod.log:{lines['events']}"
    assert split.live_detected and not report.live_only_splits

    code, out = run(str(log.write(tmp_path / "radiod.log")))
    assert code == 1
    assert out.splitlines()[0] == "radiod audit: 1 split session(s)"
    assert f"audio {tmp_path / 'radiod.log'}:{lines['audio']}" in out


def test_split_still_open_at_log_end_runs_to_the_last_line() -> None:
    log = FakeLog()
    log.at(0).create("session_A", "c1")
    log.at(1).audio_open("session_A", "c1", "l1")
    log.at(2).events_open("session_B", "c1", "e1")
    log.at(9).access("GET /healthz 200", "probe", "api")
    split = report_of(log).splits[0]
    assert split.ongoing
    assert format_ts(split.end) == "2026-11-24T13:40:09.000000Z"


def test_channel_closed_before_the_other_opened_is_not_a_split() -> None:
    log = FakeLog()
    log.at(0).create("session_A", "c1")
    log.at(1).audio_open("session_A", "c1", "l1")
    log.at(5).audio_close("session_A", "c1", "l1")
    log.at(5).events_open("session_B", "c1", "e1")  # same microsecond, logged after the close
    log.at(9).events_close("session_B", "c1", "e1")
    report = report_of(log)
    assert report.splits == ()
    assert report.clean and report.exit_code == 0


def test_same_session_on_both_channels_is_not_a_split() -> None:
    log = FakeLog()
    log.visit("c1", "session_A", 0, 10)
    log.at(2).events_open("session_A", "c1", "e2")  # a second tab on the same session
    assert report_of(log).clean


def test_a_reused_listener_id_and_an_untagged_close_still_pair_up() -> None:
    """Chromium re-requests a dropped stream with the same listener id before the old one
    is closed; and a close that lost its session_id still ends the right connection."""
    log = FakeLog()
    log.at(0).create("session_A", "c1")
    log.at(1).audio_open("session_A", "c1", "L1")
    log.at(5).audio_open("session_A", "c1", "L1")  # the re-request
    log.at(6).audio_close("session_A", "c1", "L1")  # the old connection
    log.at(8).emit("stream.closed", listener_id="L1", channel="audio", client_id="c1")
    log.at(9).events_open("session_B", "c1", "e1")  # after both ended: no split
    log.at(20).access("GET /healthz 200", "probe", "api")
    report = report_of(log)
    assert report.clean
    assert report.summary.listeners == 2
    assert report.untagged_count == 1


def test_two_devices_on_one_session_are_two_clients_of_a_shared_session_not_a_split() -> None:
    """A phone opened the page's share link: its cookie is another client, on the same session."""
    log = FakeLog()
    log.visit("laptop", "session_A", 0, 100)
    log.at(10).page_load("phone")
    log.events_open("session_A", "phone", "e-phone")
    log.at(11).audio_open("session_A", "phone", "l-phone")
    log.at(50).audio_close("session_A", "phone", "l-phone")
    log.events_close("session_A", "phone", "e-phone")
    log.visit("other", "session_B", 5, 60)  # a listener of its own: not shared
    report = report_of(log)
    assert report.clean and report.splits == ()
    assert (report.summary.clients, report.summary.shared_sessions) == (3, 1)
    (shared,) = report.shared_sessions
    assert shared.session_id == "session_A"
    assert shared.client_ids == ("laptop", "phone")
    assert (shared.listeners, shared.event_connections) == (2, 2)
    assert "shared sessions    1 (one station on several devices" in audit.render_human(report)


def test_live_detection_the_audit_cannot_reconstruct_is_reported() -> None:
    log = FakeLog()
    log.visit("c1", "session_A", 0, 10)
    live = log.at(5).live_split("c1", "session_A", "session_Z", "audio")
    report = report_of(log)
    assert report.splits == ()
    [only] = report.live_only_splits
    assert (only.audio_session_id, only.events_session_id, only.at.line) == (
        "session_A",
        "session_Z",
        live,
    )
    assert report.exit_code == 1


def test_merged_logs_of_two_nodes_are_ordered_by_time() -> None:
    node_a, node_b = FakeLog(), FakeLog()
    node_a.at(10).audio_open("session_a_1", "c1", "l1")
    node_a.at(30).audio_close("session_a_1", "c1", "l1")
    node_b.at(0).create("session_b_1", "c1")
    events = node_b.at(20).events_open("session_b_1", "c1", "e1")
    node_b.at(40).events_close("session_b_1", "c1", "e1")
    for order in ((node_a, "a.log"), (node_b, "b.log")), ((node_b, "b.log"), (node_a, "a.log")):
        auditor = LogAuditor()
        for log, name in order:
            auditor.feed(log.lines, name)
        [split] = auditor.report().splits
        assert str(split.events_connect) == f"b.log:{events}"
        assert str(split.audio_connect) == "a.log:1"
        assert (split.start - parse_ts("2026-11-24T13:40:20Z")) == 0


def test_server_restart_ends_connections_it_never_closed() -> None:
    log = FakeLog()
    log.at(0).create("session_A", "c1")
    log.at(1).audio_open("session_A", "c1", "l1")
    log.at(5).emit("mixer.track_started", session_id="session_A", track_id="t", title="x")
    log.at(60).emit("server.started", url="http://127.0.0.1:8000/", port=8000, tracks=3)
    log.at(61).create("session_B", "c1")
    log.at(62).events_open("session_B", "c1", "e1")
    log.at(63).audio_open("session_B", "c1", "l1")
    report = report_of(log)
    assert report.clean
    assert report.summary.restarts == 1  # the crash killed c1's audio; it came back in 56 s


def test_restart_is_a_new_session_soon_after_the_clients_audio_died() -> None:
    log = FakeLog()
    log.visit("c1", "session_A", 0, 100)
    log.visit("c1", "session_B", 130, 200)  # 30 s after audio ended: a restart
    log.visit("c1", "session_C", 400, 500)  # minutes later: just another visit
    log.at(520).create("session_D", "c1")  # but created while…
    log.visit("c2", "session_E", 510, 530)  # (another client's audio does not count)
    assert report_of(log).summary.restarts == 2


# -- bad input -----------------------------------------------------------------------------------


def test_corrupt_truncated_and_foreign_lines_are_counted_and_skipped() -> None:
    log, _ = split_log()
    garbage = [
        "Traceback (most recent call last):",
        "[1, 2, 3]",
        '{"message": "from some other program", "ts": "2026-11-24T13:40:01Z"}',
        '{"event": "stream.connected", "ts": "yesterday", "session_id": "x"}',
        "",
        "\x00\xff binary junk",
    ]
    lines = garbage[:3] + log.lines + garbage[3:]
    lines.append(log.lines[-1][:25])  # the writer died mid-line
    report = audit_lines(lines)
    assert report.skipped_by_reason == {"not_json": 3, "not_object": 1, "no_event": 1, "bad_ts": 1}
    assert report.summary.skipped_lines == 6
    assert report.skipped_examples[0].at.line == 1
    assert len(report.splits) == 1  # the real lines still count


BAD_TIMESTAMPS = [
    '"99999-01-01T00:00:00Z"',  # year 99999
    '"0001-01-01T00:00:00+01:00"',  # before year 1 once in UTC
    '"9999-12-31T23:59:59-14:00"',  # after year 9999 once in UTC
    '"-2026-11-24T13:40:00Z"',
    '"2026-02-31T13:40:00Z"',
    '"2026-11-24T25:40:00Z"',
    "-5",
    "123456789012345678901234567890",
    "1.5e300",
    "null",
    "true",
    "[1]",
    '{"ts": "2026-11-24T13:40:00Z"}',
]


@pytest.mark.parametrize("ts", BAD_TIMESTAMPS)
def test_a_line_with_an_out_of_range_timestamp_is_skipped_as_bad_ts(ts: str) -> None:
    log, _ = split_log()
    # One line the replay keeps, one the byte-level prefilter would otherwise pass unread.
    kept = '{"listener_id":"l9","channel":"audio","client_id":"c1","session_id":"session_A",'
    kept += f'"event":"stream.connected","level":"info","ts":{ts}}}'
    plain = f'{{"session_id":"session_A","event":"mixer.track_started","level":"info","ts":{ts}}}'
    report = audit_lines([*log.lines[:5], kept, plain, *log.lines[5:]])
    assert report.skipped_by_reason == {"bad_ts": 2}
    assert len(report.splits) == 1 and report.summary.listeners == 2
    audit.render_human(report)
    render = audit.render_json(report)
    assert json.loads(render)["summary"]["last_ts"] == "2026-11-24T13:45:00.000000Z"


@pytest.mark.parametrize("ts", ["NaN", "Infinity", "1e400"])
def test_a_timestamp_json_cannot_hold_is_not_json(ts: str) -> None:
    line = f'{{"session_id":"session_A","event":"mixer.track_started","level":"info","ts":{ts}}}'
    assert audit_lines([line]).skipped_by_reason == {"not_json": 1}


_OFFSETS = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(timezones=_OFFSETS).map(datetime.isoformat)
    | st.datetimes().map(lambda dt: dt.isoformat() + "Z")
    | st.text(max_size=40)
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
)
def test_any_timestamp_is_either_read_or_counted_as_bad_ts(ts: object) -> None:
    record = {"session_id": "session_A", "event": "mixer.track_started", "ts": ts}
    line = orjson.dumps(record).decode()
    report = audit_lines([line, line.replace("mixer.track_started", "stream.connected")])
    report.to_json()
    audit.render_human(report)
    if parse_ts(ts) is None:
        assert report.skipped_by_reason == {"bad_ts": 2}
    else:
        assert report.skipped_by_reason == {}
        assert report.summary.first_ts == parse_ts(ts)


def test_merged_files_keep_each_files_order_for_equal_timestamps() -> None:
    """One microsecond holds a close and, logged after it, an open on another session: in
    every merge order the close still comes first, so it is no split."""
    node_a, node_b = FakeLog(), FakeLog()
    node_a.at(0).create("session_a_1", "c1")
    node_a.at(1).audio_open("session_a_1", "c1", "l1")
    node_a.at(5).audio_close("session_a_1", "c1", "l1")
    node_a.events_open("session_a_2", "c1", "e1")
    node_a.at(9).events_close("session_a_2", "c1", "e1")
    node_b.at(5).create("session_b_1", "c2")
    node_b.at(5).events_open("session_b_1", "c2", "e2")
    node_b.at(5).audio_open("session_b_1", "c2", "l2")
    node_b.at(5).audio_close("session_b_1", "c2", "l2")
    for order in ((node_a, "a.log"), (node_b, "b.log")), ((node_b, "b.log"), (node_a, "a.log")):
        auditor = LogAuditor()
        for log, name in order:
            auditor.feed(log.lines, name)
        report = auditor.report()
        assert report.clean, report.splits
        assert report.summary.listeners == 2


def test_the_servers_own_rejections_are_not_untagged() -> None:
    log = FakeLog()
    log.visit("c1", "session_a", 0, 10)
    rejected = {"channel": "api", "remote": "127.0.0.1", "client_id": "c2"}
    log.emit(
        "session.limit_reached", "warning", max_sessions=1, rejected="session_limit", **rejected
    )
    log.access("POST /create-session 503", "c2", "api", rejected="session_limit")
    log.access("DELETE /stream 405", "c2", "audio", rejected="method_not_allowed")
    log.emit("session.limit_reached", "warning", max_sessions=1, channel="api", client_id="c3")
    report = report_of(log)
    assert report.untagged_count == 1
    assert report.untagged_by_event == {"session.limit_reached": 1}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=80) | st.text(max_size=80), max_size=20))
def test_no_input_makes_the_audit_crash(junk: list[bytes | str]) -> None:
    log, _ = split_log()
    lines: list[bytes | str] = [*log.lines[:8], *junk, *log.lines[8:]]
    audit_lines(lines).to_json()


def test_gzip_input(tmp_path: Path) -> None:
    log, _ = split_log()
    gz = log.write(tmp_path / "radiod.log.1.gz")
    plain = log.write(tmp_path / "radiod.log")
    code, out = run("--json", str(gz))
    assert code == 1
    assert json.loads(out)["splits"][0]["audio_session_id"] == "session_A"
    # Merged: a gzip'd rotation and the live file in one run (the same log twice here).
    assert run(str(gz), str(plain))[0] == 1


def test_corrupt_gzip_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "radiod.log.gz"
    bad.write_bytes(b"this was never gzip\n")
    truncated = tmp_path / "cut.log.gz"
    truncated.write_bytes(gzip.compress(split_log()[0].text().encode() * 50)[:-200])
    for path in (bad, truncated):
        assert audit.run(cli(str(path)), io.StringIO()) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"radiod audit: error: cannot read {path}")
        assert err.count("\n") == 1 and "Traceback" not in err


def test_stdin_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    log, _ = split_log()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(log.text().encode())))
    code, out = run("--json", "-")
    assert code == 1
    assert json.loads(out)["splits"][0]["audio_connect"]["file"] == "-"


def test_gzip_on_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    log, _ = split_log()
    data = gzip.compress(log.text().encode())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert run("-")[0] == 1


def test_missing_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = FakeLog()
    log.visit("c1", "session_a", 0, 10)
    good = log.write(tmp_path / "radiod.log")
    out = io.StringIO()
    assert audit.run(cli(str(good), str(tmp_path / "nope.log")), out) == 2
    assert out.getvalue() == ""
    assert capsys.readouterr().err == (
        f"radiod audit: error: cannot read {tmp_path / 'nope.log'}: No such file or directory\n"
    )


# -- time window -----------------------------------------------------------------------------


def test_until_before_the_split_audits_clean() -> None:
    log, _ = split_log()
    assert report_of(log, until="2026-11-24T13:40:15Z").clean
    assert run_on(log, "--until", "2026-11-24T13:40:15Z")[0] == 0


def test_since_clips_the_overlap_window() -> None:
    log, _ = split_log()
    report = report_of(log, since="2026-11-24T13:40:25Z", until="2026-11-24T13:40:45Z")
    [split] = report.splits
    assert format_ts(split.start) == "2026-11-24T13:40:25.000000Z"
    assert format_ts(split.end) == "2026-11-24T13:40:45.000000Z"
    assert split.audio_connect is not None  # the connect line is outside, but known
    # The live line (t=20 s) is outside the window: not counted, not reported missing.
    assert not split.live_detected and report.live_only_splits == ()
    assert report.summary.sessions == 0  # session_A was created before the window


def test_since_and_until_on_the_command_line(tmp_path: Path) -> None:
    log, _ = split_log()
    path = str(log.write(tmp_path / "radiod.log"))
    assert run("--since", "2026-11-24T13:41:00Z", path)[0] == 0  # after the split ended
    code, out = run("--json", "--since", "2026-11-24T14:40:25+01:00", path)  # offsets work
    assert code == 1
    assert json.loads(out)["summary"]["since"] == "2026-11-24T13:40:25.000000Z"
    with pytest.raises(SystemExit):
        cli("--since", "last tuesday", path)
    assert run("--since", "2026-11-24T13:41:00Z", "--until", "2026-11-24T13:40:00Z", path)[0] == 2


def test_window_ignores_untagged_lines_outside_it() -> None:
    log = FakeLog()
    log.at(0).emit("stream.reader_skipped", skipped_seconds=1.0)
    log.at(100).emit("stream.reader_skipped", skipped_seconds=1.0)
    assert report_of(log).untagged_count == 2
    assert report_of(log, since="2026-11-24T13:41:00Z").untagged_count == 1


def run_on(log: FakeLog, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    args = cli(*argv, "-")
    stdin = io.BytesIO(log.text().encode())
    report = audit.audit_paths(args.logs, since=args.since, until=args.until, stdin=stdin)
    out.write(audit.render_human(report))
    return report.exit_code, out.getvalue()


# -- untagged and orphans ----------------------------------------------------------------------


def test_untagged_lines_are_counted_with_examples() -> None:
    log = FakeLog()
    log.visit("c1", "session_a", 0, 100)
    closed = log.at(50).emit("stream.closed", listener_id="l9", channel="audio", client_id="c1")
    mixer = log.emit("mixer.track_failed", path="/x.mp3", reason="corrupt")
    anon = log.access("GET /stream?session=session_a 200", None, "audio", "session_a")
    log.access("POST /create-session 201", "c1", "api")  # no session yet: fine
    log.access("GET / 200", "c1", "page")  # fine
    log.emit("server.started", port=1)  # not request-scoped: fine
    report = report_of(log)
    assert report.untagged_count == 3
    assert report.untagged_missing == {"session_id": 2, "client_id": 1}
    assert report.untagged_by_event == {
        "(access log)": 1,
        "mixer.track_failed": 1,
        "stream.closed": 1,
    }
    assert [(x.at.line, x.problem) for x in report.untagged_examples] == [
        (closed, "session_id"),
        (mixer, "session_id"),
        (anon, "client_id"),
    ]
    assert report.clean  # untagged lines are a warning, not a split


def test_orphan_sessions_and_event_channels() -> None:
    log = FakeLog()
    log.visit("c1", "session_a", 0, 100)
    created = log.at(10).create("session_never_played", "c2")
    log.events_open("session_never_played", "c2", "e2")
    log.at(20).events_close("session_never_played", "c2", "e2")
    unused = log.at(30).create("session_unused", "c3")
    report = report_of(log)
    assert [
        (x.session_id, x.events_attached, x.at.line) for x in report.sessions_without_audio
    ] == [
        ("session_never_played", True, created),
        ("session_unused", False, unused),
    ]
    [events_only] = report.events_without_audio
    assert (events_only.session_id, events_only.client_ids, events_only.connections) == (
        "session_never_played",
        ("c2",),
        1,
    )


# -- output --------------------------------------------------------------------------------------

# The documented --json schema, version 1: key -> type (nested dicts are objects).
LOC = {"file": str, "line": int}
SCHEMA: dict[str, Any] = {
    "version": int,
    "clean": bool,
    "summary": {
        "lines": int,
        "first_ts": (str, type(None)),
        "last_ts": (str, type(None)),
        "since": (str, type(None)),
        "until": (str, type(None)),
        "sessions": int,
        "clients": int,
        "listeners": int,
        "event_connections": int,
        "restarts": int,
        "restarts_logged": int,
        "shared_sessions": int,
        "splits": int,
        "live_splits": int,
        "live_only_splits": int,
        "untagged": int,
        "sessions_without_audio": int,
        "events_without_audio": int,
        "skipped_lines": int,
    },
    "splits": [
        {
            "client_id": str,
            "audio_session_id": str,
            "events_session_id": str,
            "start": str,
            "end": str,
            "seconds": float,
            "ongoing": bool,
            "overlaps": int,
            "audio_connect": LOC,
            "events_connect": LOC,
            "live_detected": bool,
            "live_detections": int,
        }
    ],
    "live_only_splits": [
        {
            "client_id": str,
            "audio_session_id": str,
            "events_session_id": str,
            "ts": str,
            "at": LOC,
            "count": int,
        }
    ],
    "shared_sessions": [
        {"session_id": str, "client_ids": [str], "listeners": int, "event_connections": int}
    ],
    "orphans": {
        "sessions_without_audio": [
            {
                "session_id": str,
                "client_id": str,
                "created": str,
                "at": LOC,
                "events_attached": bool,
            }
        ],
        "events_without_audio": [
            {
                "session_id": str,
                "client_ids": [str],
                "connections": int,
                "first_connect": str,
                "at": LOC,
            }
        ],
    },
    "untagged": {"count": int, "missing": dict, "by_event": dict, "examples": [dict]},
    "skipped_lines": int,
    "skipped": {"by_reason": dict, "examples": [{"at": LOC, "reason": str}]},
}


def check_schema(value: Any, schema: Any, path: str = "$") -> None:
    if isinstance(schema, dict):
        assert isinstance(value, dict), path
        assert set(value) == set(schema), f"{path}: {sorted(value)} != {sorted(schema)}"
        for key, sub in schema.items():
            check_schema(value[key], sub, f"{path}.{key}")
    elif isinstance(schema, list):
        assert isinstance(value, list), path
        for i, item in enumerate(value):
            check_schema(item, schema[0], f"{path}[{i}]")
    else:
        assert isinstance(value, schema), f"{path}: {value!r}"


def test_json_output_matches_the_documented_schema(tmp_path: Path) -> None:
    log, _ = split_log()
    log.at(70).live_split("c9", "session_X", "session_Y", "audio")
    log.at(80).create("session_lonely", "c5")
    log.events_open("session_lonely", "c5", "e5")
    log.emit("stream.reader_skipped", skipped_seconds=0.5)
    log.raw("not json")
    code, out = run("--json", str(log.write(tmp_path / "radiod.log")))
    doc = json.loads(out)
    check_schema(doc, SCHEMA)
    assert code == 1 and doc["clean"] is False and doc["version"] == 1
    assert all(doc["splits"] and doc["live_only_splits"] and doc["untagged"]["examples"])
    assert doc["orphans"]["sessions_without_audio"] and doc["skipped"]["examples"]


def test_human_report_puts_splits_first_and_summary_last() -> None:
    log, _ = split_log()
    log.emit("mixer.track_failed", path="/x.mp3", reason="corrupt")
    log.at(80).create("session_lonely", "c5")
    out = audit.render_human(report_of(log))
    headings = [line.split(" (")[0] for line in out.splitlines()[1:] if line[:1].isalpha()]
    assert headings == ["SPLIT SESSIONS", "UNTAGGED LINES", "ORPHANS", "SUMMARY"]


# -- the byte-level prefilter ------------------------------------------------------------------


def test_prefilter_never_changes_the_findings() -> None:
    """The same log written with spaces (every line on the slow path) audits the same."""
    log, _ = split_log()
    log.visit("c2", "session_c", 5, 50)
    log.emit("mixer.track_failed", path="/x.mp3", reason="corrupt")
    log.emit("stream.reader_skipped", skipped_seconds=0.5)
    log.emit("stream.slow_client_dropped", **FakeLog._request("c2", "audio", "session_c"))
    log.access("GET /stream 200", None, "audio", "session_c")
    log.access("GET /events 200", "c2", "events")
    log.access("GET /events 200", "c2", "events", None, session_id=None)
    log.access("GET / 200", "c2", None)
    log.emit("library.skipped", detail={"event": "stream.connected", "session_id": "x"})
    log.at(80).create("session_lonely", "c5")
    fast = audit_lines(log.lines).to_json()
    assert fast == audit_lines(spaced(log.lines)).to_json()
    assert fast["summary"]["untagged"] == 5


def spaced(lines: list[str]) -> list[str]:
    return [json.dumps(json.loads(line), separators=(", ", ": ")) for line in lines]


_VALUES = st.sampled_from(
    ["session_a", "c1", "", None, "audio", "events", "api", "page", 7, ["audio"], {"a": None}]
)
_EVENTS = st.sampled_from(
    [
        *("stream.connected", "stream.closed", "events.connected", "events.closed"),
        *("session.created", "session.reaped", "session.restart", "split_session.detected"),
        *("mixer.track_started", "stream.reader_skipped", "server.started", "library.skipped"),
        "GET /stream 200",
    ]
)
_RECORDS = st.fixed_dictionaries(
    {"event": _EVENTS, "ts": st.integers(0, 100)},
    optional={
        key: _VALUES
        for key in ("session_id", "client_id", "channel", "listener_id", "event_client_id")
    }
    | {"audio_session_id": _VALUES, "events_session_id": _VALUES},
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_RECORDS, max_size=30))
def test_prefilter_agrees_with_the_decoder_on_any_tagging(records: list[dict[str, Any]]) -> None:
    records.sort(key=lambda record: record["ts"])  # a log file is written in time order
    for record in records:
        record["ts"] = format_ts(parse_ts("2026-11-24T13:40:00Z") + record["ts"] * 10**6)
    compact = [orjson.dumps(record).decode() for record in records]
    assert audit_lines(compact).to_json() == audit_lines(spaced(compact)).to_json()
