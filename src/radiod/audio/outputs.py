"""What a session's pipeline produces besides PCM: audio chunks, track changes, notices.

Plain values, so they can cross a thread (or later a process) boundary as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from radiod.audio.ring import Chunk

if TYPE_CHECKING:
    from radiod.library import Track


@dataclass(frozen=True, slots=True)
class TrackEvent:
    """A track change.

    Attributes:
        track: the track now playing.
        starts_at: stream time at which it becomes audible: the middle of a crossfade, or
            the join for gapless. A chunk starts within half a codec frame of it.
        next_track: the track chosen (and already opened) to follow it.
    """

    track: Track
    starts_at: float
    next_track: Track | None


@dataclass(frozen=True, slots=True)
class Header:
    """Bytes every listener needs first (Ogg header pages; b"" for MP3 and ADTS)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class TrackFailed:
    track: Track
    reason: str


@dataclass(frozen=True, slots=True)
class NextChosen:
    """A next track chosen outside a TrackEvent (after a silent gap)."""

    track: Track


@dataclass(frozen=True, slots=True)
class TracksFailed:
    """Several tracks failed in a row (a folder unmounted, a batch of broken files): one
    notice, so it costs one log line and one SSE message, not one per file."""

    failures: tuple[TrackFailed, ...]


@dataclass(frozen=True, slots=True)
class FallbackStarted:
    """Nothing can be played (the library is empty, or every track failed): silence plays,
    and the library is asked again every `silence_seconds`. Sent once per fallback period."""

    reason: str
    silence_seconds: float


@dataclass(frozen=True, slots=True)
class PipelineFailed:
    """The join raised: a bug, not a bad file (those are TrackFailed). The track it was
    playing is dropped and the join rebuilt; stream time and the encoder go on."""

    track: Track | None
    error: str
    traceback: str
    failures: int  # within the last CRASH_WINDOW_SECONDS of stream


class MixerGaveUp(Exception):
    """The pipeline failed CRASH_LIMIT times within CRASH_WINDOW_SECONDS of stream."""


# What a pipeline reports besides audio: they travel down the chain in stream order.
Notice = TrackFailed | TracksFailed | NextChosen | FallbackStarted | PipelineFailed
Output = Header | Chunk | TrackEvent | Notice
