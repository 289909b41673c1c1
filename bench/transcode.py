"""CPU cost of one session's audio pipeline, beside the ffmpeg CLI doing the same transcode.

    python bench/transcode.py [--quick] [--codec mp3|opus|aac ...] [--lengths demo,30,60]
                              [--library DIR] [--mp3-quality N] [--bundled-lame] [--repeat N]

For each codec (MP3, Opus, AAC) and each set of tracks (the demo library at its own track
lengths, and the demo tracks made 30 and 60 s long: per-track work shows on short tracks),
runs radiod's mixer pipeline unpaced (decode → resample → trim → crossfade → encode, the
exact generator the mixer thread drives) over one round of the tracks, and the `ffmpeg` CLI
decoding the same files, concatenating them and encoding to the same codec, bitrate, rate,
channels and LAME level. Prints CPU seconds (user + system, ffmpeg's via RUSAGE_CHILDREN)
per hour of audio for both, and their ratio (goal, issue 11: <= 1.10). `--quick`: one run
of each, demo and 30 s tracks only.

MP3 is encoded with the system's libmp3lame (as radiod does after `prefer_system_lame()`,
and as Debian's ffmpeg does); `--bundled-lame` measures the copy inside PyAV's wheel.
"""

from __future__ import annotations

import argparse
import importlib
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

GOAL_RATIO = 1.10  # issue 11
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
    codec, muxer = FFMPEG_CODECS[audio.codec]
    # The same LAME level as radiod: FFmpeg leaves LAME at its default (3) otherwise.
    extra = ["-compression_level", str(audio.mp3_quality)] if audio.codec == "mp3" else []
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


def _library(root: Path, length: str) -> list[Track]:
    """The demo tracks at their own lengths ("demo") or all `length` seconds long."""
    from radiod.demo import generate_demo_library
    from radiod.library import scan_library

    folder = root / f"library-{length}"
    generate_demo_library(folder, seconds=None if length == "demo" else float(length))
    return scan_library(folder)


def measure(
    tracks: list[Track], audio: AudioConfig, repeat: int, ffmpeg: str | None
) -> tuple[float, float | None]:
    """CPU s per hour of audio of radiod's pipeline and of the ffmpeg CLI (None without it).

    Runs alternate between the two sides and the fastest of each counts, so a busy machine
    skews both alike."""
    ours: list[tuple[float, float]] = []
    theirs: list[tuple[float, float]] = []
    for _ in range(repeat):
        ours.append(bench_radiod(tracks, audio))
        if ffmpeg is not None:
            theirs.append(bench_ffmpeg(ffmpeg, tracks, audio))
    return _per_hour(ours), _per_hour(theirs) if theirs else None


def _per_hour(runs: list[tuple[float, float]]) -> float:
    return min(cpu / seconds * 3600 for cpu, seconds in runs)


def ffmpeg_per_hour(ffmpeg: str, audio: AudioConfig, repeat: int = 1) -> float:
    """The ffmpeg CLI's CPU s per hour of audio on the demo library (bench/sessions.py's
    reference: the machine's bound is cores x 3600 / this)."""
    with tempfile.TemporaryDirectory(prefix="radiod-bench-") as tmp:
        tracks = _library(Path(tmp), "demo")
        return _per_hour([bench_ffmpeg(ffmpeg, tracks, audio) for _ in range(repeat)])


def audio_config(codec: str, bitrate: int, mp3_quality: int) -> AudioConfig:
    rate = 48000 if codec == "opus" else 44100
    return AudioConfig(codec=codec, bitrate=bitrate, sample_rate=rate, mp3_quality=mp3_quality)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codec", choices=sorted(FFMPEG_CODECS), action="append")
    parser.add_argument(
        "--lengths", default="demo,30,60", help="track lengths: 'demo' (20-32 s each) or seconds"
    )
    parser.add_argument("--library", type=Path, help="use this music folder instead of the demo")
    parser.add_argument("--bitrate", type=int, default=128)
    parser.add_argument("--mp3-quality", type=int, default=AudioConfig().mp3_quality)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the fastest counts")
    parser.add_argument("--quick", action="store_true", help="one run each, demo and 30 s only")
    parser.add_argument("--bundled-lame", action="store_true", help="use PyAV's own libmp3lame")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.lengths = 1, "demo,30"

    if args.bundled_lame:
        os.environ[SYSTEM_LAME_ENV] = "0"
    lame = prefer_system_lame()  # before anything imports PyAV
    importlib.import_module("radiod.audio.mixer")  # loaded before anything is timed
    from radiod.library import scan_library

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    ffmpeg = shutil.which("ffmpeg")
    codecs = args.codec or sorted(FFMPEG_CODECS)
    print(f"libmp3lame: {lame or 'the copy bundled with PyAV'}; {args.bitrate} kb/s, "
          f"mp3 quality {args.mp3_quality}; fastest of {args.repeat}")  # fmt: skip
    print(f"{'codec':5}  {'tracks':24}  {'radiod':>8}  {'ffmpeg':>8}  ratio  (CPU s per hour "
          f"of audio; goal ratio <= {GOAL_RATIO})")  # fmt: skip
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="radiod-bench-") as tmp:
        for length in args.lengths.split(",") if args.library is None else ["library"]:
            tracks = scan_library(args.library) if args.library else _library(Path(tmp), length)
            if not tracks:
                print("no playable tracks", file=sys.stderr)
                return 2
            what = f"{length} ({len(tracks)}, {sum(t.duration for t in tracks):.0f} s)"
            for codec in codecs:
                audio = audio_config(codec, args.bitrate, args.mp3_quality)
                ours, theirs = measure(tracks, audio, args.repeat, ffmpeg)
                ratio = ours / theirs if theirs else float("nan")
                worst = max(worst, ratio) if theirs else worst
                print(f"{codec:5}  {what:24}  {ours:8.1f}  {theirs or 0:8.1f}  {ratio:5.2f}",
                      flush=True)  # fmt: skip
    if ffmpeg is None:
        print("ffmpeg CLI not found; install it to compare: apt-get install -y ffmpeg")
        return 1
    verdict = "ok" if worst <= GOAL_RATIO else "over the goal"
    print(f"worst ratio radiod/ffmpeg: {worst:.2f} (goal <= {GOAL_RATIO}: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
