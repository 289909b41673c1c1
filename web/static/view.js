// The DOM side of the player: it renders state and reports clicks; it decides nothing.

import { Cover } from './cover.js';
import { formatTime, shortId } from './util.js';

const $ = (id) => document.getElementById(id);

function hue(text) {
  let h = 0;
  for (const ch of text) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

export class View {
  constructor() {
    this.el = {
      player: $('player'),
      session: $('session-id'),
      art: $('art'),
      artInitial: $('art-initial'),
      title: $('np-title'),
      artist: $('np-artist'),
      album: $('np-album'),
      progress: $('np-progress'),
      fill: $('np-fill'),
      elapsed: $('np-elapsed'),
      duration: $('np-duration'),
      play: $('btn-play'),
      skip: $('btn-skip'),
      mute: $('btn-mute'),
      volume: $('volume'),
      resume: $('btn-resume'),
      nextTitle: $('next-title'),
      nextArtist: $('next-artist'),
      audioHealth: $('health-audio'),
      eventsHealth: $('health-events'),
      notice: $('notice'),
    };
    this.cover = new Cover(this.el.art, $('art-cover'));
    this.shownTrackKey = null;
    this.noticeTimer = null;
    this.noticeClear = null;
    this.noticeKind = null;
  }

  /** Wire the controls' clicks to the listener's intents (keys: see keys.js). */
  bind({ onPlayToggle, onSkip, onVolume, onMuteToggle, onResume }) {
    this.el.play.addEventListener('click', onPlayToggle);
    this.el.skip.addEventListener('click', onSkip);
    this.el.mute.addEventListener('click', onMuteToggle);
    this.el.resume.addEventListener('click', onResume);
    this.el.volume.addEventListener('input', () => onVolume(Number(this.el.volume.value) / 100));
  }

  get playButton() {
    return this.el.play;
  }

  setSession(sessionId) {
    this.el.session.textContent = shortId(sessionId);
    this.el.session.dataset.full = sessionId ?? '';
    this.el.session.title = sessionId ?? '';
    this.el.skip.disabled = !sessionId;
  }

  /** 'idle' | 'loading' | 'playing' | 'blocked' (play() refused: waiting for a tap) */
  setPlayState(playState) {
    this.el.player.dataset.state = playState;
    const pausable = playState === 'loading' || playState === 'playing';
    this.el.play.setAttribute('aria-label', pausable ? 'Pause' : 'Play');
  }

  setVolume(volume, muted) {
    this.el.volume.value = String(Math.round(volume * 100));
    this.el.volume.style.setProperty('--level', `${Math.round(volume * 100)}%`);
    this.el.mute.setAttribute('aria-pressed', String(muted));
    this.el.mute.setAttribute('aria-label', muted ? 'Unmute' : 'Mute');
    this.el.player.dataset.muted = String(muted);
  }

  setChannelStatus(channel, status) {
    const row = channel === 'audio' ? this.el.audioHealth : this.el.eventsHealth;
    row.dataset.status = status;
    // Status names are written for people already (see AUDIO_STATUS in health.js).
    row.querySelector('.status-text').textContent = status;
  }

  showResume(show) {
    this.el.resume.hidden = !show;
    if (show) this.el.resume.focus({ preventScroll: true });
  }

  /**
   * A status line for screen readers and eyes, on behalf of `kind` (who said it: 'restart',
   * 'sse', 'gesture', …) so that only its sayer clears it. With `until` (Date.now() ms) it
   * counts down; the live region is only re-announced when the message itself changes.
   */
  notice(kind, message, options) {
    this.noticeKind = message ? kind : null;
    this.showNotice(message, options);
  }

  /** Clear the notice if `kind` said the one showing. */
  clearNotice(kind) {
    if (this.noticeKind === kind) this.notice(null, '');
  }

  showNotice(message, { until = null, tone = 'info', clearAfterMs = null } = {}) {
    clearInterval(this.noticeTimer);
    clearTimeout(this.noticeClear);
    this.noticeTimer = null;
    const el = this.el.notice;
    el.dataset.tone = message ? tone : '';
    if (!message) {
      el.textContent = '';
      return;
    }
    // The countdown lives in its own aria-hidden span: the live region announces the
    // message once, not every second.
    const text = document.createElement('span');
    const count = document.createElement('span');
    count.setAttribute('aria-hidden', 'true');
    const [before, after = ''] = message.split('{s}');
    text.textContent = until === null ? before : `${before.trimEnd()}`;
    el.replaceChildren(text);
    if (until !== null) {
      const tail = document.createElement('span');
      tail.textContent = after;
      el.append(count, tail);
      const render = () => {
        const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
        count.textContent = ` ${left} s`;
      };
      render();
      this.noticeTimer = setInterval(render, 1000);
    }
    if (clearAfterMs !== null) {
      this.noticeClear = setTimeout(() => this.showNotice(''), clearAfterMs);
    }
  }

  /** Now playing + next up, from Timeline.tick(). */
  renderNowPlaying(view, { playing }) {
    const current = view.current?.track ?? null;
    // Nothing audible yet: say whether we are tuning in or waiting for a press on play.
    const key = current ? `${current.trackId}@${view.current.startsAt}` : `none:${playing}`;
    if (key !== this.shownTrackKey) {
      this.shownTrackKey = key;
      if (current) this.showTrack(current);
      else this.showNoTrack(playing);
    }
    this.showProgress(current, view.position);
    this.showNext(view.next);
  }

  showTrack(track) {
    this.el.title.textContent = track.title || 'Untitled';
    this.el.artist.textContent = track.artist || 'Unknown artist';
    this.el.album.textContent = track.album || '';
    this.el.artInitial.textContent = (track.title || '♪').trim().charAt(0).toUpperCase();
    this.el.art.style.setProperty('--art-hue', String(hue(`${track.artist}${track.album}`)));
    this.cover.show(track.cover);
    this.el.duration.textContent = formatTime(track.duration);
    document.title = `${track.title} · ${track.artist} — radiod`;
  }

  showNoTrack(playing) {
    this.el.title.textContent = playing ? 'Tuning in…' : 'Press play to tune in';
    this.el.artist.textContent = playing ? '' : 'Your own radio, mixed live';
    this.el.album.textContent = '';
    this.el.artInitial.textContent = '♪';
    this.cover.show(null);
    this.el.duration.textContent = '0:00';
    document.title = 'radiod';
  }

  showProgress(track, elapsed) {
    const duration = track?.duration ?? 0;
    const position = track ? Math.min(elapsed, duration || elapsed) : 0;
    const pct = duration > 0 ? Math.min(100, (position / duration) * 100) : 0;
    this.el.fill.style.width = `${pct.toFixed(2)}%`;
    this.el.progress.setAttribute('aria-valuenow', pct.toFixed(0));
    this.el.progress.setAttribute(
      'aria-valuetext',
      track ? `${formatTime(position)} of ${formatTime(duration)}` : 'not playing',
    );
    this.el.elapsed.textContent = formatTime(position);
  }

  showNext(next) {
    this.el.nextTitle.textContent = next ? next.title || 'Untitled' : '—';
    this.el.nextArtist.textContent = next
      ? [next.artist, next.album].filter(Boolean).join(' — ')
      : '';
  }
}
