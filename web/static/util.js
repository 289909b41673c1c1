// Small helpers shared by the player's modules.

/** Delay before retry number `attempt` (1-based): base, 2·base, 4·base … capped. */
export function backoffMs(attempt, baseMs = 1000, capMs = 30000) {
  return Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A fresh URL-safe random token (the stream's `listener` nonce).
 * `crypto.getRandomValues`, not `randomUUID`: the latter only exists on secure
 * contexts, and radiod is often reached over plain http on a LAN address.
 */
export function nonce(bytes = 9) {
  const raw = new Uint8Array(bytes);
  crypto.getRandomValues(raw);
  return btoa(String.fromCharCode(...raw))
    .replace(/\+/g, '-')
    .replace(/\//g, '_')
    .replace(/=+$/, '');
}

/** `session_AbCdEf…` → `AbCdEf12`: enough to tell sessions apart on screen. */
export function shortId(id) {
  return id ? id.replace(/^session_/, '').slice(0, 8) : '—';
}

export function formatTime(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '0:00';
  const whole = Math.floor(seconds);
  const m = Math.floor(whole / 60);
  const s = String(whole % 60).padStart(2, '0');
  return `${m}:${s}`;
}
