"""A mixer never leaves a listener hanging.

A bad file is skipped inside the pipeline; what these tests inject is the other kind of
failure, a bug in the join itself (the kind a 0.3 s jingle once caused). One failure costs
the listener one track and nothing else: stream time and sequence go on, now playing is
announced again. Failures that keep coming end the session with an error on both
channels, so the page restarts on a new session instead of holding a silent socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from radiod.audio import mixer
from radiod.audio.mixer import CHUNK_SECONDS, CRASH_LIMIT, TrackMark, mix
from radiod.audio.outputs import MixerGaveUp, PipelineFailed, TrackEvent
from radiod.audio.ring import Chunk
from radiod.catalog import FixedCatalog
from radiod.config import AudioConfig
from radiod.library import Track
from tests.conftest import (
    ClientFactory,
    LogCapture,
    collect_sse,
    create_session,
    decode_audio,
    read_bytes,
    wait_until,
)
from tests.test_mixer import assert_contiguous, chunks_of, write_tone


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> list[Track]:
    folder = tmp_path_factory.mktemp("tones")
    return [write_tone(folder / f"tone-{hz}.flac", hz, 1.5) for hz in (220, 330, 440, 550, 660)]


def inject_join_bug(monkeypatch: pytest.MonkeyPatch, when: Callable[[TrackMark | None], bool]):
    """Make the crossfade raise as a bug would, when joining into a track `when` picks."""
    real = mixer._transition

    def buggy(outgoing: np.ndarray, incoming: np.ndarray, mark: TrackMark | None):
        if when(mark):
            raise IndexError("injected join bug")
        return real(outgoing, incoming, mark)

    monkeypatch.setattr(mixer, "_transition", buggy)


def test_a_failing_join_costs_one_track_and_the_stream_goes_on(
    tones: list[Track], monkeypatch: pytest.MonkeyPatch
) -> None:
    cursed = tones[2]
    inject_join_bug(monkeypatch, lambda mark: mark is not None and mark.track == cursed)
    catalog = FixedCatalog(tones)
    audio = AudioConfig(codec="mp3", crossfade_seconds=0.3)
    items = []
    for item in mix(catalog, audio, seed=4):
        items.append(item)
        if isinstance(item, Chunk) and item.end_time >= 20:
            break

    failures = [item for item in items if isinstance(item, PipelineFailed)]
    assert [f.track for f in failures] == [cursed]
    assert "IndexError" in failures[0].error and "injected join bug" in failures[0].traceback
    assert cursed not in catalog.tracks()  # left out for every session from now on
    events = [item for item in items if isinstance(item, TrackEvent)]
    assert cursed not in {e.track for e in events}
    # It had been announced as next; from the failure on, it never is again.
    after = [item for item in items[items.index(failures[0]) :] if isinstance(item, TrackEvent)]
    assert cursed not in {e.next_track for e in after}
    # Stream time and sequence simply go on across the failure...
    chunks = chunks_of(items)
    assert_contiguous(chunks)
    pcm, _ = decode_audio(b"".join(c.data for c in chunks))
    assert pcm.shape[1] / 44100 == pytest.approx(chunks[-1].end_time, abs=0.05)
    # ...and a new track is announced within one chunk (plus the encoder's two frames of
    # look-ahead) of the audio out when the failure was reported.
    at = items.index(failures[0])
    out_before = chunks_of(items[:at])[-1].end_time
    announced = next(e for e in items[at:] if isinstance(e, TrackEvent))
    assert announced.starts_at - out_before <= CHUNK_SECONDS + 2 * 1152 / 44100


def test_failures_that_keep_coming_end_the_stream(
    tones: list[Track], monkeypatch: pytest.MonkeyPatch
) -> None:
    inject_join_bug(monkeypatch, lambda mark: True)
    audio = AudioConfig(codec="mp3", crossfade_seconds=0.3)
    items = []
    with pytest.raises(MixerGaveUp, match=f"{CRASH_LIMIT} pipeline failures"):
        for item in mix(FixedCatalog(tones), audio, seed=1):
            items.append(item)
    failures = [item for item in items if isinstance(item, PipelineFailed)]
    assert [f.failures for f in failures] == list(range(1, CRASH_LIMIT + 1))
    assert_contiguous(chunks_of(items))


async def test_a_session_whose_mixer_gives_up_ends_both_channels_with_an_error(
    radiod_client: ClientFactory, log_capture: LogCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await radiod_client(audio={"crossfade_seconds": 0.5})
    session_id = await create_session(client)
    messages: list[dict] = []
    events = await client.get(f"/events?session={session_id}")
    collector = asyncio.create_task(collect_sse(events, messages))
    audio = await client.get(f"/stream?session={session_id}")
    assert audio.status == 200
    first = await read_bytes(audio, 16_000)
    await wait_until(lambda: any(m["type"] == "track" for m in messages))

    inject_join_bug(monkeypatch, lambda mark: True)  # every skip now hits the bug
    seen = len(messages)
    assert (await client.post(f"/sessions/{session_id}/skip")).status == 202
    await wait_until(lambda: len(log_capture.events("mixer.pipeline_failed")) == 1)
    # One failure: the session lives on and announces now playing again.
    await wait_until(lambda: any(m["type"] == "track" for m in messages[seen:]))
    status = await (await client.get(f"/sessions/{session_id}")).json()
    assert status["playing"] is True
    first += await read_bytes(audio, 16_000)

    for count in range(2, CRASH_LIMIT + 1):
        assert (await client.post(f"/sessions/{session_id}/skip")).status == 202
        await wait_until(lambda n=count: len(log_capture.events("mixer.pipeline_failed")) == n)

    # Both channels end, the events one with an error the page acts on.
    async with asyncio.timeout(20):
        rest = await audio.content.read()  # to EOF
        await collector
    assert messages[-1] == {"type": "error", "message": "session_ended", "reason": "mixer_failed"}
    decode_audio(first + rest)
    failures = log_capture.events("mixer.pipeline_failed")
    assert [line["session_id"] for line in failures] == [session_id] * CRASH_LIMIT
    assert [line["session_id"] for line in log_capture.events("session.failed")] == [session_id]
    await wait_until(lambda: log_capture.events("session.reaped") != [])
    assert (await client.get(f"/sessions/{session_id}")).status == 404
