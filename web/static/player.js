// The player: the <audio> element, its source, and the listener's intent (play / pause).
//
// Every source is set and cleared here, so each new source gets a fresh `listener` nonce and
// the health monitor's clocks start again. A live stream is not resumed where it paused:
// pause drops the source and the next play starts at the live point.

import { AUDIO_STATUS } from './health.js';
import { probeSession } from './session.js';
import { nonce } from './util.js';

export class Player {
  /**
   * @param {HTMLAudioElement} audio
   * @param {import('./health.js').AudioHealth} health  watches `audio`
   * @param {import('./view.js').View} view
   * @param {import('./nowplaying.js').NowPlaying} nowPlaying  told of every new source
   * @param {{streamEndpoint:string, gate:{startable:Function, confirmed:Function, lost:Function}}}
   *   options  `gate.startable()` is the session to play now, or null while a restart or the
   *   bootstrap will start the audio itself; `gate.lost(id)` reports a session the server
   *   no longer knows.
   */
  constructor(audio, health, view, nowPlaying, { streamEndpoint, gate }) {
    this.audio = audio;
    this.health = health;
    this.view = view;
    this.nowPlaying = nowPlaying;
    this.streamEndpoint = streamEndpoint;
    this.gate = gate;
    this.listenerId = null;
    this.wantPlaying = false; // the listener's intent: play was pressed and not paused since
    this.awaitingGesture = false; // play() was refused: the "tap to resume" control is showing
    this.firstAdvanceAt = null; // first advancing timeupdate of the current source
    audio.addEventListener('pause', () => {
      // Paused from outside the page (media keys, OS controls): follow the listener's intent.
      if (this.wantPlaying && audio.getAttribute('src') && !audio.ended && !audio.error) {
        this.pause();
      }
    });
  }

  /** Sound is meant to be flowing: play was pressed, not blocked, and a source is set. */
  get isActive() {
    return this.wantPlaying && !this.awaitingGesture && Boolean(this.audio.getAttribute('src'));
  }

  /** The listener pressed play. */
  async play() {
    this.wantPlaying = true;
    this.showState();
    const sessionId = this.gate.startable();
    if (!sessionId) return; // the restart or the bootstrap starts the audio
    if (!this.gate.confirmed()) {
      // A cached ID may be stale (the server restarted). <audio> cannot see a 404, so ask first.
      const verdict = await probeSession(this.streamEndpoint, sessionId);
      if (!this.wantPlaying || sessionId !== this.gate.startable()) return;
      if (verdict === 'unknown') {
        this.gate.lost(sessionId);
        return;
      }
    }
    await this.start(sessionId);
  }

  /** The listener paused. */
  pause() {
    this.wantPlaying = false;
    this.awaitingGesture = false;
    this.view.showResume(false);
    this.view.clearNotice('gesture');
    this.health.stop(AUDIO_STATUS.paused);
    this.audio.pause();
    this.clearSource();
    this.showState();
    this.nowPlaying.render();
  }

  toggle() {
    if (this.awaitingGesture) this.resume(); // this click is the gesture play() needed
    else if (this.wantPlaying) this.pause();
    else this.play();
  }

  /** The tap play() was waiting for. */
  resume() {
    this.view.clearNotice('gesture');
    this.wantPlaying = true;
    const sessionId = this.gate.startable();
    if (sessionId) this.start(sessionId);
  }

  /** A new source on `sessionId`, played at once (the caller knows the session is good). */
  async start(sessionId) {
    if (!this.setSource(sessionId)) return;
    this.health.start();
    this.view.showResume(false);
    this.awaitingGesture = false;
    this.showState();
    try {
      await this.audio.play(); // called synchronously above the await: a click's activation counts
    } catch (error) {
      if (error.name === 'NotAllowedError') {
        this.blocked();
      } else if (error.name !== 'AbortError') {
        // AbortError: a newer source replaced this one. Anything else surfaces as `error`.
        console.warn(`❌ Audio play() failed: ${error.name}`);
      }
    }
  }

  /** play() was refused (no user activation, e.g. after a restart in a background tab). */
  blocked() {
    console.warn('🔇 Playback blocked by the browser - waiting for a tap to resume');
    this.awaitingGesture = true;
    this.health.stop(AUDIO_STATUS.paused);
    this.view.showResume(true);
    const text = 'Your browser blocked playback after reconnecting. Tap to resume.';
    this.view.notice('gesture', text, { tone: 'warn' });
    this.showState();
  }

  setSource(sessionId) {
    if (!sessionId) {
      console.error('❌ Cannot set audio source: no session ID');
      return false;
    }
    this.listenerId = nonce();
    this.firstAdvanceAt = null;
    this.nowPlaying.newSource();
    const session = encodeURIComponent(sessionId);
    this.audio.src = `${this.streamEndpoint}?session=${session}&listener=${this.listenerId}`;
    console.log(`🎵 Audio connecting to session: ${sessionId}`);
    return true;
  }

  clearSource() {
    // removeAttribute + load() ends the download without an `error` event (src="" would fire one).
    this.audio.removeAttribute('src');
    this.audio.load();
    this.listenerId = null;
    this.nowPlaying.newSource();
  }

  /** currentTime advanced (AudioHealth's verdict): the first time marks when sound began. */
  advanced(now) {
    this.firstAdvanceAt ??= now;
  }

  /** The play button's look and the OS media session's state, from intent and audio health. */
  showState() {
    let playState = 'idle';
    if (this.wantPlaying) {
      playState = this.health.status === AUDIO_STATUS.connected ? 'playing' : 'loading';
      if (this.awaitingGesture) playState = 'blocked';
    }
    this.view.setPlayState(playState);
    if ('mediaSession' in navigator) {
      navigator.mediaSession.playbackState = this.wantPlaying ? 'playing' : 'paused';
    }
  }
}
