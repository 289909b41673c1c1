"""Cover art for the demo library: a small generated picture embedded in a track.

The demo shows every feature a real library has, cover art included, without shipping a
binary or adding an imaging library: the picture is computed with numpy (a two-colour
gradient with rings, its hues from the track's seed) and encoded as PNG by PyAV's own
encoder, then muxed as an attached picture, which FFmpeg writes as an ID3 APIC frame in
MP3 and a PICTURE block in FLAC. (Its Ogg muxer cannot embed one: Opus tracks go without.)
"""

from __future__ import annotations

import colorsys

import av
import numpy as np
from av.container import OutputContainer
from av.stream import Disposition

COVER_PIXELS = 240  # square; the page shows it at up to ~340 CSS px
COVER_CONTAINERS = frozenset({"mp3", "flac"})


def cover_png(seed: int, size: int = COVER_PIXELS) -> bytes:
    """A square PNG, the same bytes for the same seed (the demo is bit-exact)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    hue = (seed * 0.137) % 1.0
    first = np.array(colorsys.hsv_to_rgb(hue, 0.75, 0.95), dtype=np.float32)
    second = np.array(colorsys.hsv_to_rgb((hue + 0.35) % 1.0, 0.85, 0.45), dtype=np.float32)
    mix = ((x + y) / 2)[..., None]
    rings = 0.5 + 0.5 * np.cos(np.hypot(x - 0.3, y - 0.35) * (18 + 4 * seed))
    pixels = (first * (1 - mix) + second * mix) * (0.8 + 0.2 * rings[..., None])
    frame = av.VideoFrame.from_ndarray((pixels * 255).astype(np.uint8), format="rgb24")
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = size, size, "rgb24"
    return b"".join(bytes(packet) for packet in [*codec.encode(frame), *codec.encode(None)])


def attach_cover(container: OutputContainer, png: bytes) -> None:
    """Add `png` to `container` as its front cover. Call after adding the audio stream and
    before muxing any audio: the picture is written with the header."""
    stream = container.add_stream("png")
    stream.width = stream.height = COVER_PIXELS
    stream.pix_fmt = "rgb24"
    stream.disposition = Disposition.attached_pic
    stream.metadata["comment"] = "Cover (front)"
    packet = av.Packet(png)
    packet.stream = stream
    container.mux(packet)
