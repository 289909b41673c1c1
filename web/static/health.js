// Audio-first health (the seed's Phase 2): what the listener hears is the source of truth.
//
// - a `timeupdate` that *advances* currentTime marks the audio healthy. Chromium fires one
//   last `timeupdate` when it finally gives up on a dead connection (~30 s after the bytes
//   stopped) without moving currentTime; counting that as health would hide a dead stream;
// - `waiting` starts a buffering clock: degraded after `degradedAfterMs` of buffering;
// - dead after `deadAfterMs` without an advancing `timeupdate`;
// - `error` is dead at once, and so is `ended`: a live stream has no end.
// The thresholds come from the server's config (rendered into the page).

/** Statuses shown for the audio channel. */
export const AUDIO_STATUS = Object.freeze({
  idle: 'idle',
  connecting: 'connecting',
  connected: 'connected',
  buffering: 'buffering',
  degraded: 'degraded',
  reconnecting: 'reconnecting',
  dead: 'dead',
  paused: 'paused',
});

// currentTime must move by more than this to count as progress (float noise, seeks to the
// same point on a final timeupdate).
const ADVANCE_EPSILON_S = 0.001;

export class AudioHealth {
  /**
   * @param {HTMLAudioElement} audio
   * @param {{degradedAfterMs:number, deadAfterMs:number, checkIntervalMs:number}} thresholds
   * @param {{onStatus?:Function, onDead?:Function, onAdvance?:Function}} handlers
   */
  constructor(audio, thresholds, handlers = {}) {
    this.audio = audio;
    this.thresholds = thresholds;
    this.handlers = handlers;
    this.active = false;
    this.status = AUDIO_STATUS.idle;
    this.isHealthy = false;
    this.lastTimeUpdate = null; // any timeupdate (informational)
    this.lastAdvanceAt = null; // the last timeupdate that moved currentTime
    this.lastCurrentTime = 0;
    this.bufferingStarted = null;
    this.networkStalled = false;
    this.checkInterval = null;
    this.waits = []; // [{start, end}] in Date.now() ms: every `waiting` spell
    this.bind();
  }

  bind() {
    const a = this.audio;
    a.addEventListener('timeupdate', () => this.onTimeUpdate());
    a.addEventListener('waiting', () => this.onWaiting());
    a.addEventListener('playing', () => this.onPlaying());
    a.addEventListener('progress', () => {
      this.networkStalled = false;
    });
    a.addEventListener('stalled', () => {
      if (!this.active) return;
      // Chromium: ~3.4 s after the last byte, while buffered audio may still be playing.
      console.warn('❌ Audio stalled - network failed');
      this.networkStalled = true;
      this.isHealthy = false;
    });
    a.addEventListener('error', () => {
      if (!this.active || !a.getAttribute('src')) return; // our own teardown of the source
      const code = a.error ? a.error.code : 0;
      console.warn(`❌ Audio error - session is dead (MediaError ${code})`);
      this.declareDead('error');
    });
    a.addEventListener('ended', () => {
      if (!this.active) return;
      console.warn('❌ Audio stream ended - session is dead');
      this.declareDead('ended');
    });
  }

  /** A new source was set: every clock starts again, `deadAfterMs` to produce sound. */
  start() {
    const now = Date.now();
    this.active = true;
    this.isHealthy = false;
    this.networkStalled = false;
    this.lastTimeUpdate = null;
    this.lastAdvanceAt = now;
    this.lastCurrentTime = this.audio.currentTime || 0;
    this.bufferingStarted = null;
    this.closeWait(now);
    this.setStatus(AUDIO_STATUS.connecting);
    this.startMonitoring();
  }

  /** Stop judging (paused by the user, restarting, waiting for a tap). */
  stop(status = AUDIO_STATUS.idle) {
    this.active = false;
    this.isHealthy = false;
    this.bufferingStarted = null;
    this.closeWait(Date.now());
    if (this.checkInterval) {
      clearInterval(this.checkInterval);
      this.checkInterval = null;
    }
    this.setStatus(status);
  }

  startMonitoring() {
    if (this.checkInterval) clearInterval(this.checkInterval);
    this.checkInterval = setInterval(() => this.check(), this.thresholds.checkIntervalMs);
  }

  onTimeUpdate() {
    const now = Date.now();
    this.lastTimeUpdate = now;
    if (!this.active) return;
    const t = this.audio.currentTime;
    if (!(t > this.lastCurrentTime + ADVANCE_EPSILON_S)) return; // not progress: no health
    this.lastCurrentTime = t;
    this.lastAdvanceAt = now;
    this.bufferingStarted = null;
    this.closeWait(now);
    this.isHealthy = !this.networkStalled;
    this.setStatus(AUDIO_STATUS.connected);
    this.handlers.onAdvance?.(t, now);
  }

  onWaiting() {
    if (!this.active) return;
    console.log('⏳ Audio buffering...');
    const now = Date.now();
    this.bufferingStarted = now;
    if (!this.waits.length || this.waits[this.waits.length - 1].end !== null) {
      this.waits.push({ start: now, end: null });
      if (this.waits.length > 200) this.waits.shift();
    }
    this.setStatus(AUDIO_STATUS.buffering);
  }

  onPlaying() {
    if (!this.active) return;
    console.log('▶️ Audio playing');
    this.bufferingStarted = null;
    this.closeWait(Date.now());
    this.isHealthy = true;
    this.setStatus(AUDIO_STATUS.connected);
  }

  closeWait(now) {
    const last = this.waits[this.waits.length - 1];
    if (last && last.end === null) last.end = now;
  }

  check() {
    if (!this.active || this.lastAdvanceAt === null) return;
    const now = Date.now();
    const sinceAdvance = now - this.lastAdvanceAt;
    if (sinceAdvance > this.thresholds.deadAfterMs) {
      const silent = (sinceAdvance / 1000).toFixed(1);
      console.warn(`❌ Audio session dead: no timeupdate for ${silent}s`);
      this.declareDead('no-progress');
      return;
    }
    const buffering = this.bufferingStarted !== null ? now - this.bufferingStarted : 0;
    if (buffering > this.thresholds.degradedAfterMs && this.status !== AUDIO_STATUS.degraded) {
      console.warn(`⚠️ Audio struggling: buffering for ${(buffering / 1000).toFixed(1)}s`);
      this.isHealthy = false;
      this.setStatus(AUDIO_STATUS.degraded);
    }
  }

  declareDead(reason) {
    this.isHealthy = false;
    this.stop(AUDIO_STATUS.dead);
    this.handlers.onDead?.(reason);
  }

  setStatus(status) {
    if (status === this.status) return;
    this.status = status;
    this.handlers.onStatus?.(status);
  }
}
