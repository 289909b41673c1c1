"""Encode PCM blocks into whole codec frames, and pack frames into stream bytes.

One `Encoder` per session stream. It takes float32 planar blocks of any length and
returns `EncodedFrame`s stamped on the session's sample clock. `pack()` turns a run of
frames into bytes a listener may start at: MP3 frames as they are, AAC frames behind ADTS
headers, Opus packets in whole Ogg pages. The encoder knows nothing
of sockets or chunks; the mixer decides where a chunk ends, the encoder makes it decodable.

Formats are written here rather than through PyAV's muxers because the mixer must end a
chunk (for Ogg: a page) at a frame of its choosing, the one nearest a track change, and a
muxer writing into a file object decides page ends and buffering itself. ADTS is a
7-byte header per frame and an Ogg page a 27-byte header with a CRC; both are fixed by
their specs (ISO 14496-3 1.A.2, RFC 3533, RFC 7845).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

import av
import numpy as np

from radiod.config import AudioConfig

CONTENT_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac"}


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One codec frame (an MP3 frame, a raw AAC frame, an Opus packet).

    Attributes:
        pts: first input sample it codes, on the session's sample clock; negative for the
            encoder's priming frames.
        samples: samples of audio it decodes to.
        data: the frame's bytes, without container framing.
    """

    pts: int
    samples: int
    data: bytes


class Encoder:
    """Base for the PyAV encoders: rebuffers blocks into codec frames and stamps them."""

    codec_name: ClassVar[str]
    sample_format: ClassVar[str]
    # True when decoders drop the priming samples themselves (Ogg Opus pre-skip), so the
    # listener's timeline equals the input's; False when they play them (MP3, ADTS).
    priming_dropped: ClassVar[bool] = False

    def __init__(
        self,
        *,
        sample_rate: int,
        channels: int,
        bitrate: int,
        options: Mapping[str, str] | None = None,
    ) -> None:
        ctx = av.CodecContext.create(self.codec_name, "w")
        ctx.sample_rate = sample_rate
        ctx.layout = "mono" if channels == 1 else "stereo"
        ctx.format = self.sample_format
        ctx.bit_rate = bitrate * 1000
        ctx.time_base = Fraction(1, sample_rate)
        ctx.options = dict(options or {})
        ctx.open()
        self._ctx = ctx
        self._layout = ctx.layout.name
        self.sample_rate = sample_rate
        self.channels = channels
        self.frame_size: int = ctx.frame_size
        self._next_pts = 0
        self._priming: int | None = None
        self._opened()

    def _opened(self) -> None:
        """Read what the open codec wrote (its extradata) into the container's framing."""

    @property
    def header(self) -> bytes:
        """Bytes a listener needs before any chunk (b"" for self-synchronising formats)."""
        return b""

    def stream_samples(self, pts: int) -> int:
        """Position on the listener's timeline (what its decoder outputs) of input sample `pts`.

        MP3 and ADTS decoders play the encoder's priming (LAME: 1105 samples, 25 ms at
        44.1 kHz; AAC: 1024), so input sample 0 is heard that much into the stream.
        """
        if self.priming_dropped:
            return pts
        return pts + (self._priming or 0)

    def encode(self, block: np.ndarray) -> list[EncodedFrame]:
        """Feed a (channels, n) float32 block of any length; returns the frames now ready.

        PyAV cuts what it is fed into the codec's frame size itself (in C, keeping the
        sample-count timestamps), so one block is one call whatever its length. It is fed
        interleaved floats: decoded blocks are views of interleaved buffers (convert.py), so
        `block.T` is already contiguous and costs no copy; the filter graph PyAV runs for
        the frame size anyway turns them planar where the codec wants that.
        """
        samples = block.shape[1]
        if not samples:
            return []
        interleaved = np.ascontiguousarray(block.T).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(interleaved, format="flt", layout=self._layout)
        frame.sample_rate = self.sample_rate
        frame.pts = self._next_pts  # in the codec's time base: 1 / sample rate
        self._next_pts += samples
        out = []
        for packet in self._ctx.encode(frame):
            pts = packet.pts
            if self._priming is None:
                # The first packet starts `initial_padding` samples before the input.
                self._priming = -pts if pts < 0 else 0
            out.append(EncodedFrame(pts, packet.duration, bytes(packet)))
        return out

    def pack(self, frames: Sequence[EncodedFrame]) -> bytes:
        """Bytes for a run of consecutive frames that a decoder can start at."""
        return b"".join(frame.data for frame in frames)


class Mp3Encoder(Encoder):
    """libmp3lame, CBR. Each PyAV packet is exactly one MP3 frame (checked in the tests)."""

    codec_name = "libmp3lame"
    sample_format = "fltp"


class AdtsAacEncoder(Encoder):
    """FFmpeg's native AAC-LC encoder, each raw frame behind an ADTS header."""

    codec_name = "aac"
    sample_format = "fltp"

    def _opened(self) -> None:
        # AudioSpecificConfig: 5 bits object type, 4 bits sampling index, 4 bits channels.
        asc = bytes(self._ctx.extradata or b"")
        object_type = asc[0] >> 3
        rate_index = ((asc[0] & 0x07) << 1) | (asc[1] >> 7)
        channel_config = (asc[1] >> 3) & 0x0F
        # Fixed part of the 7-byte header: sync, MPEG-4, layer 0, no CRC, profile, rate,
        # channels; the 13-bit frame length is filled in per frame.
        self._b2 = ((object_type - 1) << 6) | (rate_index << 2) | (channel_config >> 2)
        self._b3 = (channel_config & 0x03) << 6

    def pack(self, frames: Sequence[EncodedFrame]) -> bytes:
        out = bytearray()
        for frame in frames:
            length = len(frame.data) + 7
            out += bytes(
                (
                    0xFF,
                    0xF1,
                    self._b2,
                    self._b3 | (length >> 11),
                    (length >> 3) & 0xFF,
                    ((length & 0x07) << 5) | 0x1F,  # buffer fullness 0x7FF: VBR
                    0xFC,  # ... and one raw data block
                )
            )
            out += frame.data
        return bytes(out)


class OggOpusEncoder(Encoder):
    """libopus at 48 kHz in Ogg pages; one page (or more past 255 segments) per `pack()`."""

    codec_name = "libopus"
    sample_format = "flt"  # libopus takes interleaved only
    priming_dropped = True

    def _opened(self) -> None:
        self._serial = int.from_bytes(os.urandom(4), "little")
        self._page_seq = 0
        opus_head = bytes(self._ctx.extradata or b"")
        # OpusHead (RFC 7845 5.1) as libopus wrote it, pre-skip included.
        self._pre_skip = struct.unpack_from("<H", opus_head, 10)[0]
        vendor = f"radiod (libavcodec {av.library_versions['libavcodec'][0]})".encode()
        opus_tags = b"OpusTags" + struct.pack("<I", len(vendor)) + vendor + struct.pack("<I", 0)
        self._header = self._page([opus_head], granule=0, flags=0x02) + self._page(
            [opus_tags], granule=0
        )

    @property
    def header(self) -> bytes:
        return self._header

    def pack(self, frames: Sequence[EncodedFrame]) -> bytes:
        pages: list[bytes] = []
        page: list[EncodedFrame] = []
        segments = 0
        for frame in frames:
            needed = len(frame.data) // 255 + 1
            if page and segments + needed > 255:
                pages.append(self._audio_page(page))
                page, segments = [], 0
            page.append(frame)
            segments += needed
        if page:
            pages.append(self._audio_page(page))
        return b"".join(pages)

    def _audio_page(self, frames: Sequence[EncodedFrame]) -> bytes:
        last = frames[-1]
        # Granule position counts samples from the encoder's start, priming included.
        granule = last.pts + last.samples + self._pre_skip
        return self._page([frame.data for frame in frames], granule=granule)

    def _page(self, packets: Sequence[bytes], *, granule: int, flags: int = 0) -> bytes:
        lacing = bytearray()
        for packet in packets:
            lacing += b"\xff" * (len(packet) // 255) + bytes((len(packet) % 255,))
        header = struct.pack(
            "<4sBBqIIIB", b"OggS", 0, flags, granule, self._serial, self._page_seq, 0, len(lacing)
        )
        self._page_seq += 1
        page = bytearray(header + lacing + b"".join(packets))
        struct.pack_into("<I", page, 22, ogg_crc(page))
        return bytes(page)


# Ogg's CRC-32 is the unreflected polynomial 0x04C11DB7 with no pre/post inversion; zlib's is
# the reflected one with inversion. Bit-reversing the input bytes and the result maps one onto
# the other, which keeps the per-byte work in C.
_REVERSE_BITS = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def ogg_crc(data: bytes | bytearray) -> int:
    """The CRC of an Ogg page (RFC 3533), computed with its CRC field zeroed."""
    reflected = zlib.crc32(data.translate(_REVERSE_BITS), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


_ENCODERS: dict[str, type[Encoder]] = {
    "mp3": Mp3Encoder,
    "aac": AdtsAacEncoder,
    "opus": OggOpusEncoder,
}


def create_encoder(audio: AudioConfig) -> Encoder:
    """The encoder for `audio.codec` at the session's rate, channels and bitrate."""
    cls = _ENCODERS[audio.codec]
    # LAME's compression level (its -q): what it costs per level is in README "Audio cost".
    # Set on the CLI's side too when comparing (bench/transcode.py): FFmpeg leaves LAME at
    # its own default (3) otherwise.
    options = {"compression_level": str(audio.mp3_quality)} if audio.codec == "mp3" else {}
    return cls(
        sample_rate=audio.sample_rate,
        channels=audio.channels,
        bitrate=audio.bitrate,
        options=options,
    )
