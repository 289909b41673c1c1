"""Generate the built-in demo library.

A fresh install should play music before the user points radiod at a folder, and the tests
need real, varied audio in every container radiod supports. So radiod composes its own: six
short pieces synthesized with numpy (chords, bassline, melody and drums from a fixed seed)
and encoded with PyAV to MP3, FLAC and Ogg/Opus; the MP3 and FLAC ones embed a generated
cover picture (demo_art.py).

Neighbouring tracks are kept spectrally far apart (a bright, hi-hat-driven track always
sits next to a dark, low one, in keys far apart on the circle of fifths) because tests find
track boundaries in the mixed stream from the spectrum alone. The two FLAC tracks carry
0.3 s of exact digital silence at both ends so the mixer's silence trimming has a fixture;
every other edge starts and ends on sound.

Generation is deterministic (bit-exact muxing, seeded noise) and idempotent: a
`manifest.json` written last records what a complete set looks like.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np
import structlog

from radiod.demo_art import COVER_CONTAINERS, attach_cover, cover_png
from radiod.demo_score import TRACKS, TrackSpec, Voice

log = structlog.get_logger(__name__)

# Bump when the music or the encoding changes, so cached libraries are regenerated.
GENERATOR_VERSION = 2  # 2: cover art on the MP3 and FLAC tracks
MANIFEST_NAME = "manifest.json"
ALBUM = "radiod demo"

FADE_SECONDS = 0.02  # long enough to avoid a click, short enough to count as "starts on sound"
EDGE_SILENCE_SECONDS = 0.3
PEAK = 0.8  # headroom for lossy codecs, whose decoded waveform overshoots the input peak
FRAME_SAMPLES = 4096


def default_demo_dir() -> Path:
    """Where the demo library is cached: `$XDG_CACHE_HOME/radiod/demo` or `~/.cache/radiod/demo`."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    cache = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return cache / "radiod" / "demo"


def generate_demo_library(dest: Path, *, seconds: float | None = None) -> list[Path]:
    """Write the demo tracks into `dest` (or find them already there) and return their paths.

    Args:
        dest: folder to write into; created if missing.
        seconds: length of every track; None keeps each track's own length (20-32 s).
            Must be at least 1 s so the padded tracks still hold music between their silences.
    """
    if seconds is not None and seconds < 1.0:
        raise ValueError(f"seconds = {seconds}: expected at least 1.0")
    dest.mkdir(parents=True, exist_ok=True)
    paths = [dest / (spec.stem + spec.encoding.suffix) for spec in TRACKS]
    if _is_complete(dest, paths, seconds):
        log.debug("demo.reused", count=len(paths), dest=str(dest))
        return paths

    started = time.perf_counter()
    # Drop the manifest first: until the new one is written, the folder is not complete.
    (dest / MANIFEST_NAME).unlink(missing_ok=True)
    for spec, path in zip(TRACKS, paths, strict=True):
        length = spec.seconds if seconds is None else seconds
        with _replacing(path) as tmp:
            _encode(tmp, spec, _render(spec, length))
    manifest = json.dumps(_manifest(paths, seconds), indent=2, ensure_ascii=False)
    with _replacing(dest / MANIFEST_NAME) as tmp:
        tmp.write_text(manifest + "\n", encoding="utf-8")
    elapsed = round(time.perf_counter() - started, 2)
    log.info("demo.generated", count=len(paths), elapsed=elapsed, dest=str(dest))
    return paths


def _manifest(paths: list[Path], seconds: float | None) -> dict[str, object]:
    return {
        "generator": __name__,
        "version": GENERATOR_VERSION,
        "seconds": seconds,
        "files": [{"name": p.name, "bytes": p.stat().st_size} for p in paths],
    }


def _is_complete(dest: Path, paths: list[Path], seconds: float | None) -> bool:
    """True when `dest` holds exactly what this version would write, byte counts included."""
    try:
        recorded = json.loads((dest / MANIFEST_NAME).read_text(encoding="utf-8"))
        return recorded == _manifest(paths, seconds)
    except (OSError, ValueError):
        return False


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary path renamed onto `path` when the block succeeds, so a crash never leaves a
    plausible half file.

    The temporary name is a dotfile (the library scan ignores those) carrying our pid, so
    two processes generating into the same folder never write the same file.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _encode(path: Path, spec: TrackSpec, audio: np.ndarray) -> None:
    enc = spec.encoding
    # bitexact: the Ogg muxer otherwise picks a random stream serial, so bytes differ per run.
    with av.open(
        str(path), "w", format=enc.container, container_options={"fflags": "+bitexact"}
    ) as container:
        # Ogg/Opus moves these into the stream's OpusTags; readers must check both places.
        container.metadata.update({"title": spec.title, "artist": spec.artist, "album": ALBUM})
        stream = container.add_stream(enc.codec, rate=enc.rate, layout="stereo")
        if enc.bit_rate is not None:
            stream.bit_rate = enc.bit_rate
        if enc.container in COVER_CONTAINERS:
            attach_cover(container, cover_png(spec.seed))
        for frame in _frames(audio, enc.rate):
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _frames(audio: np.ndarray, rate: int) -> Iterator[av.AudioFrame]:
    for start in range(0, audio.shape[1], FRAME_SAMPLES):
        chunk = np.ascontiguousarray(audio[:, start : start + FRAME_SAMPLES])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
        frame.sample_rate = rate
        yield frame


# --- synthesis --------------------------------------------------------------------------


def _render(spec: TrackSpec, seconds: float) -> np.ndarray:
    """The whole track as float32 stereo, shape (2, samples), exactly `seconds` long."""
    rate = spec.encoding.rate
    total = round(seconds * rate)
    edge = round(EDGE_SILENCE_SECONDS * rate) if spec.edge_silence else 0
    music = _compose(spec, total - 2 * edge, rate)
    fade = np.linspace(0.0, 1.0, round(FADE_SECONDS * rate), dtype=np.float32)
    music[:, : fade.size] *= fade
    music[:, music.shape[1] - fade.size :] *= fade[::-1]
    out = np.zeros((2, total), dtype=np.float32)
    out[:, edge : edge + music.shape[1]] = music
    return out


class _Part:
    """One instrument's mono line. Identical notes are synthesized once: pads and bass repeat."""

    def __init__(self, voice: Voice, rate: int, length: int) -> None:
        self.voice = voice
        self.rate = rate
        self.buffer = np.zeros(length, dtype=np.float32)
        self._notes: dict[tuple[int, int], np.ndarray] = {}

    def play(self, start: float, seconds: float, midi: int, velocity: float = 1.0) -> None:
        key = (midi, round(seconds * self.rate))
        if key not in self._notes:
            self._notes[key] = _note(self.voice, _hz(midi), key[1], self.rate)
        _mix_at(self.buffer, round(start * self.rate), velocity * self._notes[key])


def _note(voice: Voice, hz: float, hold: int, rate: int) -> np.ndarray:
    release = round(voice.release * rate)
    t = np.arange(hold + release, dtype=np.float32) / rate
    wave = np.zeros_like(t)
    for ratio, amp in voice.partials:
        if hz * ratio < 0.45 * rate:  # above that it would alias
            partial = amp * np.sin(np.float32(2 * math.pi * hz * ratio) * t)
            if voice.damping:
                partial *= np.exp(np.float32(-voice.damping * ratio) * t)
            wave += partial
    envelope = np.minimum(1.0, t / voice.attack) if voice.attack else np.ones_like(t)
    if voice.decay:
        envelope *= np.exp(-t / np.float32(voice.decay))
    envelope[hold:] *= np.linspace(1.0, 0.0, release, dtype=np.float32)
    peak = sum(amp for _, amp in voice.partials)
    return (wave * envelope / peak).astype(np.float32)


def _mix_at(buffer: np.ndarray, start: int, sound: np.ndarray) -> None:
    end = min(buffer.size, start + sound.size)
    if start < end:
        buffer[start:end] += sound[: end - start]


def _hz(midi: int) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12)


def _pitch(spec: TrackSpec, degree: int, octave: int = 0) -> int:
    """MIDI note of a scale degree (any integer; 7 is the tonic an octave up)."""
    octaves, step = divmod(degree, len(spec.scale))
    return spec.tonic + octave + 12 * octaves + spec.scale[step]


def _hits(pattern: str) -> Iterator[tuple[int, str, int]]:
    """(step, symbol, steps until the next hit or the bar's end) for each non-rest step."""
    steps = [i for i, c in enumerate(pattern) if c != "."]
    for i, step in enumerate(steps):
        following = steps[i + 1] if i + 1 < len(steps) else len(pattern)
        yield step, pattern[step], following - step


def _compose(spec: TrackSpec, length: int, rate: int) -> np.ndarray:
    """Score and mix one track: a chord per bar, bassline, melody and drums, looped to `length`."""
    rng = np.random.default_rng(spec.seed)
    step = 60.0 / spec.bpm / 4
    bar_steps = len(spec.kick)
    bars = math.ceil(length / rate / (step * bar_steps))
    lead, pad, bass = (_Part(v, rate, length) for v in (spec.lead, spec.pad, spec.bass))
    drums = np.zeros(length, dtype=np.float32)
    kit = _kit(rate, rng, bright=spec.bright)
    motifs = (_motif(rng, bar_steps), _motif(rng, bar_steps))

    for bar in range(bars):
        start = bar * bar_steps * step
        degree = spec.progression[bar % len(spec.progression)]
        for at, _, span in _hits(spec.comp):
            for tone in (0, 2, 4):
                pad.play(
                    start + at * step,
                    span * step * 0.95,
                    _pitch(spec, degree + tone, spec.pad_octave),
                )
        for at, symbol, span in _hits(spec.bassline):
            offset = {"R": 0, "F": 4, "O": 7}[symbol]
            bass.play(start + at * step, span * step * 0.9, _pitch(spec, degree + offset))
        # Form: four bars of motif A, four of motif B; each motif spans two bars.
        motif = motifs[(bar // 4) % 2]
        half = bar % 2
        for at, span, offset in motif:
            if at // bar_steps == half:
                at_bar = at - half * bar_steps
                velocity = 1.0 if at_bar == 0 else 0.8
                midi = _pitch(spec, degree + offset, spec.lead_octave)
                lead.play(start + at_bar * step, span * step * 0.9, midi, velocity)
        for name, pattern in (("kick", spec.kick), ("snare", spec.snare), ("hat", spec.hat)):
            for at, symbol, _ in _hits(pattern):
                velocity = 1.0 if symbol == "x" else 0.5
                _mix_at(drums, round((start + at * step) * rate), velocity * kit[name])

    levels = _BRIGHT_LEVELS if spec.bright else _DARK_LEVELS
    lines = {"lead": lead.buffer, "pad": pad.buffer, "bass": bass.buffer, "drums": drums}
    mix = np.zeros((2, length), dtype=np.float32)
    for name, line in lines.items():
        gain, pan = levels[name]
        angle = (pan + 1.0) * math.pi / 4  # constant-power pan
        mix[0] += np.float32(gain * math.cos(angle)) * line
        mix[1] += np.float32(gain * math.sin(angle)) * line
    return mix * np.float32(PEAK / np.abs(mix).max())


# (gain, pan) per part.
_BRIGHT_LEVELS = {"lead": (0.5, 0.3), "pad": (0.25, -0.3), "bass": (0.45, 0.0), "drums": (0.6, 0.0)}
_DARK_LEVELS = {"lead": (0.55, 0.2), "pad": (0.3, -0.2), "bass": (0.6, 0.0), "drums": (0.45, 0.0)}


def _motif(rng: np.random.Generator, bar_steps: int) -> list[tuple[int, int, int]]:
    """A two-bar melody as (step, length in steps, scale degree above the chord root).

    Each beat gets a rhythm cell; pitches walk the scale and land on chord tones on the beat,
    which is what makes a random line sound composed rather than random.
    """
    cells = ((0, 4), (0, 2, 2, 2), (0, 3, 3, 1), (0, 2), (0, 1, 1, 1, 2, 2))
    notes: list[tuple[int, int, int]] = []
    degree = int(rng.choice((0, 2, 4)))
    for beat in range(2 * bar_steps // 4):
        cell = cells[0] if beat == 0 else cells[int(rng.integers(len(cells)))]
        for at, span in zip(cell[::2], cell[1::2], strict=True):
            degree = int(np.clip(degree + rng.choice((-2, -1, 1, 1, 2)), -2, 9))
            if at == 0:
                degree = min((0, 2, 4, 7, 9), key=lambda tone: abs(tone - degree))
            notes.append((beat * 4 + at, span, degree))
    return notes


def _kit(rate: int, rng: np.random.Generator, *, bright: bool) -> dict[str, np.ndarray]:
    """One-shot drum samples. The dark kit swaps the snare's crack for a low-passed brush."""

    def seconds(s: float) -> np.ndarray:
        return np.arange(round(s * rate), dtype=np.float32) / rate

    t = seconds(0.35)
    sweep = 45.0 + 110.0 * np.exp(-t / 0.04)  # the pitch drop is what makes a sine a kick
    kick = np.sin(2 * np.pi * np.cumsum(sweep) / rate) * np.exp(-t / 0.12)

    t = seconds(0.2)
    noise = rng.standard_normal(t.size).astype(np.float32)
    if bright:
        crack = np.diff(noise, prepend=0.0) * 0.5  # first difference: a cheap high-pass
        snare = (crack + 0.6 * np.sin(2 * np.pi * 190.0 * t)) * np.exp(-t / 0.06)
    else:
        brush = np.convolve(noise, np.full(24, 1 / 24, dtype=np.float32), mode="same")
        snare = brush * 4.0 * np.exp(-t / 0.09)

    t = seconds(0.06)
    hiss = np.diff(rng.standard_normal(t.size + 2).astype(np.float32), n=2) / 4
    hat = hiss * np.exp(-t / 0.015)

    # A softer kick in the bright kit keeps its low end from pulling the spectrum down.
    kit = {"kick": kick * (0.6 if bright else 1.0), "snare": snare * 0.7, "hat": hat * 0.6}
    return {name: sound.astype(np.float32) for name, sound in kit.items()}
