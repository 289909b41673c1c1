"""ICY framing: blocks every `metaint` bytes, nearest to where titles change."""

from __future__ import annotations

import asyncio
import itertools

from radiod.web.icy import IcyWriter, metadata_block
from tests.audio_analysis import decode_mono, handover_time
from tests.conftest import create_session, decode_audio


def _parse(stream: bytes, metaint: int) -> tuple[bytes, list[tuple[int, bytes]]]:
    """Split an ICY stream into audio and (audio offset, block text) pairs."""
    audio, blocks, pos = bytearray(), [], 0
    while pos + metaint < len(stream):
        audio += stream[pos : pos + metaint]
        pos += metaint
        length = stream[pos] * 16
        blocks.append((len(audio), stream[pos + 1 : pos + 1 + length]))
        pos += 1 + length
    audio += stream[pos:]
    return bytes(audio), blocks


def test_block_escapes_quotes_pads_and_keeps_utf8() -> None:
    block = metadata_block("Lumière Trio - Don't Stop")
    assert block[0] * 16 == len(block) - 1
    text = block[1:].rstrip(b"\x00").decode()
    assert text == "StreamTitle='Lumière Trio - Don\\'t Stop';"
    assert metadata_block(None) == b"\x00"


def test_very_long_titles_fit_one_block_and_stay_well_formed() -> None:
    for title in ("x" * 5000, "'" * 5000, "é" * 3000):
        block = metadata_block(title)
        assert block[0] <= 255
        text = block[1:].rstrip(b"\x00")
        assert text.endswith(b"';") and not text.endswith(b"\\';")
        text.decode()  # never cut inside a UTF-8 sequence


def test_titles_land_on_the_nearest_boundary_and_audio_is_untouched() -> None:
    metaint = 100
    writer = IcyWriter(metaint)
    audio = bytes(range(256)) * 10
    out = writer.feed(audio[:30], "A - one")
    out += writer.feed(audio[30:240])
    out += writer.feed(audio[240:260], "B - two")  # audible from byte 240: nearest boundary 200
    out += writer.feed(audio[260:370], "C - three")  # audible from byte 260: nearest 300
    out += writer.feed(audio[370:2000])
    got_audio, blocks = _parse(out, metaint)
    assert audio.startswith(got_audio)
    titled = [(offset, text.rstrip(b"\x00")) for offset, text in blocks if text]
    assert titled == [
        (100, b"StreamTitle='A - one';"),
        (200, b"StreamTitle='B - two';"),
        (300, b"StreamTitle='C - three';"),
    ]
    assert all(text == b"" for offset, text in blocks if offset > 300)


def test_a_repeated_title_is_not_sent_twice() -> None:
    writer = IcyWriter(10)
    out = writer.feed(b"a" * 20, "T") + writer.feed(b"b" * 40, "T")
    _, blocks = _parse(out, 10)
    assert [text.rstrip(b"\x00") for _, text in blocks].count(b"StreamTitle='T';") == 1


async def _read_icy(port: int, path: str, seconds_of_audio: float, bitrate: int):
    """GET with `Icy-MetaData: 1` over a raw socket; returns (headers, audio, blocks)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nIcy-MetaData: 1\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
    status, *lines = head.decode("latin-1").split("\r\n")
    assert " 200 " in status, status
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines if x)}
    metaint = int(headers["icy-metaint"])
    want = int(seconds_of_audio * bitrate * 1000 / 8)
    audio, blocks = bytearray(), []
    async with asyncio.timeout(seconds_of_audio + 30):
        while len(audio) < want:
            audio += await reader.readexactly(metaint)
            length = (await reader.readexactly(1))[0] * 16
            text = (await reader.readexactly(length)).rstrip(b"\x00").decode()
            blocks.append((len(audio), text))
    writer.close()
    return headers, bytes(audio), blocks


async def test_icy_titles_sit_where_the_tracks_change_and_the_audio_stays_clean(
    radiod_client, demo_tracks
) -> None:
    bitrate = 320  # 16000-byte intervals are 0.4 s here, so placement is within 0.2 s
    client = await radiod_client(audio={"bitrate": bitrate})
    session_id = await create_session(client)
    headers, audio, blocks = await _read_icy(
        client.port, f"/stream?session={session_id}", 16.0, bitrate
    )
    assert headers["icy-metaint"] == "16000"
    assert headers["icy-name"] == "radiod"
    assert {"icy-description", "icy-genre"} <= headers.keys()
    samples, rate = decode_audio(audio)  # blocks stripped: clean, decodable MP3

    by_title = {f"{t.artist} - {t.title}": t for t in demo_tracks}
    titled = [
        (offset, text.removeprefix("StreamTitle='").removesuffix("';").replace("\\'", "'"))
        for offset, text in blocks
        if text
    ]
    assert all(title in by_title for _, title in titled), titled
    assert titled[0][0] == 16000, blocks[:20]  # the first block names what is playing
    assert len(titled) >= 3, titled
    mono = samples.mean(axis=0)
    bytes_per_second = bitrate * 1000 / 8
    for (_, before), (offset, after) in itertools.pairwise(titled):
        at = offset / bytes_per_second
        if at + 2.5 > len(mono) / rate:
            continue  # too close to the end of what was read to see both sides
        found = handover_time(
            mono,
            rate,
            at,
            decode_mono(by_title[before].path, rate),
            decode_mono(by_title[after].path, rate),
        )
        assert abs(found - at) <= 0.3, (before, after, at, found)


async def test_ffmpeg_reads_the_icy_title(radiod_client, demo_tracks) -> None:
    client = await radiod_client()
    session_id = await create_session(client)
    url = str(client.make_url(f"/stream?session={session_id}"))
    process = await asyncio.create_subprocess_exec(
        "ffmpeg",
        "-hide_banner",
        "-nostdin",
        "-icy",
        "1",
        "-i",
        url,
        "-t",
        "2",
        "-f",
        "null",
        "-",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    output = stderr.decode()
    assert process.returncode == 0, output
    # ffmpeg shows the block's text as sent: quotes stay escaped ("Don\\'t Stop").
    titles = [f"{t.artist} - {t.title}".replace("'", "\\'") for t in demo_tracks]
    assert "icy-name" in output
    assert any(f"StreamTitle     : {title}" in output for title in titles), output
