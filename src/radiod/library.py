"""Find the playable audio under a folder.

The scan runs once at start-up, synchronously, before the server takes requests, so it must
never hang and never raise on what a real folder holds. Files are judged by probing them
with PyAV, not by their extension: a misnamed file still plays, and a file is kept only if
it is a regular file, opens, has an audio stream and a positive duration, makes a sound, and
decodes both at its start and just before its claimed end. The last check matters: a
truncated download keeps a header that promises the full length, passes every other check,
and would otherwise die mid-broadcast. Every file that is not kept is logged once, as
`library.skipped` with its path and a short reason, so a user whose song is missing can find
out why.

What is not a file is never opened: opening a FIFO blocks until a writer appears (forever,
at start-up), and a device may never end. Symlinks are followed, to files and to folders
(a user links an album in from another disk); a link that loops or leads nowhere is
skipped with a reason, and a folder reached twice is scanned once.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np
import structlog
from av.audio.stream import AudioStream
from av.container import InputContainer

from radiod.artwork import embedded_picture_stream, has_folder_cover
from radiod.audio.decode import SILENCE_THRESHOLD
from radiod.audio.loudness import Loudness, tagged_loudness
from radiod.demo import MANIFEST_NAME

log = structlog.get_logger(__name__)

UNKNOWN_ARTIST = "Unknown artist"
TAIL_SECONDS = 1.0  # how far before the claimed end the truncation check seeks
START_PACKETS = 50  # packets to read looking for the first decodable audio

_NOT_REGULAR = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


@dataclass(frozen=True, slots=True)
class Track:
    """One playable file and what a listener sees of it."""

    path: Path
    track_id: str  # stable across restarts and machines: derived from the relative path
    title: str
    artist: str
    album: str
    duration: float  # seconds
    replaygain: Loudness | None = None  # what its ReplayGain / R128 tags say, if anything
    has_cover: bool = False  # an embedded picture or a folder image (radiod.artwork)


class LibraryError(Exception):
    """The library cannot be used at all; the message is user-facing."""


class Unplayable(Exception):
    """A file was rejected; the message is the short reason that goes in the log."""


def scan_library(root: Path) -> list[Track]:
    """Every playable file under `root`, in a deterministic order (folder by folder, by name).

    Dotfiles, dot-folders and the demo manifest are ignored silently; any other file that is
    not playable, and any folder that cannot be entered, is skipped with one
    `library.skipped` warning.
    """
    return list(LiveLibrary.open(root).tracks())


@dataclass(frozen=True, slots=True)
class _Verdict:
    """What a scan found at a path, and the state of the file it judged."""

    signature: tuple[int, int] | None  # (size, mtime_ns); None when it cannot be stat'ed
    track: Track | None  # None: not playable (logged once, when judged)
    dropped: bool = False  # failed on air: left out until the file changes


class LiveLibrary:
    """The music folder as it is now: the catalog (`radiod.catalog.Catalog`) sessions play.

    `rescan()` brings it up to date: files that are new or changed since the last scan (size
    or mtime) are probed, the others cost one stat each, so rescanning an unchanged library
    of thousands of files takes milliseconds. The server rescans on a timer rather than
    watching with inotify: a poll also sees a folder unmounted and mounted again, and network
    shares that send no events. A track that fails on air (`drop`) stays out until its file
    changes, so no session picks it, or names it as next, again.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._verdicts: dict[Path, _Verdict] = {}
        self._tracks: tuple[Track, ...] = ()
        self._missing = False  # the folder itself is gone (unmounted, renamed)
        self._scanned = False

    @classmethod
    def open(cls, root: Path) -> LiveLibrary:
        """Scan `root` once; `LibraryError` if it is missing, not a folder, or has no audio."""
        if not root.exists():
            raise LibraryError(f"library path {root} does not exist")
        if not root.is_dir():
            raise LibraryError(f"library path {root} is not a folder")
        library = cls(root)
        skipped = library.rescan()
        tracks = len(library.tracks())
        if not tracks:
            raise LibraryError(
                f"library path {root} contains no playable audio files ({skipped} skipped)"
            )
        log.info("library.scanned", path=printable(str(root)), tracks=tracks, skipped=skipped)
        return library

    def tracks(self) -> tuple[Track, ...]:
        """The playable tracks; the same tuple object until the library changes."""
        return self._tracks

    def drop(self, track: Track, reason: str) -> None:
        """`track` failed on air: leave it out until its file changes. Thread-safe."""
        with self._lock:
            verdict = self._verdicts.get(track.path)
            if verdict is None or verdict.track != track or verdict.dropped:
                return
            self._verdicts[track.path] = replace(verdict, dropped=True)
            before = self._publish()
        log.warning(
            "library.track_dropped",
            path=printable(str(track.path)),
            reason=reason,
            tracks=len(self._tracks),
        )
        self._log_change(before)

    def rescan(self) -> int:
        """Bring the tracks up to date with the folder; blocking, so run it off the event loop.

        Returns:
            How many files are not playable.
        """
        if not self.root.is_dir():
            # Unmounted, or renamed away: nothing plays, but what was judged is kept, so
            # the folder's return costs a stat per file and logs no skipped file twice.
            with self._lock:
                self._missing = True
                before = self._publish()
            self._log_change(before)
            return sum(1 for verdict in self._verdicts.values() if verdict.track is None)
        with self._lock:
            known = dict(self._verdicts)
        found: dict[Path, _Verdict] = {}
        for path, refused in _walk(self.root):
            signature = _signature(path)
            old = known.get(path)
            if old is not None and old.signature == signature:
                found[path] = old
            else:
                found[path] = _Verdict(signature, self._judge(path, refused))
        with self._lock:
            for path, verdict in self._verdicts.items():
                # A drop that came in while this scan ran holds, unless the file changed.
                if verdict.dropped and found.get(path, verdict).signature == verdict.signature:
                    found[path] = verdict
            self._verdicts = found
            self._missing = False
            before = self._publish()
        if self._scanned:
            self._log_change(before)
        self._scanned = True  # the first scan is logged by `open()` as `library.scanned`
        return sum(1 for verdict in found.values() if verdict.track is None)

    def _judge(self, path: Path, refused: str | None) -> Track | None:
        try:
            if refused is not None:
                raise Unplayable(refused)
            return probe_file(path, self.root)
        except Unplayable as exc:
            log.warning("library.skipped", path=printable(str(path)), reason=str(exc))
            return None

    def _publish(self) -> tuple[Track, ...]:
        """Recompute the tracks (under the lock); a new tuple only if they changed. Returns
        the tracks before."""
        before = self._tracks
        tracks = tuple(
            v.track for v in self._verdicts.values() if v.track is not None and not v.dropped
        )
        if self._missing:
            tracks = ()
        if tracks != before:
            self._tracks = tracks
        return before

    def _log_change(self, before: tuple[Track, ...]) -> None:
        after = self._tracks
        if after is before:
            return
        if before and not after:
            # Sessions play silence (`mixer.fallback_silence`) and pick music again once
            # a rescan finds some.
            reason = "no playable files" if self.root.is_dir() else "folder missing"
            log.error("library.empty", path=printable(str(self.root)), reason=reason)
        elif after and not before:
            log.info("library.recovered", path=printable(str(self.root)), tracks=len(after))
        else:
            gone, kept = set(before) - set(after), set(after) - set(before)
            log.info("library.changed", tracks=len(after), added=len(kept), removed=len(gone))


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def probe_file(path: Path, root: Path) -> Track:
    """Judge one file under `root`: its Track if it plays, else `Unplayable` with the reason.

    Never blocks on what is not a regular file and raises nothing else, so a rescan of a
    live folder can call it on any path it finds.
    """
    size = _regular_file_size(path)
    if size == 0:
        raise Unplayable("empty file (0 bytes)")
    try:
        duration, tags, picture = _probe_audio(path)
    except Unplayable:
        raise
    except Exception as exc:  # a file must never stop a scan, whatever PyAV raises
        raise Unplayable(f"cannot decode ({type(exc).__name__}: {exc})") from None
    relative = os.fsencode(path.relative_to(root))
    return Track(
        path=path,
        track_id=hashlib.sha1(relative).hexdigest()[:12],
        title=tags.get("title") or printable(path.stem),
        artist=tags.get("artist") or UNKNOWN_ARTIST,
        album=tags.get("album") or "",
        duration=duration,
        replaygain=tagged_loudness(tags),
        has_cover=picture or has_folder_cover(path),
    )


def printable(name: str) -> str:
    """`name` with undecodable bytes shown as U+FFFD.

    Linux file names are bytes; one written in Latin-1 reaches Python with surrogate escapes,
    which open fine but cannot be encoded as UTF-8 (JSON logs, SSE, the page).
    """
    return os.fsencode(name).decode("utf-8", "replace")


def _walk(root: Path) -> Iterator[tuple[Path, str | None]]:
    """Each file under `root` to probe, with None; or a path refused outright, with why.

    Entries are sorted by name, each folder's files before its subfolders. Folders are known
    by device and inode, so a link back up the tree is refused rather than followed forever,
    and a folder linked twice is scanned once.
    """
    seen: set[tuple[int, int]] = set()

    def walk(folder: Path, above: frozenset[tuple[int, int]]) -> Iterator[tuple[Path, str | None]]:
        try:
            info = folder.stat()
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            yield folder, f"cannot read folder ({exc.strerror or exc})"
            return
        here = (info.st_dev, info.st_ino)
        if here in above:
            yield folder, "symlink loop: links to a folder above it"
            return
        if here in seen:
            yield folder, "folder already scanned through another link"
            return
        seen.add(here)
        folders: list[Path] = []
        for entry in entries:
            if entry.name.startswith(".") or entry.name == MANIFEST_NAME:
                continue
            if _is_folder(entry):
                folders.append(Path(entry.path))
            else:
                yield Path(entry.path), None
        for sub in folders:
            yield from walk(sub, above | {here})

    return walk(root, frozenset())


def _is_folder(entry: os.DirEntry[str]) -> bool:
    """Whether `entry` is a folder or links to one. A link that loops or dangles is not: it
    is judged as a file, which gives it a reason. (`is_dir` answers False for a dangling
    link but raises on a loop.)"""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _regular_file_size(path: Path) -> int:
    """The size of the regular file at `path` (links followed), or why there is none to read."""
    try:
        info = path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Unplayable("symlink loop") from None
        if exc.errno == errno.ENOENT and path.is_symlink():
            raise Unplayable("dangling symlink: its target does not exist") from None
        raise Unplayable(f"cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise Unplayable("a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        # Opening a FIFO blocks until something writes to it: never, at start-up.
        kind = _NOT_REGULAR.get(stat.S_IFMT(info.st_mode), "unknown type")
        raise Unplayable(f"not a regular file ({kind})")
    return info.st_size


def _probe_audio(path: Path) -> tuple[float, dict[str, str], bool]:
    """Duration, tags and whether it embeds a picture, of a file that makes a sound to its
    end; else `Unplayable`."""
    try:
        # Tags in a legacy 8-bit encoding must not cost the user the whole file.
        with av.open(str(path), metadata_errors="replace") as container:
            if not container.streams.audio:
                raise Unplayable("no audio stream")
            stream = container.streams.audio[0]
            packets = container.demux(stream)
            decoded = _decode_until_sound(packets)
            duration = _declared_duration(container, stream)
            if duration is None:
                # Some muxers (live Matroska, piped Ogg) never write a length: decode it all.
                decoded += sum(frame.samples for packet in packets for frame in packet.decode())
                duration = decoded / stream.codec_context.sample_rate
            else:
                _check_tail(container, stream, duration)
            tags = _tags(container, stream)
            picture = embedded_picture_stream(container) is not None
    # PyAV's I/O errors are also OSErrors, so this order tells "cannot read" from "not audio".
    except OSError as exc:
        raise Unplayable(f"cannot read ({exc.strerror or exc})") from None
    except av.FFmpegError as exc:
        raise Unplayable(f"cannot decode ({exc.strerror or exc})") from None
    if duration <= 0:
        raise Unplayable("no audio (zero duration)")
    return duration, tags, picture


def _tags(container: InputContainer, stream: AudioStream) -> dict[str, str]:
    """Container and stream tags merged, keys lower-cased: Ogg keeps its tags on the stream,
    and Vorbis-comment keys arrive in whatever case the tagger wrote."""
    merged: dict[str, str] = {}
    for source in (stream.metadata, container.metadata):
        for key, value in source.items():
            if value.strip():
                merged.setdefault(key.lower(), value.strip())
    return merged


def _decode_until_sound(packets: Iterator[av.Packet]) -> int:
    """Samples decoded up to and including the first audible one.

    Raises `Unplayable` when no audio decodes at the start, or when the whole file is
    quieter than the mixer's silence threshold: the mixer trims silence from both ends, so
    such a file would leave nothing to play and fail on air as "no audible audio". Music
    makes a sound within its first frame, so the check costs one frame; only a file that
    stays silent is decoded further, to its end if need be (~1,400x realtime), since silence
    at the start and near the end proves nothing (a hidden track after a long gap).
    """
    resampler = av.AudioResampler(format="fltp")  # any sample format, as floats
    decoded = 0
    for index, packet in enumerate(packets):
        for frame in packet.decode():
            decoded += frame.samples
            if any(_audible(out) for out in resampler.resample(frame)):
                return decoded
        if not decoded and index >= START_PACKETS:
            break
    if not decoded:
        raise Unplayable("no decodable audio at the start")
    if any(_audible(out) for out in resampler.resample(None)):
        return decoded
    raise Unplayable(f"silent: no sound above {_dbfs(SILENCE_THRESHOLD)} dBFS")


def _audible(frame: av.AudioFrame) -> bool:
    return bool(np.abs(frame.to_ndarray()).max(initial=0.0) > SILENCE_THRESHOLD)


def _dbfs(level: float) -> int:
    return round(20 * np.log10(level))


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
    try:
        container.seek(int(target * av.time_base), any_frame=False)
        for packet in container.demux(stream):
            for frame in packet.decode():
                # No timestamp means no position to judge; decoding after the seek is enough.
                if frame.samples and (frame.time is None or frame.time >= target - TAIL_SECONDS):
                    return
    except av.FFmpegError as exc:
        raise Unplayable(f"truncated or corrupt: {exc.strerror or exc} near its end") from None
    raise Unplayable(f"truncated or corrupt: no audio near its end ({duration:.1f} s)")
