// radiod player: audio-first sessions (DESIGN.md §5, the seed's Phases 1–2).
//
//   page load ─► session ID (localStorage 'audioSessionId' | POST /create-session)
//             ─► SSE /events?session=ID          (metadata: secondary)
//   play      ─► <audio> /stream?session=ID&listener=NONCE   (audio: the source of truth)
//
// Audio dies → full restart *in the page* (new session, SSE + audio reconnected, play()
// again; never location.reload(), which would lose the autoplay permission and leave the
// listener in silence). SSE dies while the audio is healthy → reconnect SSE to the same
// session. Repeated restarts back off 1, 2, 4 … 30 s and the page says what it is doing.

import { AUDIO_STATUS, AudioHealth } from './health.js';
import { EVENTS_STATUS, EventChannel } from './events.js';
import {
  cachedSessionId,
  createSession,
  forgetSession,
  probeSession,
  rememberSession,
} from './session.js';
import { Timeline } from './timeline.js';
import { backoffMs, nonce, sleep } from './util.js';
import { View } from './view.js';

const config = JSON.parse(document.getElementById('radiod-config').textContent);
const { endpoints } = config;

const SSE_RETRY_BASE_MS = 2000;
const MAX_BACKOFF_MS = 30000;
// Clean playback for this long after a restart starts the next backoff from 1 s again.
const BACKOFF_RESET_AFTER_MS = 30000;
const HISTORY_LIMIT = 500;
const VOLUME_KEY = 'radiodVolume';
const MUTED_KEY = 'radiodMuted';

const REASONS = {
  'no-progress': 'The audio stopped',
  error: 'The audio connection failed',
  ended: 'The audio stream ended',
  'session-lost': 'The server no longer knows this session',
  'events-and-audio': 'Lost the connection to the server',
  unreachable: 'Can’t reach the server',
  'server-full': 'The server has no room for a new session',
};

const audio = document.getElementById('audio');
const view = new View();
const timeline = new Timeline();

const state = {
  sessionId: null,
  sessionConfirmed: false, // the server answered `connected` for this ID on the SSE channel
  listenerId: null,
  streamStart: null,
  wantPlaying: false, // the listener's intent: play was pressed and not paused since
  awaitingGesture: false, // play() was refused: the "tap to resume" control is showing
  firstAdvanceAt: null,
  restarts: 0,
  restartAttempt: 0,
  restartPending: false,
  lastRecoveredAt: null,
  backoffResetTimer: null,
  sseFailures: 0,
  sseTimer: null,
  noticeKind: null,
  history: [], // [{at, channel, status, sessionId, ...}]
  anchors: [], // [{at, listenerId, streamStart, ctAt, how}]
  pageLoadedAt: Date.now(),
};

function record(channel, status, extra = {}) {
  state.history.push({ at: Date.now(), channel, status, sessionId: state.sessionId, ...extra });
  if (state.history.length > HISTORY_LIMIT) state.history.shift();
}

function notice(kind, message, options) {
  state.noticeKind = message ? kind : null;
  view.notice(message, options);
}

function clearNotice(kind) {
  if (state.noticeKind === kind) notice(null, '');
}

// -- the two channels ------------------------------------------------------------------

const health = new AudioHealth(audio, config.health, {
  onStatus(status) {
    record('audio', status);
    view.setChannelStatus('audio', status);
    if (status === AUDIO_STATUS.degraded) {
      notice('degraded', 'The audio is struggling to keep up — still trying…', { tone: 'warn' });
    } else if (status === AUDIO_STATUS.connected) {
      clearNotice('degraded');
    }
    updatePlayState();
  },
  onDead: (reason) => handleDeadAudio(reason),
  onAdvance(_currentTime, now) {
    state.firstAdvanceAt ??= now;
  },
});

const events = new EventChannel(endpoints.events, {
  onStatus(status) {
    record('events', status);
    view.setChannelStatus('events', status);
  },
  onConnected() {
    state.sessionConfirmed = true;
    state.sseFailures = 0;
    clearNotice('sse');
  },
  onEvent: handleEvent,
  onSessionNotFound: handleSessionNotFound,
  onError: handleSseError,
});

// -- Phase 1: session bootstrap --------------------------------------------------------

// Session establishment - must happen before SSE or audio connect.
async function establishSession() {
  console.log('🔧 Establishing session...');
  const cached = cachedSessionId();
  if (cached) {
    console.log(`🔧 Found cached session: ${cached}`);
    adoptSession(cached);
    return cached;
  }
  try {
    const sessionId = await createSession(endpoints.createSession);
    console.log(`🔧 Created new session: ${sessionId}`);
    adoptSession(sessionId);
    rememberSession(sessionId);
    return sessionId;
  } catch (error) {
    console.warn('❌ Failed to establish session:', error.message);
    throw error;
  }
}

function adoptSession(sessionId) {
  if (sessionId !== state.sessionId) timeline.reset();
  state.sessionId = sessionId;
  state.sessionConfirmed = false;
  view.setSession(sessionId);
}

function dropSession() {
  forgetSession();
  state.sessionId = null;
  state.sessionConfirmed = false;
  view.setSession(null);
  timeline.reset();
}

function connectSSE() {
  clearTimeout(state.sseTimer);
  state.sseTimer = null;
  events.connect(state.sessionId);
}

// -- the audio source: every place a source is set goes through here ---------------------

function setAudioSource() {
  if (!state.sessionId) {
    console.error('❌ Cannot set audio source: no session ID');
    return false;
  }
  state.listenerId = nonce();
  state.streamStart = null;
  state.firstAdvanceAt = null;
  timeline.clearAnchor();
  const session = encodeURIComponent(state.sessionId);
  audio.src = `${endpoints.stream}?session=${session}&listener=${state.listenerId}`;
  console.log(`🎵 Audio connecting to session: ${state.sessionId}`);
  return true;
}

function clearAudioSource() {
  // removeAttribute + load() ends the download without an `error` event (src="" would fire one).
  audio.removeAttribute('src');
  audio.load();
  state.listenerId = null;
  state.streamStart = null;
  timeline.clearAnchor();
}

async function startAudio() {
  if (!setAudioSource()) return;
  health.start();
  view.showResume(false);
  state.awaitingGesture = false;
  updatePlayState();
  try {
    await audio.play(); // called synchronously above the await: a click's activation counts
  } catch (error) {
    if (error.name === 'NotAllowedError') {
      console.warn('🔇 Playback blocked by the browser - waiting for a tap to resume');
      state.awaitingGesture = true;
      health.stop(AUDIO_STATUS.paused);
      view.showResume(true);
      notice('gesture', 'Your browser blocked playback after reconnecting. Tap to resume.', {
        tone: 'warn',
      });
      updatePlayState();
    } else if (error.name !== 'AbortError') {
      // AbortError: a newer source replaced this one. Anything else surfaces as `error`.
      console.warn(`❌ Audio play() failed: ${error.name}`);
    }
  }
}

// -- user intents ---------------------------------------------------------------------------

async function play() {
  state.wantPlaying = true;
  updatePlayState();
  if (state.restartPending || !state.sessionId) return; // the restart/bootstrap starts it
  if (!state.sessionConfirmed) {
    // A cached ID may be stale (the server restarted). <audio> cannot see a 404, so ask first.
    const sessionId = state.sessionId;
    const verdict = await probeSession(endpoints.stream, sessionId);
    if (!state.wantPlaying || sessionId !== state.sessionId || state.restartPending) return;
    if (verdict === 'unknown') {
      handleSessionNotFound(sessionId);
      return;
    }
  }
  await startAudio();
}

function pause() {
  state.wantPlaying = false;
  state.awaitingGesture = false;
  view.showResume(false);
  clearNotice('gesture');
  health.stop(AUDIO_STATUS.paused);
  audio.pause();
  // A live stream is not resumed where it paused: the next play starts at the live point.
  clearAudioSource();
  updatePlayState();
  render();
}

function togglePlay() {
  if (state.awaitingGesture) resumeAfterGesture(); // this click is the gesture play() needed
  else if (state.wantPlaying) pause();
  else play();
}

function resumeAfterGesture() {
  clearNotice('gesture');
  state.wantPlaying = true;
  if (state.restartPending || !state.sessionId) return;
  startAudio();
}

async function skip() {
  const sessionId = state.sessionId;
  if (!sessionId || state.restartPending) return;
  try {
    const response = await fetch(`${endpoints.sessions}/${encodeURIComponent(sessionId)}/skip`, {
      method: 'POST',
      cache: 'no-store',
    });
    if (response.status === 404 && sessionId === state.sessionId) {
      handleSessionNotFound(sessionId);
    } else if (!response.ok) {
      notice('skip', `Skip failed (${response.status})`, { tone: 'warn', clearAfterMs: 4000 });
    }
  } catch {
    notice('skip', 'Skip failed: the server is unreachable', { tone: 'warn', clearAfterMs: 4000 });
  }
}

function setVolume(volume) {
  audio.volume = Math.min(1, Math.max(0, volume));
  if (audio.volume > 0 && audio.muted) audio.muted = false;
  saveVolume();
}

function toggleMute() {
  audio.muted = !audio.muted;
  saveVolume();
}

function saveVolume() {
  view.setVolume(audio.volume, audio.muted);
  try {
    localStorage.setItem(VOLUME_KEY, String(audio.volume));
    localStorage.setItem(MUTED_KEY, String(audio.muted));
  } catch {
    /* not persisted: fine */
  }
}

function restoreVolume() {
  let volume = 0.8;
  let muted = false;
  try {
    const saved = Number.parseFloat(localStorage.getItem(VOLUME_KEY));
    if (Number.isFinite(saved)) volume = Math.min(1, Math.max(0, saved));
    muted = localStorage.getItem(MUTED_KEY) === 'true';
  } catch {
    /* defaults */
  }
  audio.volume = volume;
  audio.muted = muted;
  view.setVolume(volume, muted);
}

// -- Phase 2: recovery --------------------------------------------------------------------

async function handleDeadAudio(reason) {
  if (state.restartPending) return;
  let why = reason;
  if (reason === 'error' || reason === 'ended') {
    // <audio> cannot see status codes: ask whether the server still knows the session.
    const sessionId = state.sessionId;
    const verdict = sessionId ? await probeSession(endpoints.stream, sessionId) : 'unknown';
    if (state.restartPending || sessionId !== state.sessionId) return;
    if (verdict === 'unknown') why = 'session-lost';
  }
  console.warn('💀 Audio session is dead - restarting everything');
  fullRestart(why, { immediate: why === 'session-lost' });
}

function handleSessionNotFound(sessionId) {
  if (state.restartPending || sessionId !== state.sessionId) return;
  console.warn(`🔧 Session ${sessionId} is unknown to the server - dropping it`);
  // Once, at once; should the new session be refused as well, the backoff takes over.
  fullRestart('session-lost', { immediate: true });
}

async function handleSseError() {
  if (state.restartPending) return;
  console.warn('❌ SSE error');
  state.sessionConfirmed = false; // until the server says `connected` again
  const audioActive = state.wantPlaying && !state.awaitingGesture && audio.getAttribute('src');
  if (!audioActive) {
    // Nothing is playing: keep the metadata channel alive on the same session, gently; but
    // first make sure the session still exists (EventSource hides the status code).
    const sessionId = state.sessionId;
    events.setStatus(EVENTS_STATUS.reconnecting);
    const verdict = await probeSession(endpoints.stream, sessionId);
    if (state.restartPending || sessionId !== state.sessionId) return;
    if (verdict === 'unknown') {
      handleSessionNotFound(sessionId);
      return;
    }
    scheduleSseReconnect('🔄 SSE died (audio not playing) - reconnecting SSE to same session');
  } else if (health.isHealthy) {
    scheduleSseReconnect('🔄 SSE died but audio healthy - reconnecting SSE to same session');
  } else {
    console.log('🔄 SSE died and audio unhealthy - full restart needed');
    fullRestart('events-and-audio');
  }
}

function scheduleSseReconnect(message) {
  console.log(message);
  state.sseFailures += 1;
  const delay = backoffMs(state.sseFailures, SSE_RETRY_BASE_MS, MAX_BACKOFF_MS);
  events.setStatus(EVENTS_STATUS.reconnecting);
  const text = state.wantPlaying
    ? 'Live updates interrupted — reconnecting in {s} (the audio is fine)'
    : 'Live updates interrupted — reconnecting in {s}';
  notice('sse', text, { until: Date.now() + delay });
  clearTimeout(state.sseTimer);
  state.sseTimer = setTimeout(() => {
    state.sseTimer = null;
    if (!state.restartPending && state.sessionId) connectSSE();
  }, delay);
}

/**
 * Full restart in the page: close SSE, drop the cached ID, create a new session, reconnect
 * SSE and, if the listener was listening, set a new audio source and play() again.
 * Consecutive restarts wait 1, 2, 4 … 30 s (`immediate` skips the wait for the first one).
 */
async function fullRestart(reason, { immediate = false } = {}) {
  if (state.restartPending) return;
  state.restartPending = true;
  state.restarts += 1;
  state.restartAttempt += 1;
  const first = immediate && state.restartAttempt === 1;
  const delay = first ? 0 : backoffMs(state.restartAttempt, 1000, MAX_BACKOFF_MS);
  record('page', 'restart', {
    reason,
    delayMs: delay,
    attempt: state.restartAttempt,
    lastAdvanceAt: health.lastAdvanceAt,
  });

  clearTimeout(state.sseTimer);
  clearTimeout(state.backoffResetTimer);
  state.sseTimer = null;
  events.close();
  events.setStatus(EVENTS_STATUS.reconnecting);
  health.stop(state.wantPlaying ? AUDIO_STATUS.reconnecting : AUDIO_STATUS.idle);
  clearAudioSource();
  dropSession();
  render();
  const what = REASONS[reason] ?? 'Lost the connection';
  const action = state.wantPlaying ? 'starting over on a new session' : 'getting a new session';
  notice('restart', delay ? `${what} — ${action} in {s}…` : `${what} — ${action}…`, {
    until: delay ? Date.now() + delay : null,
    tone: 'warn',
  });
  updatePlayState();
  if (delay) await sleep(delay);

  try {
    await establishSession();
  } catch (error) {
    state.restartPending = false;
    fullRestart(error.status === 503 ? 'server-full' : 'unreachable');
    return;
  }
  state.restartPending = false;
  state.lastRecoveredAt = Date.now();
  record('page', 'recovered', { reason });
  state.backoffResetTimer = setTimeout(resetBackoffIfSettled, BACKOFF_RESET_AFTER_MS);
  connectSSE();
  if (state.wantPlaying && !state.awaitingGesture) {
    notice('restart', 'Back on air on a new session', { clearAfterMs: 5000 });
    await startAudio();
  } else {
    clearNotice('restart');
  }
}

function resetBackoffIfSettled() {
  const audioFine = !state.wantPlaying || health.status === AUDIO_STATUS.connected;
  if (!state.restartPending && events.status === EVENTS_STATUS.connected && audioFine) {
    state.restartAttempt = 0;
  } else {
    state.backoffResetTimer = setTimeout(resetBackoffIfSettled, BACKOFF_RESET_AFTER_MS);
  }
}

// -- SSE messages and now playing --------------------------------------------------------

function handleEvent(data) {
  if (data.type === 'track') {
    timeline.addTrackEvent(data);
    render();
  } else if (data.type === 'listener') {
    handleListenerEvent(data);
  } else if (data.type === 'track_failed') {
    console.warn(`⚠️ Skipped an unplayable track: ${data.trackId ?? '?'}`);
  }
}

function handleListenerEvent(event) {
  if (
    event.action !== 'attached' ||
    !state.listenerId ||
    event.listenerId !== state.listenerId ||
    typeof event.streamStart !== 'number'
  ) {
    return;
  }
  if (state.streamStart === null) {
    anchor(event.streamStart, 0, 'attached');
    return;
  }
  if (Math.abs(event.streamStart - state.streamStart) < 0.05) return; // a replay of the same
  // Same listener, new first byte: Chromium re-requested a dropped connection with `Range`
  // and the server could not continue it byte-exactly (it does when the ring still holds
  // the next chunk, and then streamStart is unchanged and we returned above), so it sent
  // a fresh burst; currentTime carries on from the bytes it had. Where do they begin?
  // The server paces the stream in real time, so the dropped connection had everything up
  // to the live point; the resumed one starts `burstSeconds` before the (new) live point:
  //     media time of the first new byte = (streamStart + burst) - old anchor's stream start
  // That is late by the reconnect time (~0.3 s), so a switch is shown a little late, never
  // early. (Chromium's `buffered` lags the bytes received by seconds: no help here.)
  const current = timeline.anchor;
  const ctAt = event.streamStart + config.stream.burstSeconds - current.streamStart + current.ctAt;
  anchor(event.streamStart, Math.max(ctAt, audio.currentTime), 'resumed');
}

function anchor(streamStart, ctAt, how) {
  state.streamStart = streamStart;
  timeline.setAnchor(streamStart, ctAt);
  state.anchors.push({ at: Date.now(), listenerId: state.listenerId, streamStart, ctAt, how });
  if (state.anchors.length > 100) state.anchors.shift();
  if (how !== 'attached') {
    const at = ctAt.toFixed(3);
    console.log(`⏱️ Listener ${state.listenerId} re-anchored: stream ${streamStart} at ${at}`);
  }
  render();
}

let lastView = { at: null, current: null, next: null, position: 0 };

function render() {
  lastView = timeline.tick(audio.currentTime, {
    sessionId: state.sessionId,
    listenerId: state.listenerId,
  });
  view.renderNowPlaying(lastView, { playing: state.wantPlaying });
  updateMediaSession(lastView);
}

let mediaSessionKey = null;

function updateMediaSession(current) {
  if (!('mediaSession' in navigator) || typeof MediaMetadata === 'undefined') return;
  const track = current.current?.track;
  const key = track ? `${track.trackId}` : null;
  if (key === mediaSessionKey) return;
  mediaSessionKey = key;
  navigator.mediaSession.metadata = track
    ? new MediaMetadata({ title: track.title, artist: track.artist, album: track.album })
    : null;
}

function updatePlayState() {
  let playState = 'idle';
  if (state.wantPlaying) {
    playState = health.status === AUDIO_STATUS.connected ? 'playing' : 'loading';
    if (state.awaitingGesture) playState = 'blocked';
  }
  view.setPlayState(playState);
  if ('mediaSession' in navigator) {
    navigator.mediaSession.playbackState = state.wantPlaying ? 'playing' : 'paused';
  }
}

// -- a read-only window for tests and the curious -----------------------------------------

function snapshot() {
  return Object.freeze({
    sessionId: state.sessionId,
    listenerId: state.listenerId,
    streamStart: state.streamStart,
    audioStatus: health.status,
    audioHealthy: health.isHealthy,
    sseStatus: events.status,
    restarts: state.restarts,
    restartPending: state.restartPending,
    nowPlaying: lastView.current?.track.trackId ?? null,
    next: lastView.next?.trackId ?? null,
    streamTime: lastView.at,
    currentTime: audio.currentTime,
    lastAdvanceAt: health.lastAdvanceAt,
    firstAdvanceAt: state.firstAdvanceAt,
    wantPlaying: state.wantPlaying,
    awaitingGesture: state.awaitingGesture,
    pageLoadedAt: state.pageLoadedAt,
  });
}

const copyAll = (items) => items.map((item) => Object.freeze({ ...item }));

Object.defineProperty(window, 'radiod', {
  value: Object.freeze({
    get state() {
      return snapshot();
    },
    get switches() {
      return copyAll(timeline.switches);
    },
    get history() {
      return copyAll(state.history);
    },
    get waits() {
      return copyAll(health.waits);
    },
    get anchors() {
      return copyAll(state.anchors);
    },
  }),
  enumerable: true,
});

// -- start --------------------------------------------------------------------------------

view.bind({
  onPlayToggle: togglePlay,
  onSkip: skip,
  onVolume: setVolume,
  onMuteToggle: toggleMute,
  onResume: resumeAfterGesture,
});
restoreVolume();
view.setChannelStatus('audio', health.status);
view.setChannelStatus('events', EVENTS_STATUS.connecting);
audio.addEventListener('timeupdate', render);
audio.addEventListener('pause', () => {
  // Paused from outside the page (media keys, OS controls): follow the listener's intent.
  if (state.wantPlaying && audio.getAttribute('src') && !audio.ended && !audio.error) pause();
});
if ('mediaSession' in navigator) {
  navigator.mediaSession.setActionHandler('play', () => play());
  navigator.mediaSession.setActionHandler('pause', () => pause());
  navigator.mediaSession.setActionHandler('nexttrack', () => skip());
}

// Initialize session before connecting anything.
(async function initializeApp() {
  try {
    await establishSession();
    connectSSE();
    if (state.wantPlaying) play(); // pressed while the session was being established
  } catch (error) {
    console.warn('❌ App initialization failed:', error.message);
    fullRestart(error.status === 503 ? 'server-full' : 'unreachable');
  }
})();
