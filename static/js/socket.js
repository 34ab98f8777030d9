// The live events WebSocket (/api/migrations/events?token=…), reconnected with backoff after it
// closes: 0.5 s, doubling up to 5 s. States: connecting → open → reconnecting → open …; stopped.

const FIRST_DELAY = 500;
const MAX_DELAY = 5000;

export class LiveSocket {
  /**
   * @param {() => string} urlOf   the URL to (re)connect to, asked at each attempt
   * @param {(msg: object) => void} onMessage   every JSON message
   * @param {(state: string, detail?: object) => void} onState   'connecting' | 'open' | 'reconnecting' | 'stopped'
   */
  constructor(urlOf, onMessage, onState) {
    this.urlOf = urlOf;
    this.onMessage = onMessage;
    this.onState = onState;
    this.ws = null;
    this.delay = FIRST_DELAY;
    this.timer = null;
    this.running = false;
    this.opens = 0; // how many times it opened (1 on the first connection)
  }

  get isOpen() {
    return Boolean(this.ws && this.ws.readyState === WebSocket.OPEN);
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.delay = FIRST_DELAY;
    this.connect(this.opens ? 'reconnecting' : 'connecting');
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      try {
        ws.close(1000, 'page stopped listening');
      } catch {
        /* already closed */
      }
    }
    this.emitState('stopped');
  }

  restart() {
    this.stop();
    this.start();
  }

  /** Send a JSON message; false when not connected. */
  send(message) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  connect(state) {
    this.timer = null;
    if (!this.running) return;
    this.emitState(state, {delay: 0});
    let ws;
    try {
      ws = new WebSocket(this.urlOf());
    } catch (exc) {
      console.error('WebSocket could not be created', exc);
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.addEventListener('open', () => {
      if (ws !== this.ws) return;
      this.delay = FIRST_DELAY;
      this.opens += 1;
      this.emitState('open', {first: this.opens === 1});
    });
    ws.addEventListener('message', (event) => {
      if (ws !== this.ws) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        console.warn('WebSocket message is not JSON', event.data);
        return;
      }
      try {
        this.onMessage(message);
      } catch (exc) {
        console.error('handling a WebSocket message failed', exc, message);
      }
    });
    ws.addEventListener('close', () => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.scheduleReconnect();
    });
    // 'error' is always followed by 'close', where the reconnect is scheduled.
  }

  scheduleReconnect() {
    if (!this.running || this.timer) return;
    const wait = this.delay;
    this.delay = Math.min(MAX_DELAY, this.delay * 2);
    this.emitState('reconnecting', {delay: wait});
    this.timer = setTimeout(() => this.connect('reconnecting'), wait);
  }

  emitState(state, detail = {}) {
    try {
      this.onState(state, detail);
    } catch (exc) {
      console.error(exc);
    }
  }
}

/** The events URL of this page's service, with the token when there is one. */
export function eventsUrl(token) {
  const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
  const query = token ? `?token=${encodeURIComponent(token)}` : '';
  return `${scheme}://${window.location.host}/api/migrations/events${query}`;
}
