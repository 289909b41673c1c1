// Health reports: the page tells the server what the listener lived through
// (POST /sessions/ID/health), so `radiod audit` can set it beside what the server saw.
//
// Reports follow the channels' story (debug.js History): every entry passes `observe`, and
// the transitions that matter become one report each, about the session of that moment:
//   audio buffering → connected       `buffering` with its length (stalls mid-play only:
//                                     waiting for the first sound is not a stall)
//   audio degraded                    `degraded` with how long it had been buffering
//   page restart                      `restart` with why, the attempt and the backoff
//   events retry                      `sse_reconnect` with the attempt and the backoff
//   audio paused with play() refused  `play_refused`
// and `dead(reason)`, from the health monitor's verdict. A restart because the server lost
// the session, or could not make one, is not reported: there is no session to report to.
//
// navigator.sendBeacon survives the page going away; fetch keepalive stands in when the
// beacon queue refuses. Best effort: a report never throws and is never retried.

const UNREPORTED_RESTARTS = new Set(['session-lost', 'unreachable', 'server-full']);
// The server's bounds (radiod/web/health_reports.py).
const MAX_MS = 3600000;
const MAX_ATTEMPT = 1000;

const clampMs = (ms) => Math.max(0, Math.min(MAX_MS, Math.round(ms)));

export class HealthReporter {
  /**
   * @param {string} sessionsEndpoint e.g. '/sessions'
   * @param {Function} player  the Player (player.js), once it exists: its `listener` nonce
   *   and whether play() is waiting for a tap
   */
  constructor(sessionsEndpoint, player) {
    this.endpoint = sessionsEndpoint;
    this.player = player;
    this.heard = false; // the current source has played: a `waiting` now is a stall
    this.bufferingSince = null;
  }

  /** One History entry: {at, channel, status, sessionId, ...extra}. */
  observe(entry) {
    if (entry.channel === 'audio') this.audio(entry);
    else if (entry.channel === 'page' && entry.status === 'restart') {
      if (UNREPORTED_RESTARTS.has(entry.reason)) return;
      this.send(entry.sessionId, {
        kind: 'restart',
        reason: entry.reason,
        attempt: Math.min(entry.attempt, MAX_ATTEMPT),
        delayMs: entry.delayMs,
      });
    } else if (entry.channel === 'events' && entry.status === 'retry') {
      this.send(entry.sessionId, {
        kind: 'sse_reconnect',
        attempt: Math.min(entry.attempt, MAX_ATTEMPT),
        delayMs: entry.delayMs,
      });
    }
  }

  audio({ status, at, sessionId }) {
    if (status === 'buffering') {
      if (this.heard) this.bufferingSince ??= at;
    } else if (status === 'degraded') {
      const since = this.bufferingSince;
      const report = { kind: 'degraded' };
      if (since !== null) report.ms = clampMs(at - since);
      this.send(sessionId, report);
    } else if (status === 'connected') {
      if (this.bufferingSince !== null) {
        this.send(sessionId, { kind: 'buffering', ms: clampMs(at - this.bufferingSince) });
      }
      this.heard = true;
      this.bufferingSince = null;
    } else {
      // connecting (a new source), paused, dead, reconnecting, idle: this spell is over.
      if (status === 'connecting') this.heard = false;
      this.bufferingSince = null;
      if (status === 'paused' && this.player().awaitingGesture) {
        this.send(sessionId, { kind: 'play_refused' });
      }
    }
  }

  /** The health monitor declared the audio dead (`reason`: no-progress, error, ended). */
  dead(sessionId, reason, lastAdvanceAt) {
    const report = { kind: 'dead', reason };
    if (lastAdvanceAt) report.ms = clampMs(Date.now() - lastAdvanceAt);
    this.send(sessionId, report);
  }

  send(sessionId, report) {
    if (!sessionId) return;
    const url = `${this.endpoint}/${encodeURIComponent(sessionId)}/health`;
    const { listenerId } = this.player();
    const body = JSON.stringify(listenerId ? { ...report, listenerId } : report);
    try {
      if (navigator.sendBeacon?.(url, body)) return;
    } catch {
      /* not allowed here: fetch below */
    }
    fetch(url, {
      method: 'POST',
      body,
      keepalive: true,
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
    }).catch(() => {});
  }
}
