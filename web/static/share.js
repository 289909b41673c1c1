// The station elsewhere: "listen on another device" (a link and its QR code) and "in a music
// player" (.m3u / .pls), and the page's side of such a link: `/?session=ID`.
//
// The link is a capability: it carries the session ID and nothing else (no cookie, no client
// id). Whoever opens it joins this very session: same live stream, same now playing, and may
// skip. The other device is another client of the session, never a second session.

import { probeSession } from './session.js';

const PARAM = 'session';
// What the server accepts as a session ID; anything else would only earn a 400.
const SESSION_ID_RE = /^[A-Za-z0-9_-]{1,128}$/;
const COPIED_FOR_MS = 2000;

/** The link that opens this page on `sessionId`, on any device that can reach this server. */
export function shareLink(sessionId, origin = window.location.origin) {
  const url = new URL('/', origin);
  url.searchParams.set(PARAM, sessionId);
  return url.href;
}

/** `?session=` of this page's address: null when absent, '' when malformed, else the ID. */
function invitedSessionId() {
  const params = new URLSearchParams(window.location.search);
  if (!params.has(PARAM)) return null;
  const sessionId = params.get(PARAM);
  return SESSION_ID_RE.test(sessionId) ? sessionId : '';
}

/** Take `?session=` out of the address bar: a reload then follows the cached session. */
function clearInvitation() {
  const url = new URL(window.location.href);
  url.searchParams.delete(PARAM);
  window.history.replaceState(window.history.state, '', url.href);
}

/**
 * The session this page was invited to by its address, once: its ID if the server knows it
 * (or cannot be asked right now: the channels will find out), null otherwise. An invitation
 * wins over the cached session; an unknown or malformed one is dropped, and the page goes on
 * as if there had been none (its cached session, else a new one).
 * @param {string} streamEndpoint
 * @param {{onExpired?:Function}} handlers `onExpired()` when the invitation was no good
 */
export async function acceptInvitation(streamEndpoint, { onExpired } = {}) {
  const invited = invitedSessionId();
  if (invited === null) return null;
  clearInvitation();
  if (invited && (await probeSession(streamEndpoint, invited)) !== 'unknown') {
    console.log(`🔗 Invited to session: ${invited}`);
    return invited;
  }
  console.warn('🔗 The shared link names no session this server knows - using our own');
  onExpired?.();
  return null;
}

/** The "listen elsewhere" card: link, QR code, playlists; hidden while there is no session. */
export class SharePanel {
  /** @param {string} sessionsEndpoint e.g. '/sessions' */
  constructor(sessionsEndpoint) {
    this.endpoint = sessionsEndpoint;
    const $ = (id) => document.getElementById(id);
    this.el = {
      card: $('share'),
      link: $('share-link'),
      copy: $('share-copy'),
      qr: $('share-qr'),
      m3u: $('share-m3u'),
      pls: $('share-pls'),
    };
    this.el.copy.addEventListener('click', () => this.copy());
  }

  show(sessionId) {
    const { card, link, qr, m3u, pls } = this.el;
    card.hidden = !sessionId;
    if (!sessionId) return;
    const base = `${this.endpoint}/${encodeURIComponent(sessionId)}`;
    link.href = link.textContent = shareLink(sessionId);
    qr.src = `${base}/share.svg`;
    m3u.href = `${base}/listen.m3u`;
    pls.href = `${base}/listen.pls`;
  }

  async copy() {
    const { copy, link } = this.el;
    try {
      await navigator.clipboard.writeText(link.href);
      copy.textContent = 'Copied';
    } catch {
      // No clipboard outside secure contexts (plain http on a LAN address): select it instead.
      window.getSelection()?.selectAllChildren(link);
      copy.textContent = 'Press Ctrl+C';
    }
    setTimeout(() => (copy.textContent = 'Copy'), COPIED_FOR_MS);
  }
}
