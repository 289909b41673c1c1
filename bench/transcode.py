"""CPU cost of one session's audio pipeline, beside the ffmpeg CLI doing the same transcode.

    python bench/transcode.py [--codec mp3|opus|aac] [--seconds N] [--library DIR]
                              [--bundled-lame] [--repeat N]

Runs radiod's mixer pipeline unpaced (decode → resample → trim → crossfade → encode, the
exact generator the mixer thread drives) over one round of the demo library, and the
`ffmpeg` CLI decoding the same files, concatenating them and encoding to the same codec,
bitrate, rate and channels. Prints CPU seconds (user + system, ffmpeg's via
RUSAGE_CHILDREN) per hour of audio for both, and their ratio (goal: <= 1.15).

MP3 is encoded with the system's libmp3lame (as radiod does after `prefer_system_lame()`,
and as Debian's ffmpeg does); `--bundled-lame` measures the copy inside PyAV's wheel.
Runs alternate between the two sides and the fastest of each counts, so a busy machine
skews both alike.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from radiod.audio import SYSTEM_LAME_ENV, prefer_system_lame
from radiod.config import AudioConfig

if TYPE_CHECKING:
    from radiod.library import Track

GOAL_RATIO = 1.15
FFMPEG_CODECS = {"mp3": ("libmp3lame", "mp3"), "opus": ("libopus", "ogg"), "aac": ("aac", "adts")}


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def bench_radiod(tracks: list[Track], audio: AudioConfig) -> tuple[float, float]:
    """(CPU seconds, stream seconds) for one round of the playlist through `mix()`."""
    from radiod.audio.mixer import mix  # after prefer_system_lame(): imports PyAV
    from radiod.audio.ring import Chunk

    target = sum(t.duration for t in tracks) - audio.crossfade_seconds * len(tracks)
    before = cpu_seconds(resource.RUSAGE_SELF)
    produced = 0.0
    for item in mix(tracks, audio, seed=0):
        if isinstance(item, Chunk):
            produced = item.end_time
            if produced >= target:
                break
    return cpu_seconds(resource.RUSAGE_SELF) - before, produced


def bench_ffmpeg(ffmpeg: str, tracks: list[Track], audio: AudioConfig) -> tuple[float, float]:
    """(CPU seconds, audio seconds) for the ffmpeg CLI transcoding the files, concatenated."""
    from radiod.audio.encode import LAME_COMPRESSION_LEVEL

    codec, muxer = FFMPEG_CODECS[audio.codec]
    extra = ["-compression_level", str(LAME_COMPRESSION_LEVEL)] if audio.codec == "mp3" else []
    layout = "mono" if audio.channels == 1 else "stereo"
    inputs: list[str] = []
    filters: list[str] = []
    for index, track in enumerate(tracks):
        inputs += ["-i", str(track.path)]
        filters.append(
            f"[{index}:a]aresample={audio.sample_rate},aformat=channel_layouts={layout}[a{index}]"
        )
    joined = "".join(f"[a{i}]" for i in range(len(tracks)))
    graph = ";".join(filters) + f";{joined}concat=n={len(tracks)}:v=0:a=1[out]"
    command = [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", *inputs,
        "-filter_complex", graph, "-map", "[out]",
        "-c:a", codec, "-b:a", f"{audio.bitrate}k", *extra,
        "-ar", str(audio.sample_rate), "-f", muxer, "-y", "/dev/null",
    ]  # fmt: skip
    before = cpu_seconds(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True)
    return cpu_seconds(resource.RUSAGE_CHILDREN) - before, sum(t.duration for t in tracks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codec", choices=sorted(FFMPEG_CODECS), default="mp3")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each demo track")
    parser.add_argument("--library", type=Path, help="use this music folder instead of the demo")
    parser.add_argument("--bitrate", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the fastest counts")
    parser.add_argument("--bundled-lame", action="store_true", help="use PyAV's own libmp3lame")
    args = parser.parse_args(argv)

    if args.bundled_lame:
        os.environ[SYSTEM_LAME_ENV] = "0"
    lame = prefer_system_lame()
    from radiod.demo import generate_demo_library  # PyAV is imported from here on
    from radiod.library import scan_library

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    rate = 48000 if args.codec == "opus" else 44100
    audio = AudioConfig(codec=args.codec, bitrate=args.bitrate, sample_rate=rate)
    ffmpeg = shutil.which("ffmpeg")
    with tempfile.TemporaryDirectory(prefix="radiod-bench-") as tmp:
        if args.library is None:
            generate_demo_library(Path(tmp), seconds=args.seconds)
            tracks = scan_library(Path(tmp))
        else:
            tracks = scan_library(args.library)
        if not tracks:
            print("no playable tracks", file=sys.stderr)
            return 2
        total = sum(t.duration for t in tracks)
        print(
            f"{len(tracks)} tracks, {total:.0f} s of audio; {args.codec} {args.bitrate} kb/s, "
            f"{rate} Hz, crossfade {audio.crossfade_seconds} s"
        )
        if args.codec == "mp3":
            print(f"libmp3lame: {lame or 'the copy bundled with PyAV'}")

        ours: list[tuple[float, float]] = []
        theirs: list[tuple[float, float]] = []
        for _ in range(args.repeat):
            ours.append(bench_radiod(tracks, audio))
            if ffmpeg is not None:
                theirs.append(bench_ffmpeg(ffmpeg, tracks, audio))

    cpu, seconds = min(ours)
    ours_per_hour = cpu / seconds * 3600
    print(f"radiod mixer: {ours_per_hour:6.1f} CPU s per hour ({seconds / cpu:.0f}x realtime)")
    if ffmpeg is None:
        print("ffmpeg CLI not found; install it to compare: apt-get install -y ffmpeg")
        return 1
    cpu, seconds = min(theirs)
    theirs_per_hour = cpu / seconds * 3600
    print(f"ffmpeg CLI:   {theirs_per_hour:6.1f} CPU s per hour ({seconds / cpu:.0f}x realtime)")
    ratio = ours_per_hour / theirs_per_hour
    verdict = "ok" if ratio <= GOAL_RATIO else "over the goal"
    print(f"ratio radiod/ffmpeg: {ratio:.2f} (goal <= {GOAL_RATIO}: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
