// Recovery (the seed's Phase 2): the audio is the source of truth, the events channel second.
//
//   SSE dies, audio healthy (or nothing playing) ─► reconnect SSE to the *same* session,
//                                                   backing off 2, 4 … 30 s
//   audio dies, or SSE dies with the audio unhealthy,
//   or the server forgot the session            ─► full restart on a *new* session
//
// A full restart happens in the page (SSE closed, cached ID dropped, a new session created,
// SSE and audio reconnected, play() again); never location.reload(), which would lose the
// autoplay permission and leave the listener in silence. Consecutive restarts wait
// 1, 2, 4 … 30 s, and the page says what it is doing.

import { EVENTS_STATUS } from './events.js';
import { AUDIO_STATUS } from './health.js';
import { probeSession } from './session.js';
import { backoffMs, sleep } from './util.js';

const SSE_RETRY_BASE_MS = 2000;
const RESTART_BASE_MS = 1000;
const MAX_BACKOFF_MS = 30000;
// Clean playback for this long after a restart starts the next backoff from 1 s again.
const BACKOFF_RESET_AFTER_MS = 30000;

const REASONS = {
  'no-progress': 'The audio stopped',
  error: 'The audio connection failed',
  ended: 'The audio stream ended',
  'session-lost': 'The server no longer knows this session',
  'events-and-audio': 'Lost the connection to the server',
  unreachable: 'Can’t reach the server',
  'server-full': 'The server has no room for a new session',
};

/** Why a session could not be made: the server is full (503) or out of reach. */
const failureReason = (error) => (error.status === 503 ? 'server-full' : 'unreachable');

export class Recovery {
  /**
   * @param {{session:import('./session.js').CurrentSession,
   *          player:import('./player.js').Player,
   *          health:import('./health.js').AudioHealth,
   *          events:import('./events.js').EventChannel,
   *          view:import('./view.js').View, record:Function, streamEndpoint:string}} parts
   */
  constructor({ session, player, health, events, view, record, streamEndpoint }) {
    Object.assign(this, { session, player, health, events, view, record, streamEndpoint });
    this.restarts = 0;
    this.attempt = 0; // consecutive restarts: the backoff's exponent
    this.pending = false; // a restart is under way (it starts the audio itself)
    this.sseFailures = 0;
    this.sseTimer = null;
    this.backoffResetTimer = null;
  }

  /** Page load: the session first, then SSE, then the audio if play was pressed meanwhile. */
  async begin() {
    try {
      await this.session.establish();
      this.connectEvents();
      if (this.player.wantPlaying) this.player.play();
    } catch (error) {
      console.warn('❌ App initialization failed:', error.message);
      this.restart(failureReason(error));
    }
  }

  /** The session the audio may start on now; null while a restart or the bootstrap runs. */
  startableSession() {
    return this.pending ? null : this.session.id;
  }

  connectEvents() {
    clearTimeout(this.sseTimer);
    this.sseTimer = null;
    this.events.connect(this.session.id);
  }

  /** The server answered `connected` on the events channel for our session. */
  eventsConnected() {
    this.session.confirmed = true;
    this.sseFailures = 0;
    this.view.clearNotice('sse');
  }

  async audioDied(reason) {
    if (this.pending) return;
    let why = reason;
    if (reason === 'error' || reason === 'ended') {
      // <audio> cannot see status codes: ask whether the server still knows the session.
      const sessionId = this.session.id;
      const verdict = sessionId ? await probeSession(this.streamEndpoint, sessionId) : 'unknown';
      if (this.pending || sessionId !== this.session.id) return;
      if (verdict === 'unknown') why = 'session-lost';
    }
    console.warn('💀 Audio session is dead - restarting everything');
    this.restart(why, { immediate: why === 'session-lost' });
  }

  sessionNotFound(sessionId) {
    if (this.pending || sessionId !== this.session.id) return;
    console.warn(`🔧 Session ${sessionId} is unknown to the server - dropping it`);
    // Once, at once; should the new session be refused as well, the backoff takes over.
    this.restart('session-lost', { immediate: true });
  }

  async eventsFailed() {
    if (this.pending) return;
    console.warn('❌ SSE error');
    this.session.confirmed = false; // until the server says `connected` again
    if (!this.player.isActive) {
      // Nothing is playing: keep the metadata channel alive on the same session, gently; but
      // first make sure the session still exists (EventSource hides the status code).
      const sessionId = this.session.id;
      this.events.setStatus(EVENTS_STATUS.reconnecting);
      const verdict = await probeSession(this.streamEndpoint, sessionId);
      if (this.pending || sessionId !== this.session.id) return;
      if (verdict === 'unknown') {
        this.sessionNotFound(sessionId);
        return;
      }
      this.reconnectEventsLater(
        '🔄 SSE died (audio not playing) - reconnecting SSE to same session',
      );
    } else if (this.health.isHealthy) {
      this.reconnectEventsLater('🔄 SSE died but audio healthy - reconnecting SSE to same session');
    } else {
      console.log('🔄 SSE died and audio unhealthy - full restart needed');
      this.restart('events-and-audio');
    }
  }

  reconnectEventsLater(message) {
    console.log(message);
    this.sseFailures += 1;
    const delay = backoffMs(this.sseFailures, SSE_RETRY_BASE_MS, MAX_BACKOFF_MS);
    this.record('events', 'retry', { attempt: this.sseFailures, delayMs: delay });
    this.events.setStatus(EVENTS_STATUS.reconnecting);
    const text = this.player.wantPlaying
      ? 'Live updates interrupted — reconnecting in {s} (the audio is fine)'
      : 'Live updates interrupted — reconnecting in {s}';
    this.view.notice('sse', text, { until: Date.now() + delay });
    clearTimeout(this.sseTimer);
    this.sseTimer = setTimeout(() => {
      this.sseTimer = null;
      if (!this.pending && this.session.id) this.connectEvents();
    }, delay);
  }

  /**
   * Full restart: tear down both channels and the session, wait out the backoff (`immediate`
   * skips it for the first restart in a row), then a new session with SSE and audio on it.
   */
  async restart(reason, { immediate = false } = {}) {
    if (this.pending) return;
    this.pending = true;
    this.restarts += 1;
    this.attempt += 1;
    const first = immediate && this.attempt === 1;
    const delay = first ? 0 : backoffMs(this.attempt, RESTART_BASE_MS, MAX_BACKOFF_MS);
    this.record('page', 'restart', {
      reason,
      delayMs: delay,
      attempt: this.attempt,
      lastAdvanceAt: this.health.lastAdvanceAt,
    });
    this.tearDown();
    this.announce(reason, delay);
    if (delay) await sleep(delay);
    await this.rebuild(reason);
  }

  tearDown() {
    clearTimeout(this.sseTimer);
    clearTimeout(this.backoffResetTimer);
    this.sseTimer = null;
    this.events.close();
    this.events.setStatus(EVENTS_STATUS.reconnecting);
    this.health.stop(this.player.wantPlaying ? AUDIO_STATUS.reconnecting : AUDIO_STATUS.idle);
    this.player.clearSource();
    this.session.drop();
  }

  announce(reason, delay) {
    const what = REASONS[reason] ?? 'Lost the connection';
    const action = this.player.wantPlaying
      ? 'starting over on a new session'
      : 'getting a new session';
    const text = delay ? `${what} — ${action} in {s}…` : `${what} — ${action}…`;
    this.view.notice('restart', text, { until: delay ? Date.now() + delay : null, tone: 'warn' });
    this.player.showState();
  }

  async rebuild(reason) {
    try {
      await this.session.establish();
    } catch (error) {
      this.pending = false;
      this.restart(failureReason(error));
      return;
    }
    this.pending = false;
    this.record('page', 'recovered', { reason });
    this.settleLater();
    this.connectEvents();
    if (this.player.wantPlaying && !this.player.awaitingGesture) {
      this.view.notice('restart', 'Back on air on a new session', { clearAfterMs: 5000 });
      await this.player.start(this.session.id);
    } else {
      this.view.clearNotice('restart');
    }
  }

  resetBackoffIfSettled() {
    const audioFine = !this.player.wantPlaying || this.health.status === AUDIO_STATUS.connected;
    if (!this.pending && this.events.status === EVENTS_STATUS.connected && audioFine) {
      this.attempt = 0;
    } else {
      this.settleLater();
    }
  }

  settleLater() {
    this.backoffResetTimer = setTimeout(() => this.resetBackoffIfSettled(), BACKOFF_RESET_AFTER_MS);
  }
}
