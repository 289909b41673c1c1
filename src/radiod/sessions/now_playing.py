"""What a session plays: the current and next track, recent track starts, and their JSON.

Listeners are not all at the same point of the stream: one that joined gets a burst from
up to `burst_seconds` behind the newest audio. So the track a listener hears is found by
stream time in the recent starts (`track_at`), not taken from "the current track".
"""

from __future__ import annotations

from collections import deque
from typing import Any

from radiod.artwork import cover_url
from radiod.audio.outputs import TrackEvent
from radiod.library import Track

# Recent track starts kept: a listener joins up to a burst behind the newest one.
TRACK_HISTORY = 16


def track_json(track: Track | None) -> dict[str, Any] | None:
    """A track as the page and `/sessions/{id}` show it (the wire names are camelCase)."""
    if track is None:
        return None
    return {
        "trackId": track.track_id,
        "title": track.title,
        "artist": track.artist,
        "album": track.album,
        "duration": round(track.duration, 3),
        "cover": cover_url(track),
    }


class NowPlaying:
    """A session's track history, fed by its mixer's track starts and next-track choices."""

    def __init__(self) -> None:
        self.current: TrackEvent | None = None
        self.next_track: Track | None = None
        self._history: deque[TrackEvent] = deque(maxlen=TRACK_HISTORY)

    def started(self, event: TrackEvent) -> None:
        """The mixer started a track (at `event.starts_at` in stream time)."""
        self.current = event
        self._history.append(event)
        if event.next_track is not None:
            self.next_track = event.next_track

    def next_chosen(self, track: Track) -> None:
        self.next_track = track

    def track_at(self, stream_time: float) -> TrackEvent | None:
        """The track audible at `stream_time` (the latest one started by then)."""
        started = [e for e in self._history if e.starts_at <= stream_time]
        return started[-1] if started else None

    def payload(self) -> dict[str, Any]:
        """The `track` event's body, also part of the session's status."""
        current = self.current
        return {
            "nowPlaying": track_json(current.track if current else None),
            "startsAt": round(current.starts_at, 3) if current else None,
            "next": track_json(self.next_track),
        }
