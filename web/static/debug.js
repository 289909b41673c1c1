// A read-only window for tests and the curious: `window.radiod`.
//
//   .state     a frozen snapshot: session, listener, both channels' statuses, now playing…
//   .history   every status change of both channels, every restart and recovery
//   .switches  when each track became audible (Timeline)
//   .waits     every `waiting` spell of the audio (AudioHealth)
//   .anchors   every listener-clock anchor (NowPlaying)

const HISTORY_LIMIT = 500;

/** The channels' story: [{at, channel, status, sessionId, ...extra}], newest last. */
export class History {
  /**
   * @param {Function} sessionId  the session current at the time of recording
   * @param {Function} onRecord  told every entry as it is recorded (beacons.js)
   */
  constructor(sessionId, onRecord = () => {}) {
    this.sessionId = sessionId;
    this.onRecord = onRecord;
    this.entries = [];
  }

  record(channel, status, extra = {}) {
    const entry = { at: Date.now(), channel, status, sessionId: this.sessionId(), ...extra };
    this.entries.push(entry);
    if (this.entries.length > HISTORY_LIMIT) this.entries.shift();
    this.onRecord(entry);
  }
}

const copyAll = (items) => items.map((item) => Object.freeze({ ...item }));

/** Define `window.radiod` over the page's parts; it reads them, it never changes them. */
export function exposeDebugWindow(parts) {
  const { session, player, health, events, recovery, nowPlaying, history } = parts;
  const pageLoadedAt = Date.now();
  const snapshot = () =>
    Object.freeze({
      sessionId: session.id,
      listenerId: player.listenerId,
      streamStart: nowPlaying.streamStart,
      audioStatus: health.status,
      audioHealthy: health.isHealthy,
      sseStatus: events.status,
      restarts: recovery.restarts,
      restartPending: recovery.pending,
      nowPlaying: nowPlaying.shown.current?.track.trackId ?? null,
      next: nowPlaying.shown.next?.trackId ?? null,
      streamTime: nowPlaying.shown.at,
      currentTime: player.audio.currentTime,
      lastAdvanceAt: health.lastAdvanceAt,
      firstAdvanceAt: player.firstAdvanceAt,
      wantPlaying: player.wantPlaying,
      awaitingGesture: player.awaitingGesture,
      pageLoadedAt,
    });
  const radiod = {
    get state() {
      return snapshot();
    },
    get history() {
      return copyAll(history.entries);
    },
    get switches() {
      return copyAll(nowPlaying.switches);
    },
    get waits() {
      return copyAll(health.waits);
    },
    get anchors() {
      return copyAll(nowPlaying.anchors);
    },
  };
  Object.defineProperty(window, 'radiod', { value: Object.freeze(radiod), enumerable: true });
}
