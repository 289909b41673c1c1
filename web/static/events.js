// The SSE metadata channel: one EventSource at a time, bound to one session.
//
// It never reconnects on its own: on any error it closes the EventSource (so the
// browser's built-in retry cannot open a second connection) and tells the player,
// which decides between "reconnect to the same session" and "full restart" from the
// audio's health (audio first, SSE secondary).

export const EVENTS_STATUS = Object.freeze({
  idle: 'idle',
  connecting: 'connecting',
  connected: 'connected',
  reconnecting: 'reconnecting',
  dead: 'dead',
});

export class EventChannel {
  /**
   * @param {string} endpoint e.g. '/events'
   * @param {{onConnected?:Function, onEvent?:Function, onSessionNotFound?:Function,
   *          onError?:Function, onStatus?:Function}} handlers
   */
  constructor(endpoint, handlers = {}) {
    this.endpoint = endpoint;
    this.handlers = handlers;
    this.source = null;
    this.sessionId = null;
    this.lastEventId = null; // resume point for this session (SSE `id:` of the last event)
    this.status = EVENTS_STATUS.idle;
  }

  connect(sessionId) {
    this.close();
    if (!sessionId) {
      console.error('❌ Cannot connect SSE: no session ID');
      return;
    }
    if (sessionId !== this.sessionId) {
      this.sessionId = sessionId;
      this.lastEventId = null;
    }
    let url = `${this.endpoint}?session=${encodeURIComponent(sessionId)}`;
    // A new EventSource does not send Last-Event-ID; the server takes it as a parameter.
    if (this.lastEventId !== null) url += `&lastEventId=${this.lastEventId}`;
    console.log(`🔌 Connecting SSE to session: ${sessionId}`);
    const source = new EventSource(url);
    this.source = source;
    this.setStatus(EVENTS_STATUS.connecting);
    source.onmessage = (event) => {
      if (source === this.source) this.onMessage(event);
    };
    source.onerror = () => {
      if (source !== this.source) return;
      this.close();
      this.handlers.onError?.();
    };
  }

  close() {
    if (this.source) {
      this.source.onmessage = null;
      this.source.onerror = null;
      this.source.close();
      this.source = null;
    }
  }

  onMessage(event) {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      console.warn('⚠️ Ignoring a malformed SSE message');
      return;
    }
    if (event.lastEventId) {
      const id = Number(event.lastEventId);
      if (Number.isSafeInteger(id)) this.lastEventId = id;
    }
    if (data.type === 'connected') {
      this.setStatus(EVENTS_STATUS.connected);
      this.handlers.onConnected?.(data.sessionId);
    } else if (data.type === 'error') {
      this.close();
      // Either way the session is gone (unknown, or ended by a mixer that gave up): start anew.
      if (data.message === 'session_not_found' || data.message === 'session_ended') {
        this.setStatus(EVENTS_STATUS.dead);
        this.handlers.onSessionNotFound?.(this.sessionId);
      } else {
        console.warn(`⚠️ SSE error from server: ${data.message}`);
        this.handlers.onError?.();
      }
    } else {
      this.handlers.onEvent?.(data);
    }
  }

  setStatus(status) {
    if (status === this.status) return;
    this.status = status;
    this.handlers.onStatus?.(status);
  }
}
