"""The encoders alone: real PyAV encoding of synthetic PCM, decoded back with PyAV."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import textwrap

import av
import numpy as np
import pytest

from radiod.audio.encode import EncodedFrame, Encoder, create_encoder, ogg_crc
from radiod.config import AudioConfig

CODECS = {"mp3": 44100, "opus": 48000, "aac": 44100}
DEMUXERS = {"mp3": "mp3", "opus": "ogg", "aac": "aac"}


def make_encoder(codec: str) -> Encoder:
    return create_encoder(AudioConfig(codec=codec, sample_rate=CODECS[codec]))


def tone_burst(rate: int, seconds: float, onset: int) -> np.ndarray:
    """Silence, then a 1 kHz tone from sample `onset` on: its start is easy to find again."""
    pcm = np.zeros((2, int(rate * seconds)), dtype=np.float32)
    t = np.arange(pcm.shape[1] - onset) / rate
    pcm[:, onset:] = 0.5 * np.sin(2 * np.pi * 1000 * t)
    return pcm


def feed_in_odd_blocks(encoder: Encoder, pcm: np.ndarray) -> list[EncodedFrame]:
    rng = np.random.default_rng(7)
    frames: list[EncodedFrame] = []
    start = 0
    while start < pcm.shape[1]:
        size = int(rng.integers(1, 5000))
        frames += encoder.encode(pcm[:, start : start + size])
        start += size
    return frames


def decode(codec: str, data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data), format=DEMUXERS[codec]) as container:
        return np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)


@pytest.mark.parametrize("codec", CODECS)
def test_decoded_audio_lands_where_stream_samples_says(codec: str) -> None:
    rate = CODECS[codec]
    encoder = make_encoder(codec)
    onset = rate  # the tone starts 1 s into the input
    frames = feed_in_odd_blocks(encoder, tone_burst(rate, 3, onset))
    decoded = decode(codec, encoder.header + encoder.pack(frames))
    heard = int(np.argmax(np.abs(decoded[0]) > 0.05))
    # Priming included (MP3 1105, AAC 1024 samples; Ogg pre-skip is dropped by decoders).
    assert abs(heard - encoder.stream_samples(onset)) <= 2
    assert [f.pts for f in frames] == [
        frames[0].pts + i * encoder.frame_size for i in range(len(frames))
    ]


def test_each_lame_packet_is_exactly_one_mp3_frame() -> None:
    encoder = make_encoder("mp3")
    frames = feed_in_odd_blocks(encoder, tone_burst(44100, 2, 1000))
    bitrates = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]
    for frame in frames:
        header = int.from_bytes(frame.data[:4], "big")
        assert header >> 21 == 0x7FF  # frame sync
        bitrate = bitrates[(header >> 12) & 0xF] * 1000
        padding = (header >> 9) & 1
        assert len(frame.data) == 144 * bitrate // 44100 + padding
        assert bitrate == 128_000  # CBR at the configured bitrate


def test_adts_headers_frame_every_aac_frame() -> None:
    encoder = make_encoder("aac")
    frames = feed_in_odd_blocks(encoder, tone_burst(44100, 1, 1000))
    data = encoder.pack(frames)
    offset = 0
    for frame in frames:
        header = data[offset : offset + 7]
        assert header[0] == 0xFF and header[1] & 0xF6 == 0xF0  # sync, layer 0
        length = ((header[3] & 0x03) << 11) | (header[4] << 3) | (header[5] >> 5)
        assert length == len(frame.data) + 7
        assert (header[2] >> 2) & 0x0F == 4  # 44.1 kHz
        offset += length
    assert offset == len(data)


def ogg_pages(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(flags, granule, page sequence, whole page) for each page, checking each CRC."""
    pages = []
    offset = 0
    while offset < len(data):
        assert data[offset : offset + 4] == b"OggS"
        flags, granule, _serial, seq, crc, count = struct.unpack_from("<xBqIIIB", data, offset + 4)
        body = sum(data[offset + 27 : offset + 27 + count])
        page = data[offset : offset + 27 + count + body]
        zeroed = page[:22] + b"\0\0\0\0" + page[26:]
        assert ogg_crc(zeroed) == crc
        pages.append((flags, granule, seq, page))
        offset += len(page)
    return pages


def test_ogg_pages_carry_valid_crcs_and_granules() -> None:
    encoder = make_encoder("opus")
    frames = feed_in_odd_blocks(encoder, tone_burst(48000, 2, 1000))
    head = ogg_pages(encoder.header)
    assert [p[0] for p in head] == [0x02, 0x00]  # BOS, then the comment page
    assert head[0][3][28:36] == b"OpusHead" and head[1][3][28:36] == b"OpusTags"
    chunks = [frames[i : i + 13] for i in range(0, len(frames), 13)]
    pages = [page for chunk in chunks for page in ogg_pages(encoder.pack(chunk))]
    assert len(pages) == len(chunks)  # one page per chunk: chunk ends are page ends
    assert [p[2] for p in pages] == list(range(2, 2 + len(pages)))
    pre_skip = struct.unpack_from("<H", head[0][3], 28 + 10)[0]
    for page, chunk in zip(pages, chunks, strict=True):
        assert page[1] == chunk[-1].pts + chunk[-1].samples + pre_skip


def test_ogg_crc_matches_the_spec_polynomial() -> None:
    def reference(data: bytes) -> int:
        crc = 0
        for byte in data:
            crc ^= byte << 24
            for _ in range(8):
                crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
                crc &= 0xFFFFFFFF
        return crc

    data = bytes(range(256)) * 3
    assert ogg_crc(data) == reference(data)


@pytest.mark.parametrize("codec", CODECS)
def test_a_stream_decodes_from_any_pack_boundary(codec: str) -> None:
    rate = CODECS[codec]
    encoder = make_encoder(codec)
    rng = np.random.default_rng(3)
    pcm = (0.3 * rng.standard_normal((2, rate * 3))).astype(np.float32)
    frames = feed_in_odd_blocks(encoder, pcm)
    packs = [encoder.pack(frames[i : i + 10]) for i in range(0, len(frames), 10)]
    for start in (0, 1, len(packs) // 2):
        decoded = decode(codec, encoder.header + b"".join(packs[start:]))
        frames_left = len(frames) - start * 10
        # Every frame decodes (Opus decoders drop pre-skip again at a mid-stream join).
        expected = frames_left * encoder.frame_size
        assert expected - 312 <= decoded.shape[1] <= expected


def test_system_lame_swaps_in_before_pyav_and_still_makes_valid_mp3() -> None:
    # A fresh interpreter: the swap only works before `av` is first imported.
    script = textwrap.dedent(
        """
        import io, sys
        from radiod.audio import prefer_system_lame
        used = prefer_system_lame()
        import av, numpy as np
        from radiod.audio.encode import create_encoder
        from radiod.config import AudioConfig
        encoder = create_encoder(AudioConfig(codec="mp3"))
        tone = np.sin(np.arange(44100, dtype=np.float32) / 10).astype(np.float32) * 0.5
        frames = encoder.encode(np.stack((tone, tone)))
        with av.open(io.BytesIO(encoder.pack(frames)), format="mp3") as container:
            samples = sum(f.samples for f in container.decode(audio=0))
        print(used, samples, len(frames) * 1152)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    used, samples, expected = result.stdout.split()
    if used == "None":
        pytest.skip("no system libmp3lame of the same version as PyAV's")
    assert int(samples) == int(expected)


def test_mp3_quality_reaches_lame() -> None:
    """`audio.mp3_quality` is LAME's compression level: two levels code the same PCM apart
    (an option FFmpeg ignored would leave the bytes alike), and both decode to the tone."""
    rate = CODECS["mp3"]
    pcm = tone_burst(rate, 2, rate // 2)
    coded = {}
    for level in (0, 9):
        encoder = create_encoder(AudioConfig(codec="mp3", mp3_quality=level))
        coded[level] = encoder.pack(encoder.encode(pcm))
        decoded = decode("mp3", coded[level])
        assert np.abs(decoded[0, rate : rate + 4096]).max() > 0.4
    assert coded[0] != coded[9]
