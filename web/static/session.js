// The session ID: cached in localStorage, made by POST /create-session, probed by HEAD /stream,
// and held by one CurrentSession that both channels (audio and SSE) connect to.

const STORAGE_KEY = 'audioSessionId';
// A request to a server that vanished mid-connection can hang for minutes: bound them.
const CREATE_TIMEOUT_MS = 10000;
const PROBE_TIMEOUT_MS = 4000;

/** A failed POST /create-session; `status` is 0 when the server could not be reached. */
export class SessionError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'SessionError';
    this.status = status;
  }
}

export function cachedSessionId() {
  try {
    return localStorage.getItem(STORAGE_KEY);
  } catch {
    return null; // storage disabled: every load makes a new session, which still works
  }
}

export function rememberSession(sessionId) {
  try {
    localStorage.setItem(STORAGE_KEY, sessionId);
  } catch {
    /* storage disabled or full: the session lives for this page only */
  }
}

export function forgetSession() {
  try {
    localStorage.removeItem(STORAGE_KEY);
  } catch {
    /* nothing cached */
  }
}

/** POST /create-session → the new session's ID. Throws SessionError. */
export async function createSession(endpoint) {
  let response;
  try {
    response = await fetch(endpoint, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      credentials: 'same-origin',
      cache: 'no-store',
      signal: AbortSignal.timeout(CREATE_TIMEOUT_MS),
    });
  } catch (error) {
    throw new SessionError(0, `Server unreachable (${error.message})`);
  }
  if (!response.ok) {
    let message = `Failed to create session: ${response.status}`;
    try {
      message = (await response.json()).error || message;
    } catch {
      /* not JSON: keep the status line */
    }
    throw new SessionError(response.status, message);
  }
  const data = await response.json();
  if (typeof data.sessionId !== 'string' || !data.sessionId) {
    throw new SessionError(response.status, 'Server answered without a session ID');
  }
  return data.sessionId;
}

/**
 * Does the server know `sessionId`? 'known' | 'unknown' | 'unreachable'.
 * Neither <audio> nor EventSource lets the page see a status code, so a HEAD on the stream
 * URL is how it tells "the server forgot my session" (404; 400: an ID it would never have
 * issued) from "the network failed".
 */
export async function probeSession(streamEndpoint, sessionId) {
  try {
    const url = `${streamEndpoint}?session=${encodeURIComponent(sessionId)}`;
    const response = await fetch(url, {
      method: 'HEAD',
      cache: 'no-store',
      signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
    });
    if (response.status === 404 || response.status === 400) return 'unknown';
    return response.ok ? 'known' : 'unreachable';
  } catch {
    return 'unreachable';
  }
}

/** POST /sessions/ID/skip → its HTTP status; 0 when the server could not be reached. */
export async function requestSkip(sessionsEndpoint, sessionId) {
  try {
    const url = `${sessionsEndpoint}/${encodeURIComponent(sessionId)}/skip`;
    const response = await fetch(url, { method: 'POST', cache: 'no-store' });
    return response.status;
  } catch {
    return 0;
  }
}

/**
 * The page's one session ID, used by the audio and the events channel alike. `confirmed`
 * once the server answered `connected` for it on the events channel.
 */
export class CurrentSession {
  /**
   * @param {string} endpoint POST endpoint that creates a session
   * @param {{onChange?:Function, invitation?:Function}} handlers  `onChange(sessionId, fresh)`
   *   on adopt and drop (`fresh`: a new stream clock, nothing shown for the old session
   *   applies); `invitation()` → a session ID the page was invited to, or null (share.js)
   */
  constructor(endpoint, { onChange, invitation } = {}) {
    this.endpoint = endpoint;
    this.onChange = onChange;
    this.invitation = invitation;
    this.id = null;
    this.confirmed = false;
  }

  /**
   * The session the page's address invites it to (first time only), else the cached ID,
   * else a new one from the server; the one chosen is cached. Throws SessionError.
   */
  async establish() {
    console.log('🔧 Establishing session...');
    const invitation = this.invitation;
    this.invitation = null; // an invitation is taken once: a later restart makes a new session
    const invited = invitation ? await invitation() : null;
    if (invited) {
      console.log(`🔧 Joining shared session: ${invited}`);
      this.adopt(invited);
      rememberSession(invited);
      return invited;
    }
    const cached = cachedSessionId();
    if (cached) {
      console.log(`🔧 Found cached session: ${cached}`);
      this.adopt(cached);
      return cached;
    }
    try {
      const sessionId = await createSession(this.endpoint);
      console.log(`🔧 Created new session: ${sessionId}`);
      this.adopt(sessionId);
      rememberSession(sessionId);
      return sessionId;
    } catch (error) {
      console.warn('❌ Failed to establish session:', error.message);
      throw error;
    }
  }

  /** Forget the ID, here and in storage: the server lost it, or a full restart begins. */
  drop() {
    forgetSession();
    this.set(null, true);
  }

  adopt(sessionId) {
    this.set(sessionId, sessionId !== this.id);
  }

  set(sessionId, fresh) {
    this.id = sessionId;
    this.confirmed = false;
    this.onChange?.(sessionId, fresh);
  }
}
