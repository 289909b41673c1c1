// Now playing: the SSE `track` and `listener` events, placed on the listener's clock by the
// Timeline, shown by the view and told to the OS media session (lock screen, media keys).

import { artworkFor } from './cover.js';
import { Timeline } from './timeline.js';

const MAX_ANCHORS = 100;
// Two `attached` events this close in stream start are a replay of the same first byte.
const SAME_START_S = 0.05;

export class NowPlaying {
  /**
   * @param {HTMLAudioElement} audio
   * @param {import('./view.js').View} view
   * @param {{burstSeconds:number, context:Function}} options  `context()` gives
   *   {sessionId, listenerId, playing} at the moment of asking.
   */
  constructor(audio, view, { burstSeconds, context }) {
    this.audio = audio;
    this.view = view;
    this.burstSeconds = burstSeconds;
    this.context = context;
    this.timeline = new Timeline();
    this.streamStart = null; // stream time of the current source's first byte, once known
    this.anchors = []; // [{at, listenerId, streamStart, ctAt, how}]
    this.shown = { at: null, current: null, next: null, position: 0 };
    this.mediaSessionKey = null;
  }

  /** A new session: a new stream clock, nothing of the old one applies. */
  newSession() {
    this.timeline.reset();
    this.render();
  }

  /** A new (or no) <audio> source: nothing is known to be audible until its listener event. */
  newSource() {
    this.streamStart = null;
    this.timeline.clearAnchor();
  }

  /** An SSE message that is neither `connected` nor `error`. */
  onEvent(data) {
    if (data.type === 'track') {
      this.timeline.addTrackEvent(data);
      this.render();
    } else if (data.type === 'listener') {
      this.onListenerEvent(data);
    } else if (data.type === 'track_failed') {
      console.warn(`⚠️ Skipped an unplayable track: ${data.trackId ?? '?'}`);
    }
  }

  onListenerEvent(event) {
    const { listenerId } = this.context();
    if (
      event.action !== 'attached' ||
      !listenerId ||
      event.listenerId !== listenerId ||
      typeof event.streamStart !== 'number'
    ) {
      return;
    }
    if (this.streamStart === null) {
      this.anchor(event.streamStart, 0, 'attached');
      return;
    }
    if (Math.abs(event.streamStart - this.streamStart) < SAME_START_S) return;
    // Same listener, new first byte: Chromium re-requested a dropped connection with `Range`
    // and the server could not continue it byte-exactly (it does when the ring still holds
    // the next chunk, and then streamStart is unchanged and we returned above), so it sent
    // a fresh burst; currentTime carries on from the bytes it had. Where do they begin?
    // The server paces the stream in real time, so the dropped connection had everything up
    // to the live point; the resumed one starts `burstSeconds` before the (new) live point:
    //     media time of the first new byte = (streamStart + burst) - old anchor's stream start
    // That is late by the reconnect time (~0.3 s), so a switch is shown a little late, never
    // early. (Chromium's `buffered` lags the bytes received by seconds: no help here.)
    const current = this.timeline.anchor;
    const ctAt = event.streamStart + this.burstSeconds - current.streamStart + current.ctAt;
    this.anchor(event.streamStart, Math.max(ctAt, this.audio.currentTime), 'resumed');
  }

  anchor(streamStart, ctAt, how) {
    const { listenerId } = this.context();
    this.streamStart = streamStart;
    this.timeline.setAnchor(streamStart, ctAt);
    this.anchors.push({ at: Date.now(), listenerId, streamStart, ctAt, how });
    if (this.anchors.length > MAX_ANCHORS) this.anchors.shift();
    if (how !== 'attached') {
      const at = ctAt.toFixed(3);
      console.log(`⏱️ Listener ${listenerId} re-anchored: stream ${streamStart} at ${at}`);
    }
    this.render();
  }

  /** What is audible now (by the listener's clock), on screen and in the media session. */
  render() {
    const { sessionId, listenerId, playing } = this.context();
    this.shown = this.timeline.tick(this.audio.currentTime, { sessionId, listenerId });
    this.view.renderNowPlaying(this.shown, { playing });
    this.updateMediaSession();
  }

  updateMediaSession() {
    if (!('mediaSession' in navigator) || typeof MediaMetadata === 'undefined') return;
    const track = this.shown.current?.track;
    const key = track ? `${track.trackId}:${track.cover}` : null;
    if (key === this.mediaSessionKey) return;
    this.mediaSessionKey = key;
    navigator.mediaSession.metadata = track
      ? new MediaMetadata({
          title: track.title,
          artist: track.artist,
          album: track.album,
          artwork: artworkFor(track),
        })
      : null;
  }

  get switches() {
    return this.timeline.switches;
  }
}
