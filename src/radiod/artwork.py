"""A track's cover art: the picture embedded in the file, else an image beside it.

FFmpeg reads every embedded kind the same way (ID3 APIC, FLAC and Vorbis picture blocks, MP4
`covr`): as a video stream marked `attached_pic` whose one packet is the image file, so PyAV
hands the bytes over as they were tagged. Beside the track, `cover`/`folder`/`front` with
`.jpg`, `.jpeg`, `.png` or `.webp`, in any case, is what rippers and players write.

Everything here blocks (it opens files): call it off the event loop.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import av
from av.container import InputContainer
from av.stream import Disposition

if TYPE_CHECKING:
    from radiod.library import Track

# Covers larger than this are not served: a tag can hold anything, and the page shows
# ~340 px. The largest real cover seen in tests is a 2.1 MB lossless scan.
MAX_COVER_BYTES = 8 * 1024 * 1024
FOLDER_STEMS = ("cover", "folder", "front")  # in order of preference
FOLDER_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
_FOLDER_NAMES = tuple(stem + suffix for stem in FOLDER_STEMS for suffix in FOLDER_SUFFIXES)

# The image formats browsers show, by their first bytes (a tag's declared MIME type is
# often wrong, and a folder image's suffix sometimes).
_SIGNATURES = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


@dataclass(frozen=True, slots=True)
class Cover:
    """An image to serve: its bytes, MIME type, and an ETag derived from the bytes."""

    data: bytes
    content_type: str
    etag: str


def cover_url(track: Track) -> str | None:
    """Where the page finds `track`'s cover (`web/covers.py` serves it), or None: it has none."""
    return f"/tracks/{track.track_id}/cover" if track.has_cover else None


def image_type(data: bytes) -> str | None:
    """The MIME type of an image from its first bytes, or None if no browser would show it."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in _SIGNATURES if data.startswith(magic)), None)


def embedded_picture_stream(container: InputContainer) -> av.stream.Stream | None:
    """The stream holding an attached picture, if the file has one."""
    for stream in container.streams.video:
        if stream.disposition & Disposition.attached_pic:
            return stream
    return None


def folder_cover(track_path: Path) -> Path | None:
    """The cover image in `track_path`'s folder, matched case-insensitively, or None."""
    found: dict[str, Path] = {}
    try:
        with os.scandir(track_path.parent) as entries:
            for entry in entries:
                name = entry.name.lower()
                if name in _FOLDER_NAMES:
                    found.setdefault(name, Path(entry.path))
    except OSError:
        return None
    for name in _FOLDER_NAMES:  # in order of preference
        path = found.get(name)
        if path is not None and _is_regular(path):
            return path
    return None


def has_folder_cover(track_path: Path) -> bool:
    return folder_cover(track_path) is not None


def read_cover(track_path: Path) -> Cover | None:
    """The track's cover (embedded first, then its folder's), or None when it has none usable:
    none at all, unreadable, larger than `MAX_COVER_BYTES`, or not an image browsers show."""
    data = _embedded(track_path)
    if data is None:
        data = _folder_image(track_path)
    if data is None:
        return None
    kind = image_type(data)
    if kind is None:
        return None
    return Cover(data, kind, f'"{hashlib.sha256(data).hexdigest()[:32]}"')


def _embedded(track_path: Path) -> bytes | None:
    if not _is_regular(track_path):  # never open a FIFO: it would block
        return None
    try:
        with av.open(str(track_path), metadata_errors="replace") as container:
            stream = embedded_picture_stream(container)
            if stream is None:
                return None
            for packet in container.demux(stream):
                if packet.size and packet.stream is stream:
                    return bytes(packet) if packet.size <= MAX_COVER_BYTES else None
    except (av.FFmpegError, OSError, ValueError):
        return None
    return None


def _folder_image(track_path: Path) -> bytes | None:
    path = folder_cover(track_path)
    if path is None:
        return None
    try:
        with path.open("rb") as image:
            data = image.read(MAX_COVER_BYTES + 1)
    except OSError:
        return None
    return data if len(data) <= MAX_COVER_BYTES else None


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False
