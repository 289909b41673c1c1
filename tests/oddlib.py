"""A music folder holding what real ones hold, generated at test time (no binaries committed).

Real folders are not the demo: jingles shorter than a crossfade, a sound effect shorter than
one codec frame, a file of pure silence, every sample rate and channel count, tags in any
script and of any length, cover art bigger than the audio, and the debris of downloads and
file managers (empty, truncated and misnamed files, FIFOs, broken links, odd permissions).
`generate_odd_library` writes one of each and says what the scan must make of it.

PyAV writes most files in-process; the `ffmpeg` CLI writes what PyAV's bundled FFmpeg
cannot (libvorbis) or what is simplest there (VBR with a Xing header, attached pictures),
in parallel with the rest.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

FFMPEG = "/usr/bin/ffmpeg"

CJK = {"title": "夜空ノムコウ 안녕 你好世界", "artist": "周杰倫", "album": "東京 2024"}
ARABIC = {"title": "أغنية الليل", "artist": "فيروز", "album": "بيروت"}
CYRILLIC = {"title": "Звезда по имени Солнце", "artist": "Кино", "album": "Группа крови"}
EMOJI = {"title": "🎵 Fire 🔥 and 🌊", "artist": "👩‍🎤 Band", "album": "😀"}
QUOTES = {
    "title": 'He said "don\'t stop"\nthen left\r\n\tfor good',
    "artist": 'O\'Brien & "The Quotes"',
    "album": "line one\nline two",
}
LONG = {"title": "Long " + "x" * 1995, "artist": "Ä" * 2000, "album": "a" * 2000}


@dataclass(frozen=True, slots=True)
class OddFile:
    """One entry of the library and what the scan must make of it.

    Attributes:
        name: path relative to the library root.
        kind: what it stands for, in words.
        plays: whether the scan keeps it.
        why: for a skipped file, a phrase the logged reason must contain.
        tags: for a playable file, the title, artist and album the scan must report.
    """

    name: str
    kind: str
    plays: bool
    why: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OddLibrary:
    """The folder, every file in it, and the folders named like files (neither kept nor logged)."""

    root: Path
    files: tuple[OddFile, ...]
    ignored: tuple[str, ...]

    @property
    def playable(self) -> list[OddFile]:
        return [f for f in self.files if f.plays]

    @property
    def skipped(self) -> list[OddFile]:
        return [f for f in self.files if not f.plays]


def sound(seconds: float, rate: int, channels: int = 2, *, seed: int = 0) -> np.ndarray:
    """Audible float32 audio, shape (channels, n): a two-tone chord over soft noise, a
    different chord per seed and per channel, with 5 ms fades (none on tiny files)."""
    n = max(1, round(seconds * rate))
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    out = np.empty((channels, n), dtype=np.float32)
    for ch in range(channels):
        low = 110.0 * 2 ** ((seed * 5 + ch * 2) % 24 / 12)
        out[ch] = (
            0.25 * np.sin(2 * np.pi * low * t)
            + 0.15 * np.sin(2 * np.pi * low * 1.5 * t)
            + 0.05 * rng.standard_normal(n)
        )
    fade = min(round(0.005 * rate), n // 4)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        out[:, :fade] *= ramp
        out[:, n - fade :] *= ramp[::-1]
    return out


LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}


def write_audio(
    path: Path,
    audio: np.ndarray,
    rate: int,
    *,
    container: str,
    codec: str,
    tags: Mapping[str, str] | None = None,
    sample_format: str | None = None,
) -> None:
    """Encode float32 `audio` (channels, n) with PyAV; tags on the container."""
    layout = LAYOUTS[audio.shape[0]]
    with av.open(str(path), "w", format=container) as out:
        out.metadata.update(tags or {})
        stream = out.add_stream(codec, rate=rate, layout=layout)
        if sample_format is not None:
            stream.format = sample_format
        for start in range(0, audio.shape[1], 4096):
            block = np.ascontiguousarray(audio[:, start : start + 4096])
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def noise_png(width: int, height: int, *, seed: int = 0) -> bytes:
    """A PNG of random pixels: incompressible, so its size is ~3 bytes a pixel."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "rgb24"
    frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
    return b"".join(bytes(p) for p in [*codec.encode(frame), *codec.encode(None)])


def _metadata_args(tags: Mapping[str, str]) -> list[str]:
    return [arg for key, value in tags.items() for arg in ("-metadata", f"{key}={value}")]


MP3 = {"container": "mp3", "codec": "libmp3lame"}
WAV = {"container": "wav", "codec": "pcm_s16le"}
FLAC = {"container": "flac", "codec": "flac"}
OPUS = {"container": "ogg", "codec": "libopus"}
AAC = {"container": "ipod", "codec": "aac"}
TAGGED = {"title": "Plain", "artist": "Formats", "album": "Containers"}


class _Builder:
    """Writes files under `root` and records what the scan must make of each."""

    def __init__(self, root: Path, scratch: Path) -> None:
        self.root, self.scratch = root, scratch
        self.files: list[OddFile] = []

    def played(self, name: str, kind: str, tags: Mapping[str, str] | None = None) -> None:
        # The scan shows a name that is not UTF-8 with U+FFFD: it must fit JSON.
        stem = os.fsencode(Path(name).stem).decode("utf-8", "replace")
        expected = {"title": stem, "artist": "Unknown artist", "album": ""} | dict(tags or {})
        self.files.append(OddFile(name, kind, True, tags=expected))

    def refused(self, name: str, kind: str, why: str) -> None:
        self.files.append(OddFile(name, kind, False, why=why))

    def tone(
        self, name: str, kind: str, seconds: float, rate: int, seed: int, **options: Any
    ) -> None:
        """A playable file of `sound()`, written with PyAV."""
        channels = options.pop("channels", 2)
        audio = sound(seconds, rate, channels, seed=seed)
        write_audio(self.root / name, audio, rate, **options)
        self.played(name, kind, options.get("tags"))


def generate_odd_library(dest: Path) -> OddLibrary:
    """Write the odd library into `dest/music` (and a linked album into `dest/elsewhere`)."""
    root = dest / "music"
    for folder in ("Jingles", "Formats", "Tags", "Debris"):
        (root / folder).mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="oddlib-") as scratch:
        build = _Builder(root, Path(scratch))
        running = _start_cli_files(build)  # they run while PyAV writes the rest
        _jingles(build)
        _formats(build)
        _tags(build)
        _links(build, dest / "elsewhere")
        _debris(build)
        for name, job in running.items():
            _, err = job.communicate()
            assert job.returncode == 0, f"ffmpeg failed writing {name}: {err.decode()}"
    return OddLibrary(root, tuple(build.files), ignored=("Debris/x.mp3",))


def _start_cli_files(build: _Builder) -> dict[str, subprocess.Popen[bytes]]:
    """What the `ffmpeg` CLI writes: libvorbis, a Xing VBR header, attached pictures."""
    sources = {}
    for seed, seconds in ((20, 6.0), (21, 12.0), (22, 8.0), (23, 5.0)):
        sources[seed] = build.scratch / f"s{seed}.wav"
        write_audio(sources[seed], sound(seconds, 44100, seed=seed), 44100, **WAV)
    big_cover = build.scratch / "cover-2mb.png"
    big_cover.write_bytes(noise_png(840, 840, seed=1))  # 2.1 MB
    small_cover = build.scratch / "cover.png"
    small_cover.write_bytes(noise_png(200, 200, seed=2))
    jobs = {
        "Formats/vbr-xing.mp3": [
            "-i", sources[20], "-c:a", "libmp3lame", "-q:a", "4",
            *_metadata_args({"title": "VBR with Xing"}),
        ],
        "Formats/cover-2mb-apic.mp3": [
            "-i", sources[21], "-i", big_cover, "-map", "0:a", "-map", "1:v",
            "-c:a", "libmp3lame", "-b:a", "128k", "-c:v", "copy", "-id3v2_version", "3",
            "-metadata:s:v", "comment=Cover (front)",
            *_metadata_args({"title": "Big cover", "artist": "APIC", "album": "Art"}),
        ],
        "Formats/cover-picture.flac": [
            "-i", sources[22], "-i", small_cover, "-map", "0:a", "-map", "1:v",
            "-c:a", "flac", "-c:v", "copy", "-disposition:v", "attached_pic",
            *_metadata_args({"title": "FLAC with art", "artist": "Picture"}),
        ],
        "Tags/cyrillic.ogg": [
            "-i", sources[23], "-c:a", "libvorbis", "-q:a", "3", *_metadata_args(CYRILLIC),
        ],
        "Jingles/jingle-1s.ogg": [
            "-f", "lavfi", "-i", "sine=frequency=660:duration=1:sample_rate=44100",
            "-c:a", "libvorbis",
        ],
    }  # fmt: skip
    build.played("Formats/vbr-xing.mp3", "VBR MP3 with a Xing header", {"title": "VBR with Xing"})
    build.played(
        "Formats/cover-2mb-apic.mp3",
        "MP3 with a 2 MB ID3v2 APIC picture",
        {"title": "Big cover", "artist": "APIC", "album": "Art"},
    )
    build.played(
        "Formats/cover-picture.flac",
        "FLAC with an embedded picture",
        {"title": "FLAC with art", "artist": "Picture"},
    )
    build.played("Tags/cyrillic.ogg", "Ogg Vorbis tagged in Cyrillic", CYRILLIC)
    build.played("Jingles/jingle-1s.ogg", "1 s Ogg Vorbis jingle")
    return {
        name: subprocess.Popen(
            [FFMPEG, "-nostdin", "-v", "error", "-y", *map(str, args), str(build.root / name)],
            stderr=subprocess.PIPE,
        )
        for name, args in jobs.items()
    }


def _jingles(build: _Builder) -> None:
    """Shorter than any crossfade; shorter than one codec frame."""
    build.tone("Jingles/jingle-0.3s.mp3", "0.3 s MP3 jingle", 0.3, 44100, 1, **MP3)
    build.tone("Jingles/jingle-3s.opus", "3 s Opus jingle", 3.0, 48000, 2, **OPUS)
    build.tone("Jingles/blip-10-samples.wav", "10 samples of WAV", 10 / 44100, 44100, 3, **WAV)
    build.tone("Jingles/blip-10-samples.mp3", "10 samples of MP3", 10 / 44100, 44100, 4, **MP3)
    # FFmpeg's MP4 edit list keeps none of the 10 samples: nothing decodes, honestly skipped.
    blip = sound(10 / 44100, 44100, seed=5)
    write_audio(build.root / "Jingles/blip-10-samples.m4a", blip, 44100, **AAC)
    build.refused("Jingles/blip-10-samples.m4a", "10 samples of AAC in M4A", "no decodable audio")


def _formats(build: _Builder) -> None:
    """Rates, depths and channel counts; one of each container; no tags at all."""
    build.tone("Formats/mono.mp3", "mono MP3", 4.0, 44100, 6, channels=1, **MP3)
    build.tone("Formats/mono-8khz.wav", "mono 8 kHz WAV", 4.0, 8000, 7, channels=1, **WAV)
    build.tone(
        "Formats/hires-96k-24bit.flac", "96 kHz 24-bit FLAC", 5.0, 96000, 8,
        sample_format="s32", **FLAC,
    )  # fmt: skip
    build.tone("Formats/surround-5.1.m4a", "5.1 AAC in M4A", 6.0, 48000, 9, channels=6, **AAC)
    build.tone("Formats/surround-5.1.flac", "5.1 FLAC", 4.0, 48000, 10, channels=6, **FLAC)
    build.tone("Formats/aac.m4a", "M4A/AAC", 6.0, 44100, 11, tags=TAGGED, **AAC)
    build.tone("Formats/pcm.wav", "WAV", 5.0, 44100, 12, tags=TAGGED, **WAV)
    build.tone("Formats/opus.opus", "Ogg Opus", 8.0, 48000, 13, tags=TAGGED, **OPUS)
    build.tone("Formats/untagged.mp3", "MP3 without tags", 7.0, 44100, 14, **MP3)


def _tags(build: _Builder) -> None:
    """Tags in any script, with quotes and newlines, 2,000 characters long; odd file names."""
    build.tone(
        "Tags/日本の歌.mp3", "MP3 tagged (and named) in CJK", 5.0, 44100, 15, tags=CJK, **MP3
    )
    build.tone("Tags/arabic.m4a", "M4A tagged in Arabic", 5.0, 44100, 16, tags=ARABIC, **AAC)
    build.tone("Tags/emoji.opus", "Opus tagged with emoji", 5.0, 48000, 17, tags=EMOJI, **OPUS)
    build.tone(
        "Tags/quotes.mp3", "MP3 tags with quotes and newlines", 5.0, 44100, 18,
        tags=QUOTES, **MP3,
    )  # fmt: skip
    build.tone(
        "Tags/long.flac", "FLAC tags 2,000 characters long", 5.0, 44100, 19, tags=LONG, **FLAC
    )
    # A name in Latin-1, as old archives unpack: bytes that are not UTF-8.
    latin1 = os.fsdecode(b"Tags/caf\xe9.flac")
    build.tone(latin1, "FLAC named in Latin-1 bytes", 4.0, 44100, 24, **FLAC)


def _links(build: _Builder, elsewhere: Path) -> None:
    """An album linked in from another folder (followed, as a user expects); a linked file."""
    elsewhere.mkdir()
    write_audio(elsewhere / "linked.flac", sound(5.0, 44100, seed=25), 44100, **FLAC)
    (build.root / "Linked album").symlink_to(elsewhere, target_is_directory=True)
    build.played("Linked album/linked.flac", "FLAC in a symlinked folder")
    (build.root / "Formats/link-to-opus.opus").symlink_to("opus.opus")
    build.played("Formats/link-to-opus.opus", "symlink to a file", TAGGED)


def _debris(build: _Builder) -> None:
    """What downloads and file managers leave behind."""
    debris = build.root / "Debris"
    # Mode 000: root reads it anyway, so expect what this process can really do.
    locked = debris / "mode-000.mp3"
    write_audio(locked, sound(4.0, 44100, seed=26), 44100, **MP3)
    locked.chmod(0)
    if os.access(locked, os.R_OK):
        build.played("Debris/mode-000.mp3", "mode 000, readable anyway (running as root)")
    else:
        build.refused("Debris/mode-000.mp3", "mode 000", "Permission denied")
    silence = np.zeros((2, 5 * 44100), dtype=np.float32)
    write_audio(debris / "silence.flac", silence, 44100, **FLAC)
    build.refused("Debris/silence.flac", "5 s of digital silence", "silent")
    (debris / "empty.mp3").write_bytes(b"")
    build.refused("Debris/empty.mp3", "zero-byte file", "empty file")
    for name, seed, options in (("truncated.flac", 27, FLAC), ("truncated.m4a", 28, AAC)):
        whole = build.scratch / name
        write_audio(whole, sound(6.0, 44100, seed=seed), 44100, **options)
        data = whole.read_bytes()
        (debris / name).write_bytes(data[: len(data) // 2])
    build.refused("Debris/truncated.flac", "FLAC cut in half", "truncated")
    build.refused("Debris/truncated.m4a", "M4A cut in half (no moov atom)", "cannot decode")
    (debris / "notes.mp3").write_text("shopping list: eggs, milk\n" * 40)
    build.refused("Debris/notes.mp3", "a text file named .mp3", "cannot decode")
    # Its log line must still be JSON, though its name is not UTF-8.
    latin1 = os.fsdecode(b"Debris/r\xe9sum\xe9.mp3")
    (build.root / latin1).write_text("curriculum vitae\n")
    build.refused(latin1, "a text file named .mp3, in Latin-1 bytes", "cannot decode")
    os.mkfifo(debris / "fifo.mp3")
    build.refused("Debris/fifo.mp3", "a FIFO named .mp3", "FIFO")
    (debris / "loop.mp3").symlink_to("loop.mp3")
    build.refused("Debris/loop.mp3", "a symlink to itself", "symlink loop")
    (debris / "dangling.flac").symlink_to("gone/away.flac")
    build.refused("Debris/dangling.flac", "a symlink to nothing", "dangling symlink")
    (debris / "up").symlink_to("..", target_is_directory=True)
    build.refused("Debris/up", "a folder symlink back up the tree", "symlink loop")
    (debris / "x.mp3").mkdir()  # a folder named like a file: neither played nor reported
