"""`radiod audit` on logs written by real runs of the server (real sockets, real mixer)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from radiod.audit import audit_lines
from tests.conftest import ClientFactory, LogCapture, create_session, read_bytes, read_sse


async def _listen(client, session_id: str, nbytes: int = 16000):
    stream = await client.get(f"/stream?session={session_id}")
    assert stream.status == 200
    assert len(await read_bytes(stream, nbytes)) == nbytes
    return stream


async def _wait_closed(client, session_id: str) -> None:
    async with asyncio.timeout(10):
        while True:
            status = await (await client.get(f"/sessions/{session_id}")).json()
            if not status["listeners"] and not status["eventClients"]:
                return
            await asyncio.sleep(0.05)


def _audit_file(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "radiod", "audit", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_a_clean_listening_run_audits_clean(
    radiod_client: ClientFactory, log_capture: LogCapture, tmp_path: Path
) -> None:
    client = await radiod_client()
    session_id = await create_session(client)
    events = await client.get(f"/events?session={session_id}")
    await read_sse(events, 1)
    stream = await _listen(client, session_id)
    assert (await client.post(f"/sessions/{session_id}/skip")).status == 202
    assert len(await read_bytes(stream, 16000)) == 16000
    stream.close()
    events.close()
    await _wait_closed(client, session_id)

    report = audit_lines(log_capture.buffer.getvalue().splitlines())
    assert report.clean and report.exit_code == 0
    assert report.splits == ()
    assert report.untagged_count == 0, report.untagged_examples
    assert report.summary.sessions == 1
    assert report.summary.listeners == 1
    assert report.summary.event_connections == 1
    assert report.summary.skipped_lines == 0

    path = tmp_path / "radiod.log"
    path.write_text(log_capture.buffer.getvalue())
    result = _audit_file(path, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["version"] == 1 and document["clean"] is True
    assert document["summary"]["splits"] == 0


async def test_a_split_client_is_one_incident_and_agrees_with_the_live_detector(
    radiod_client: ClientFactory, log_capture: LogCapture, tmp_path: Path
) -> None:
    client = await radiod_client()
    session_a = await create_session(client)
    session_b = await create_session(client)
    events = await client.get(f"/events?session={session_a}")
    await read_sse(events, 1)
    stream = await _listen(client, session_b)
    stream.close()
    events.close()
    await _wait_closed(client, session_a)
    await _wait_closed(client, session_b)
    (live,) = log_capture.events("split_session.detected")

    report = audit_lines(log_capture.buffer.getvalue().splitlines())
    (split,) = report.splits
    assert (split.audio_session_id, split.events_session_id) == (session_b, session_a)
    assert split.client_id == live["client_id"]
    assert split.live_detected
    assert report.live_only_splits == ()
    assert report.exit_code == 1
    assert split.audio_connect is not None and split.events_connect is not None

    path = tmp_path / "radiod.log"
    # Foreign and truncated lines, as a crashed writer or a shared file would leave them.
    path.write_text("not json at all\n" + log_capture.buffer.getvalue() + '{"ts": "2026-11-24T1')
    result = _audit_file(path)
    assert result.returncode == 1
    assert session_a in result.stdout and session_b in result.stdout
    document = json.loads(_audit_file(path, "--json").stdout)
    assert document["summary"]["skipped_lines"] == 2
    assert [(s["audio_session_id"], s["events_session_id"]) for s in document["splits"]] == [
        (session_b, session_a)
    ]


async def test_rejected_and_unknown_requests_stay_auditable(
    radiod_client: ClientFactory, log_capture: LogCapture
) -> None:
    client = await radiod_client()
    assert (await client.get("/stream?session=bad!id")).status == 400
    assert (await client.get("/stream")).status == 404
    assert (await client.get("/stream?session=session_unknown")).status == 404
    unknown = await client.get("/events?session=session_unknown")
    await unknown.read()
    report = audit_lines(log_capture.buffer.getvalue().splitlines())
    assert report.untagged_count == 0, report.untagged_examples
    assert report.clean
