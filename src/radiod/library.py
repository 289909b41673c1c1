"""Find the playable audio under a folder.

The scan runs once at start-up, synchronously, before the server takes requests. Files are
judged by probing them with PyAV, not by their extension: a misnamed file still plays, and a
file is kept only if it opens, has an audio stream and a positive duration, and decodes both
at its start and just before its claimed end. The last check matters: a truncated download
keeps a header that promises the full length, passes every other check, and would otherwise
die mid-broadcast. Skipped files are logged with a reason, so a user whose song is missing
can find out why.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import structlog
from av.audio.stream import AudioStream
from av.container import InputContainer

from radiod.demo import MANIFEST_NAME

log = structlog.get_logger(__name__)

UNKNOWN_ARTIST = "Unknown artist"
TAIL_SECONDS = 1.0  # how far before the claimed end the truncation check seeks
START_PACKETS = 50  # packets to read looking for the first decodable audio


@dataclass(frozen=True, slots=True)
class Track:
    """One playable file and what a listener sees of it."""

    path: Path
    track_id: str  # stable across restarts and machines: derived from the relative path
    title: str
    artist: str
    album: str
    duration: float  # seconds


class LibraryError(Exception):
    """The library cannot be used at all; the message is user-facing."""


class _Unplayable(Exception):
    """A file was rejected; the message is the short reason that goes in the log."""


def scan_library(root: Path) -> list[Track]:
    """Every playable file under `root`, in a deterministic order (sorted by relative path).

    Dotfiles, dot-folders and the demo manifest are ignored silently; any other file that is
    not playable is skipped with a `library.skipped` warning.
    """
    if not root.exists():
        raise LibraryError(f"library path {root} does not exist")
    if not root.is_dir():
        raise LibraryError(f"library path {root} is not a folder")
    tracks: list[Track] = []
    skipped = 0
    for path in _candidates(root):
        try:
            tracks.append(_probe(path, root))
        except _Unplayable as exc:
            skipped += 1
            log.warning("library.skipped", path=str(path), reason=str(exc))
    if not tracks:
        raise LibraryError(
            f"library path {root} contains no playable audio files ({skipped} skipped)"
        )
    log.info("library.scanned", path=str(root), tracks=len(tracks), skipped=skipped)
    return tracks


def _candidates(root: Path) -> Iterator[Path]:
    # os.walk does not follow symlinked folders, so a link loop cannot hang start-up.
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and name != MANIFEST_NAME:
                yield Path(folder) / name


def _probe(path: Path, root: Path) -> Track:
    try:
        # Tags in a legacy 8-bit encoding must not cost the user the whole file.
        with av.open(str(path), metadata_errors="replace") as container:
            if not container.streams.audio:
                raise _Unplayable("no audio stream")
            stream = container.streams.audio[0]
            packets = container.demux(stream)
            decoded = _decode_start(packets)
            duration = _declared_duration(container, stream)
            if duration is None:
                # Some muxers (live Matroska, piped Ogg) never write a length: decode it all.
                decoded += sum(frame.samples for packet in packets for frame in packet.decode())
                duration = decoded / stream.codec_context.sample_rate
            else:
                _check_tail(container, stream, duration)
            tags = _tags(container, stream)
    # PyAV's I/O errors are also OSErrors, so this order tells "cannot read" from "not audio".
    except OSError as exc:
        raise _Unplayable(f"cannot read ({exc.strerror or exc})") from None
    except av.FFmpegError as exc:
        raise _Unplayable(f"cannot decode ({exc.strerror or exc})") from None
    if duration <= 0:
        raise _Unplayable("no audio (zero duration)")
    relative = path.relative_to(root).as_posix()
    return Track(
        path=path,
        track_id=hashlib.sha1(relative.encode()).hexdigest()[:12],
        title=tags.get("title") or path.stem,
        artist=tags.get("artist") or UNKNOWN_ARTIST,
        album=tags.get("album") or "",
        duration=duration,
    )


def _tags(container: InputContainer, stream: AudioStream) -> dict[str, str]:
    """Container and stream tags merged, keys lower-cased: Ogg keeps its tags on the stream,
    and Vorbis-comment keys arrive in whatever case the tagger wrote."""
    merged: dict[str, str] = {}
    for source in (stream.metadata, container.metadata):
        for key, value in source.items():
            if value.strip():
                merged.setdefault(key.lower(), value.strip())
    return merged


def _decode_start(packets: Iterator[av.Packet]) -> int:
    """Samples decoded up to and including the first audio frame; raises if there is none."""
    for index, packet in enumerate(packets):
        samples = sum(frame.samples for frame in packet.decode())
        if samples:
            return samples
        if index >= START_PACKETS:
            break
    raise _Unplayable("no decodable audio at the start")


def _declared_duration(container: InputContainer, stream: AudioStream) -> float | None:
    """What the file says about its length. The stream's figure comes first: the container's
    also covers other streams, such as a cover picture."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _check_tail(container: InputContainer, stream: AudioStream, duration: float) -> None:
    """Decode just before the claimed end, so a truncated or garbage-padded file is caught now
    rather than when the mixer reaches it on air."""
    target = max(0.0, duration - TAIL_SECONDS)
    container.seek(int(target * av.time_base), any_frame=False)
    for packet in container.demux(stream):
        for frame in packet.decode():
            # No timestamp means no position to judge; decoding after the seek is enough.
            if frame.samples and (frame.time is None or frame.time >= target - TAIL_SECONDS):
                return
    raise _Unplayable(f"truncated or corrupt: no audio near its end ({duration:.1f} s)")
