// The shell around ClientSession: performs its actions (ask the locator, open transports,
// write frames, set timers) and feeds the results back in. All protocol decisions are the
// session's; this file only does I/O.

import { ClientSession } from './session.js';
import { openWebSocket } from './transport-ws.js';
import { openLongPoll } from './transport-poll.js';
import { ApiError } from './api.js';
import { randomId } from './dom.js';

const TICK_MS = 250;
/** How long a reachability probe may take before the server counts as unreachable. */
const PROBE_TIMEOUT_MS = 2000;

export class Connection {
  /**
   * @param {object} options
   * @param {import('./api.js').Api} options.api for the locator.
   * @param {string} options.token
   * @param {string} options.transport 'automatic', 'websocket' or 'long-poll'.
   * @param {(event: object) => void} options.onEvent the session's events: connection,
   *   welcome, entry, signal, error, attemptFailed, transport.
   */
  constructor({ api, token, transport = 'automatic', onEvent }) {
    this.api = api;
    this.onEvent = onEvent;
    // The prefix keeps this page's op ids apart from another tab's of the same participant.
    this.session = new ClientSession({ token, opIdPrefix: `w${randomId(8)}`, policy: { transport } });
    /** cid → { transport?, abort: AbortController } for the connection being opened or used. */
    this.links = new Map();
    /** op id → resolve, for `send`'s promises. */
    this.waiting = new Map();
    this.timers = new Set();
    this.ticker = null;
  }

  get meeting() {
    return this.session.meeting;
  }

  get transportKind() {
    return this.session.transport;
  }

  start() {
    this.ticker = setInterval(() => this.run(this.session.tick(performance.now())), TICK_MS);
    this.run(this.session.start());
  }

  /**
   * Sends an op. Resolves (never rejects) with {ok: true, seq} once the server acked it, or
   * {ok: false, code, message} when it was refused, could not be sent, or the session closed.
   */
  send(op) {
    let sent;
    try {
      sent = this.session.send(op);
    } catch (error) {
      return Promise.resolve({ ok: false, code: 'not_sent', message: error.message });
    }
    const answer = new Promise((resolve) => this.waiting.set(sent.id, resolve));
    this.run(sent.actions);
    return answer;
  }

  /** Sends a signal if live; returns whether it went out (signals are never queued). */
  signal(signal) {
    const actions = this.session.signal(signal);
    this.run(actions);
    return actions.length > 0;
  }

  /** Bytes waiting to go out on the live connection: bulky signals skip a turn while it is high. */
  get backlogBytes() {
    const link = this.links.get(this.session.currentConnection);
    return link?.transport?.backlogBytes ?? 0;
  }

  leave() {
    this.run(this.session.leave());
  }

  // MARK: - Performing actions

  run(actions) {
    for (const action of actions) this.perform(action);
  }

  perform(action) {
    switch (action.type) {
      case 'connect': this.connect(action.cid, action.transport); break;
      case 'send': this.links.get(action.cid)?.transport?.send(action.frame); break;
      case 'disconnect': this.disconnect(action.cid, action.cause); break;
      case 'scheduleReconnect': this.after(action.afterMs, () => this.session.backoffElapsed()); break;
      case 'retryOpLater': this.after(action.afterMs, () => this.session.retryOp(action.id)); break;
      case 'complete': this.complete(action.id, action.outcome); break;
      case 'emit': this.onEvent(action.event); break;
      case 'finished': this.stop(); break;
      default: console.warn('parley: unknown session action', action);
    }
  }

  after(ms, input) {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.run(input());
    }, ms);
    this.timers.add(timer);
  }

  complete(id, outcome) {
    const resolve = this.waiting.get(id);
    this.waiting.delete(id);
    resolve?.(outcome);
  }

  stop() {
    clearInterval(this.ticker);
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }

  disconnect(cid, cause) {
    const link = this.links.get(cid);
    this.links.delete(cid);
    if (!link) return;
    link.abort.abort();
    // After a `leave`, let it reach the server: the server's close is the confirmation.
    link.transport?.close({ flush: cause === 'leaving' });
  }

  /** Asks the locator where the meeting is now, then opens the transport there. */
  async connect(cid, kind) {
    const link = { transport: null, abort: new AbortController() };
    this.links.set(cid, link);
    let serverUrl;
    try {
      serverUrl = await this.api.locate(link.abort.signal);
    } catch (error) {
      if (this.links.get(cid) !== link) return; // the session moved on (timeout, leave)
      if (error instanceof ApiError && error.code === 'unknown_meeting') {
        // Told to the session like the server's own fatal error: reconnecting cannot help.
        this.run(this.session.received({ type: 'error', code: 'unknown_meeting', message: error.message, fatal: true }, cid));
        return;
      }
      this.run(this.session.disconnected(cid, { reason: `locating the meeting failed: ${error.message}` }));
      return;
    }
    if (this.links.get(cid) !== link) return;
    const handlers = {
      onOpen: () => this.run(this.session.connected(cid)),
      onFrame: (frame) => this.run(this.session.received(frame, cid)),
      onClose: (info) => this.transportClosed(cid, link, serverUrl, info),
    };
    link.transport = kind === 'long-poll' ? openLongPoll(serverUrl, handlers) : openWebSocket(serverUrl, handlers);
  }

  async transportClosed(cid, link, serverUrl, { opened, reason }) {
    // A WebSocket that never opened although the server answers HTTP is blocked on the way
    // (a proxy, a firewall): that, and only that, counts towards falling back to long-polling.
    let transportFault = false;
    if (!opened && link.transport?.kind === 'websocket') transportFault = await reachable(serverUrl);
    if (this.links.get(cid) !== link) return;
    this.run(this.session.disconnected(cid, { transportFault, reason }));
  }
}

/**
 * Whether the server answers plain HTTP. `no-cors` because in a zone the server is another
 * origin; an opaque answer still proves it is up, while a network failure rejects.
 */
async function reachable(serverUrl) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), PROBE_TIMEOUT_MS);
  try {
    await fetch(new URL('/v1/ping', serverUrl), { mode: 'no-cors', cache: 'no-store', signal: abort.signal });
    return true;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
