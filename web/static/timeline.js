// Now playing by what the listener hears, not by when an event arrives.
//
// The server speaks in stream time (seconds of the session's encoded stream). A `listener`
// event for this page's own listener gives `streamStart`: the stream time of the first
// byte this <audio> element received. So what is audible right now is
//     streamStart + (audio.currentTime - ctAt)
// where ctAt is the media time that first byte landed at (0 for a fresh source; the
// resume point when Chromium re-requested a dropped connection with `Range`). A `track`
// event's `startsAt` is the stream time its track becomes audible: the track is now
// playing once the audible stream time has reached it.

const MAX_SWITCHES = 500;

export class Timeline {
  constructor() {
    this.switches = []; // [{trackId, at, startsAt, sessionId, listenerId}]
    this.reset();
  }

  /** Forget everything of the old session (new session: new stream clock). */
  reset() {
    this.anchor = null;
    this.entries = []; // [{track, startsAt, next}] sorted by startsAt
    this.latestNext = null;
    this.current = null;
  }

  /** The listener's clock: stream time `streamStart` is at media time `ctAt`. */
  setAnchor(streamStart, ctAt = 0) {
    this.anchor = { streamStart, ctAt };
  }

  /** A new <audio> source: until its listener event arrives nothing is known to be audible. */
  clearAnchor() {
    this.anchor = null;
    this.current = null;
  }

  streamTime(currentTime) {
    return this.anchor ? this.anchor.streamStart + (currentTime - this.anchor.ctAt) : null;
  }

  /** A `track` event: {nowPlaying, startsAt, next}. */
  addTrackEvent(event) {
    const { nowPlaying, startsAt, next } = event;
    this.latestNext = next ?? null;
    if (!nowPlaying || typeof startsAt !== 'number') return;
    let entry = this.entries.find(
      (e) => e.track.trackId === nowPlaying.trackId && Math.abs(e.startsAt - startsAt) < 0.001,
    );
    if (!entry) {
      entry = { track: nowPlaying, startsAt, next: null };
      this.entries.push(entry);
      this.entries.sort((a, b) => a.startsAt - b.startsAt);
    }
    entry.track = nowPlaying;
    entry.next = next ?? null;
  }

  /**
   * Where the listener is at media time `currentTime`: the audible entry (or null), the
   * next track and the position in the current one. Records a switch when it changes.
   */
  tick(currentTime, context = {}) {
    const at = this.streamTime(currentTime);
    if (at === null) {
      return { at: null, current: null, next: this.latestNext ?? this.lastEntry()?.track ?? null };
    }
    let audible = null;
    for (const entry of this.entries) {
      if (entry.startsAt <= at) audible = entry;
    }
    // Only ever forward: a resumed connection may replay a second of audio, and that must
    // not flip the display back to the previous track.
    if (audible && (!this.current || audible.startsAt > this.current.startsAt)) {
      this.current = audible;
      this.switches.push({
        trackId: audible.track.trackId,
        at: Math.round(at * 1000) / 1000,
        startsAt: audible.startsAt,
        sessionId: context.sessionId ?? null,
        listenerId: context.listenerId ?? null,
      });
      if (this.switches.length > MAX_SWITCHES) this.switches.shift();
      // Entries before the audible one can never be shown again.
      this.entries = this.entries.filter((e) => e.startsAt >= audible.startsAt);
    }
    const current = this.current;
    const upcoming = this.entries.find((e) => e.startsAt > at);
    const next = upcoming ? upcoming.track : (current?.next ?? null);
    const position = current ? Math.max(0, at - current.startsAt) : 0;
    return { at, current, next, position };
  }

  lastEntry() {
    return this.entries[this.entries.length - 1] ?? null;
  }
}
