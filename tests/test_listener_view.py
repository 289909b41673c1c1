"""`radiod audit` sets what listeners reported beside what the server did, on a real log."""

from __future__ import annotations

from datetime import timedelta

import pytest

from radiod.audit import audit_lines, render_human
from tests.conftest import ClientFactory, LogCapture, create_session, read_bytes, wait_until
from tests.test_audit import T0, FakeLog, spaced
from tests.test_metrics import scrape, value
from tests.test_supervision import inject_join_bug


async def test_audit_flags_stalls_the_server_never_saw_and_failures_no_listener_reported(
    radiod_client: ClientFactory, log_capture: LogCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await radiod_client(audio={"crossfade_seconds": 0.5})
    stalled, failed, both = [await create_session(client) for _ in range(3)]

    async def report(session_id: str, **body: object) -> None:
        answer = await client.post(f"/sessions/{session_id}/health", json=body)
        assert answer.status == 202, await answer.text()

    # The listener of `stalled` buffered twice, then gave up: the server sent every byte.
    await report(stalled, kind="buffering", ms=1500)
    await report(stalled, kind="buffering", ms=2500)
    await report(stalled, kind="dead", reason="no-progress", ms=12000)
    await report(stalled, kind="restart", reason="no-progress", attempt=1, delayMs=1000)
    await report(stalled, kind="sse_reconnect", attempt=1, delayMs=2000)

    # `failed` and `both` each lose a pipeline to a bug; only `both`'s listener says so.
    streams = []
    for session_id in (failed, both):
        stream = await client.get(f"/stream?session={session_id}")
        await read_bytes(stream, 16_000)
        streams.append(stream)
    inject_join_bug(monkeypatch, lambda mark: True)
    for n, session_id in enumerate((failed, both), 1):
        assert (await client.post(f"/sessions/{session_id}/skip")).status == 202
        await wait_until(lambda n=n: len(log_capture.events("mixer.pipeline_failed")) == n)
    monkeypatch.undo()
    await report(both, kind="buffering", ms=800)
    samples = await scrape(client)
    for stream in streams:
        stream.close()

    lines = log_capture.buffer.getvalue().splitlines()
    audit = audit_lines(lines)
    views = {view.session_id: view for view in audit.listener_view}
    assert set(views) == {stalled, failed, both}
    assert [view.session_id for view in audit.listener_view][:2] == [stalled, failed]
    assert views[stalled].disagreement == "network"
    assert views[failed].disagreement == "unreported"
    assert views[both].disagreement is None
    listener = views[stalled].client
    assert (listener.clients, listener.stalls, listener.buffering_seconds) == (1, 3, 4.0)
    assert (listener.restarts, listener.restart_reasons) == (1, {"no-progress": 1})
    assert listener.sse_reconnects == 1
    assert views[failed].server.pipeline_failures == 1 and views[failed].client.stalls == 0
    assert audit.summary.restarts_logged == 1
    document = audit.to_json()
    assert [v["disagreement"] for v in document["listener_view"]] == ["network", "unreported", None]

    human = render_human(audit)
    print(human)  # an excerpt of this goes in the closing note
    section = human.split("LISTENER VIEW (3 session(s), 2 disagree)\n")[1].split("\n\n")[0]
    rows = section.splitlines()[1:]
    assert rows[0].split()[0] == stalled and rows[0].endswith("network")
    assert "1 (no-progress 1)" in rows[0] and "4.0 s" in rows[0]
    assert rows[1].split()[0] == failed and rows[1].endswith("unreported")
    assert "1 mixer failures" in rows[1]

    crashes = "radiod_mixer_crashes_total"
    assert value(samples, crashes, worker="inline", kind="pipeline_failed") == 2
    assert value(samples, "radiod_client_reports_total", kind="buffering") == 3


def test_skips_and_drops_count_for_their_session_only_inside_the_window() -> None:
    log = FakeLog()
    audio = FakeLog._request("c1", "audio", "session_a")
    log.at(1).emit("stream.reader_skipped", skipped_seconds=2.5, **audio)
    log.at(2).emit("stream.reader_skipped", skipped_seconds=1.0, **audio)
    log.at(3).emit("stream.slow_client_dropped", **audio)
    log.at(3).emit("events.slow_client_dropped", **FakeLog._request("c1", "events", "session_a"))
    log.at(4).emit("stream.reader_skipped", skipped_seconds=9.0)  # about no session
    log.at(90).emit("stream.reader_skipped", skipped_seconds=7.0, **audio)  # after --until
    report = audit_lines(log.lines, until=T0 + timedelta(seconds=60))
    (view,) = report.listener_view
    assert (view.server.skips, view.server.skipped_seconds) == (2, 3.5)
    assert (view.server.audio_drops, view.server.events_drops) == (1, 1)
    assert view.disagreement == "unreported" and view.client.clients == 0
    assert audit_lines(spaced(log.lines)).to_json() == audit_lines(log.lines).to_json()
