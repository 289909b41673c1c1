"""What they hear is what they see: announced track times match the listener's audio."""

from __future__ import annotations

import asyncio
import itertools

from tests.audio_analysis import decode_mono, handover_time
from tests.conftest import ClientFactory, create_session, decode_audio, read_sse

SECONDS_OF_AUDIO = 17.0


async def test_announced_start_times_match_the_audio_the_listener_received(
    radiod_client: ClientFactory, demo_tracks
) -> None:
    client = await radiod_client()
    session_id = await create_session(client)
    events = await client.get(f"/events?session={session_id}")
    await read_sse(events, 1)
    messages: list[dict] = []

    async def collect() -> None:
        while True:
            messages.extend(await read_sse(events, 1, timeout=60))

    collector = asyncio.create_task(collect())
    stream = await client.get(f"/stream?session={session_id}&listener=timing")
    data = await asyncio.wait_for(
        stream.content.readexactly(int(SECONDS_OF_AUDIO * 128_000 / 8)), SECONDS_OF_AUDIO + 30
    )
    stream.close()
    collector.cancel()
    events.close()

    (attached,) = [
        m["data"]
        for m in messages
        if m["data"]["type"] == "listener" and m["data"]["listenerId"] == "timing"
    ]
    stream_start = attached["streamStart"]
    tracks = {t.track_id: t for t in demo_tracks}
    starts = {}
    for message in messages:
        data_ = message["data"]
        if data_["type"] == "track" and data_["nowPlaying"]:
            starts[data_["startsAt"]] = tracks[data_["nowPlaying"]["trackId"]]
    samples, rate = decode_audio(data)
    mono = samples.mean(axis=0)
    heard = len(mono) / rate
    ordered = sorted(starts.items())
    checked = 0
    for (_, before), (starts_at, after) in itertools.pairwise(ordered):
        at = starts_at - stream_start  # where the listener's own clock should switch
        if at < 2.5 or at + 2.5 > heard:
            continue
        found = handover_time(
            mono, rate, at, decode_mono(before.path, rate), decode_mono(after.path, rate)
        )
        assert abs(found - at) <= 0.3, (before.title, after.title, at, found)
        checked += 1
    assert checked >= 2, (stream_start, ordered)
