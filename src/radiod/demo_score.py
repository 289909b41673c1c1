"""The demo library's score: instrument voices and the six tracks, as data.

Kept apart from the generator (`demo.py`) because it is a table, not logic: changing a melody
or a key is an edit here (and a bump of `demo.GENERATOR_VERSION`), never a change to how
tracks are rendered or encoded.
"""

from __future__ import annotations

from dataclasses import dataclass

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)


@dataclass(frozen=True, slots=True)
class Encoding:
    """How one file is written: container, codec and the codec's native sample rate."""

    container: str
    codec: str
    rate: int
    suffix: str
    bit_rate: int | None


MP3 = Encoding("mp3", "libmp3lame", 44100, ".mp3", 192_000)
FLAC = Encoding("flac", "flac", 44100, ".flac", None)
OPUS = Encoding("ogg", "libopus", 48000, ".opus", 128_000)  # Opus only runs at 48 kHz


@dataclass(frozen=True, slots=True)
class Voice:
    """An additive instrument.

    Args:
        partials: (frequency ratio, amplitude) pairs; the timbre.
        attack: seconds from silence to full level.
        decay: seconds for the body to fall to 1/e; 0 holds the level (organ, pad).
        damping: extra decay per unit of frequency ratio: plucked strings lose their top first.
        release: seconds of fade after the note ends.
    """

    partials: tuple[tuple[float, float], ...]
    attack: float = 0.005
    decay: float = 0.0
    damping: float = 0.0
    release: float = 0.05


def _harmonics(count: int, *, step: int = 1, power: float = 1.0) -> tuple[tuple[float, float], ...]:
    return tuple((float(k), 1.0 / k**power) for k in range(1, count + 1, step))


SQUARE_LEAD = Voice(_harmonics(15, step=2), release=0.04)
SAW_LEAD = Voice(_harmonics(14), decay=0.9, release=0.06)
BELL_LEAD = Voice(((1, 1.0), (2, 0.6), (3, 0.45), (4, 0.35), (6, 0.3), (8, 0.2)), decay=0.5)
SAW_CHORDS = Voice(_harmonics(10), attack=0.01, decay=0.35, release=0.04)
ORGAN = Voice(((1, 1.0), (2, 0.8), (3, 0.6), (4, 0.5), (6, 0.4), (8, 0.35)), release=0.03)
PICK_BASS = Voice(_harmonics(8), decay=0.4, damping=1.5)
EPIANO = Voice(((1, 1.0), (2, 0.22), (3, 0.05)), decay=1.4, release=0.12)
WARM_PAD = Voice(((1, 1.0), (2, 0.18), (3, 0.06)), attack=0.03, release=0.25)
PLUCK = Voice(_harmonics(6), decay=0.7, damping=4.0, release=0.08)
SOFT_LEAD = Voice(_harmonics(5, step=2, power=2.0), attack=0.02, release=0.1)
SUB_BASS = Voice(((1, 1.0), (2, 0.25)), release=0.06)


@dataclass(frozen=True, slots=True)
class TrackSpec:
    """One demo track: tags, encoding and the score, as one row of a table.

    Patterns are one character per 16th-note step of a bar ('x' hit, 'o' soft hit, '.' rest;
    the bassline uses 'R' root, 'F' fifth, 'O' octave). A pattern's length is the bar length.
    """

    stem: str
    title: str
    artist: str
    encoding: Encoding
    seconds: float
    tonic: int  # MIDI note of the key's root in the bass register
    scale: tuple[int, ...]
    bpm: float
    progression: tuple[int, ...]  # scale degree of each bar's chord
    lead: Voice
    lead_octave: int  # semitones above the tonic where the melody sits
    pad: Voice
    pad_octave: int
    comp: str
    bass: Voice
    bassline: str
    kick: str
    snare: str
    hat: str
    bright: bool  # bright kit (noise snare, hats) or dark kit (brush)
    edge_silence: bool
    seed: int

    def __post_init__(self) -> None:
        patterns = (self.comp, self.bassline, self.kick, self.snare, self.hat)
        if len({len(p) for p in patterns}) != 1:
            raise ValueError(f"{self.stem}: patterns must all be one bar long")


# Order matters: bright and dark alternate, and neighbours' keys are 3-6 steps apart on the
# circle of fifths, so any two adjacent tracks differ in both register and pitch classes.
TRACKS: tuple[TrackSpec, ...] = (
    TrackSpec(
        stem="01-morning-signal",
        title="Morning Signal",
        artist="The Test Pattern",
        encoding=MP3,
        seconds=24.0,
        tonic=48,  # C major
        scale=MAJOR,
        bpm=118,
        progression=(0, 4, 5, 3),
        lead=SQUARE_LEAD,
        lead_octave=24,
        pad=SAW_CHORDS,
        pad_octave=12,
        comp="x.....x.....x...",
        bass=PICK_BASS,
        bassline="R.....R.F...O...",
        kick="x.......x.......",
        snare="....x.......x...",
        hat="xxxxxxxxxxxxxxxx",
        bright=True,
        edge_silence=False,
        seed=1,
    ),
    TrackSpec(
        stem="02-cafe-nocturne",
        title="Café Nocturne",
        artist="Lumière Trio",
        encoding=FLAC,
        seconds=26.0,
        tonic=39,  # E-flat minor, a waltz
        scale=MINOR,
        bpm=96,
        progression=(0, 5, 3, 4),
        lead=EPIANO,
        lead_octave=12,
        pad=WARM_PAD,
        pad_octave=0,
        comp="x...........",
        bass=SUB_BASS,
        bassline="R...F...F...",
        kick="x...........",
        snare="....o...o...",
        hat="............",
        bright=False,
        edge_silence=True,
        seed=2,
    ),
    TrackSpec(
        stem="03-dont-stop",
        title="Don't Stop",
        artist="Static & the Carriers",
        encoding=OPUS,
        seconds=22.0,
        tonic=45,  # A major
        scale=MAJOR,
        bpm=132,
        progression=(0, 5, 3, 4),
        lead=SAW_LEAD,
        lead_octave=24,
        pad=ORGAN,
        pad_octave=12,
        comp="..x...x...x...x.",
        bass=PICK_BASS,
        bassline="R.R.O.R.R.R.O.F.",
        kick="x...x...x...x...",
        snare="....x.......x..o",
        hat="x.x.x.x.x.x.x.x.",
        bright=True,
        edge_silence=False,
        seed=3,
    ),
    TrackSpec(
        stem="04-low-tide",
        title="Low Tide",
        artist="Harbour Lights",
        encoding=MP3,
        seconds=28.0,
        tonic=44,  # A-flat major
        scale=MAJOR,
        bpm=78,
        progression=(0, 3, 5, 4),
        lead=PLUCK,
        lead_octave=12,
        pad=WARM_PAD,
        pad_octave=0,
        comp="x.......x.......",
        bass=SUB_BASS,
        bassline="R.......F.....R.",
        kick="x.........x.....",
        snare="........o.......",
        hat="................",
        bright=False,
        edge_silence=False,
        seed=4,
    ),
    TrackSpec(
        stem="05-neon-arcade",
        title="Neon Arcade",
        artist="Kilohertz Club",
        encoding=FLAC,
        seconds=20.0,
        tonic=50,  # D major
        scale=MAJOR,
        bpm=140,
        progression=(0, 3, 0, 4),
        lead=BELL_LEAD,
        lead_octave=24,
        pad=SAW_CHORDS,
        pad_octave=12,
        comp="x..x..x...x..x..",
        bass=PICK_BASS,
        bassline="R..R..O.R..R..F.",
        kick="x..x......x.....",
        snare="....x.......x...",
        hat="xxx.xxx.xxx.xxx.",
        bright=True,
        edge_silence=True,
        seed=5,
    ),
    TrackSpec(
        stem="06-slow-orbit",
        title="Slow Orbit",
        artist="Mira & the Satellites",
        encoding=OPUS,
        seconds=32.0,
        tonic=46,  # B-flat minor
        scale=MINOR,
        bpm=70,
        progression=(0, 5, 6, 4),
        lead=SOFT_LEAD,
        lead_octave=12,
        pad=WARM_PAD,
        pad_octave=0,
        comp="x...............",
        bass=SUB_BASS,
        bassline="R.......R...F...",
        kick="x.......x.......",
        snare="....o.......o...",
        hat="................",
        bright=False,
        edge_silence=False,
        seed=6,
    ),
)
