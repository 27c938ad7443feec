// The client side of the protocol as a pure state machine, after ParleyClient's
// ClientSession: resume from the last seq, retry under the original op ids, gap detection,
// heartbeats, backoff and the WebSocket → long-poll fallback.
//
// No I/O, no clock, no hidden randomness. Every input is a method that returns the actions
// for the shell (connection.js) to perform, in order. Time arrives as `nowMs` in `tick`;
// jitter comes from the `random` function passed in.
//
// Guarantees to its user:
// - 'entry' events come in seq order, each exactly once, with no gaps; a gap makes the
//   session drop the connection and resume.
// - An op keeps one id for its whole life and is resent after every welcome until the
//   server acks or rejects it; each op is completed exactly once. After a resume answered
//   with a snapshot (we were behind the resume window) the server may have forgotten what it
//   committed, so ops already sent are completed as 'outside_resume_window' instead of
//   resent: an op is applied at most once.

import { applyOp, normalizeMeeting } from './state.js';

export const DEFAULT_POLICY = Object.freeze({
  /** 'automatic' (WebSocket, falling back to long-poll), 'websocket' or 'long-poll'. */
  transport: 'automatic',
  /** WebSocket attempts in a row that could not open, while the server answered, before long-polling. */
  attemptsBeforeFallback: 2,
  backoffInitialMs: 200,
  backoffMaxMs: 3000,
  /** A live connection quiet this long gets a ping. */
  heartbeatIntervalMs: 1000,
  /** A ping unanswered for (timeout − interval) drops the connection: keeps a hung server from holding us. */
  heartbeatTimeoutMs: 3000,
  /** A connection not welcomed this long after it was opened (locate included) is dropped. */
  connectTimeoutMs: 6000,
  /**
   * Ops waiting with none answered for this long drop the connection (protocol §14.1): the
   * server answers pings even when the meeting's host is stuck, so pongs prove no progress.
   */
  opAnswerTimeoutMs: 10000,
  /** Bound on ops waiting for an answer. */
  maxPendingOps: 1024,
  /** rate_limited / server_busy rejects are retried under the same id this many times. */
  maxTransientRetries: 5,
  transientRetryMs: 700,
  /** Until the first welcome tells us. */
  maxFrameBytes: 65536,
});

/** Fatal error codes after which reconnecting cannot help (protocol §14). */
const TERMINAL_CODES = new Set(['invalid_token', 'token_expired', 'unknown_meeting', 'join_refused', 'meeting_ended', 'replaced']);
/** Reject codes decided by the server's load, not the rules: retry later under the same id (§8, §13.2). */
const TRANSIENT_REJECTS = new Set(['rate_limited', 'server_busy']);

export class TooManyPendingOps extends Error {}
export class FrameTooLarge extends Error {}
export class SessionClosed extends Error {}

const encoder = new TextEncoder();

export class ClientSession {
  /**
   * @param {object} options
   * @param {string} options.token the meeting token, sent unchanged in hello.
   * @param {string} options.opIdPrefix op ids are `${prefix}-${n}`; unique per page load.
   * @param {object} [options.policy] overrides of DEFAULT_POLICY.
   * @param {() => number} [options.random] uniform in [0, 1), for backoff jitter.
   */
  constructor({ token, opIdPrefix, policy = {}, random = Math.random }) {
    this.token = token;
    this.opIdPrefix = opIdPrefix;
    this.policy = { ...DEFAULT_POLICY, ...policy };
    this.random = random;
    /** { name: 'idle' | 'connecting' | 'awaitingWelcome' | 'live' | 'waitingToReconnect' | 'closed', cid?, reason? } */
    this.phase = { name: 'idle' };
    this.meetingId = null;
    this.participantId = null;
    this.epoch = 0;
    /** The last seq applied (or skipped as redacted) to `meeting`. */
    this.lastSeq = 0;
    /** Our copy; null before the first welcome and after a fault that makes it untrustworthy. */
    this.meeting = null;
    this.limits = { maxFrameBytes: this.policy.maxFrameBytes };
    /** Sent or waiting to be sent, oldest first: [{id, op, retries, sent}]. Resent in order after every welcome. */
    this.unacked = [];
    this.transport = this.policy.transport === 'long-poll' ? 'long-poll' : 'websocket';
    this.hasBeenWelcomed = false;
    this.welcomedOnWebSocket = false;
    this.failuresInARow = 0;
    this.transportFaultsInARow = 0;
    this.nextConnection = 1;
    this.nextOp = 1;
    this.heard = false;
    this.lastHeardMs = null;
    this.pingSentMs = null;
    /** Since when ops have waited with none answered, on the live connection. */
    this.unansweredSinceMs = null;
  }

  /** The connection in use or being opened, if any. */
  get currentConnection() {
    const { name, cid } = this.phase;
    return name === 'connecting' || name === 'awaitingWelcome' || name === 'live' ? cid : null;
  }

  get isLive() {
    return this.phase.name === 'live';
  }

  /** What the next hello carries: nothing until there is state to resume. */
  get resumePoint() {
    if (!this.meetingId || !this.meeting) return undefined;
    return { meeting: this.meetingId, seq: this.lastSeq };
  }

  // MARK: - Inputs from the page

  start() {
    if (this.phase.name !== 'idle') return [];
    return [emit({ kind: 'connection', state: 'connecting' }), ...this.openConnection()];
  }

  /**
   * Queues an op under a fresh id: sent now if live, otherwise after the next welcome.
   * @returns {{id: string, actions: object[]}}
   * @throws SessionClosed, TooManyPendingOps or FrameTooLarge; nothing is queued then.
   */
  send(op) {
    if (this.phase.name === 'closed') throw new SessionClosed(this.phase.reason?.message ?? 'the session is closed');
    if (this.unacked.length >= this.policy.maxPendingOps) {
      throw new TooManyPendingOps(`more than ${this.policy.maxPendingOps} actions are waiting for the server`);
    }
    const id = `${this.opIdPrefix}-${this.nextOp}`;
    const frame = { type: 'op', id, op };
    // Over the limit, a WebSocket frame is dropped unread and never answered (§8): refuse it here.
    if (byteLength(frame) > this.limits.maxFrameBytes) {
      throw new FrameTooLarge(`this is too large to send (over ${this.limits.maxFrameBytes} bytes)`);
    }
    this.nextOp += 1;
    this.unacked.push({ id, op, retries: 0, sent: this.isLive });
    return { id, actions: this.isLive ? [send(frame, this.phase.cid)] : [] };
  }

  /** Signals are ephemeral: when not live, or too large, they are dropped, not queued. */
  signal(signal) {
    if (!this.isLive) return [];
    const frame = { type: 'signal', signal };
    if (byteLength(frame) > this.limits.maxFrameBytes) return [];
    return [send(frame, this.phase.cid)];
  }

  /** Leaves for good. The leave frame can only be delivered while live. */
  leave() {
    if (this.phase.name === 'closed') return [];
    if (this.isLive) {
      const cid = this.phase.cid;
      return [send({ type: 'leave' }, cid), ...this.finish({ code: 'left', message: 'You left the meeting' }, 'leaving')];
    }
    return this.finish({ code: 'left', message: 'You left the meeting' }, 'closing');
  }

  /** A transient reject's retry timer fired: resend the op under its id, if still waiting. */
  retryOp(id) {
    const pending = this.unacked.find((entry) => entry.id === id);
    if (!pending || !this.isLive) return []; // not live: the next welcome resends it anyway
    return [send({ type: 'op', id, op: pending.op }, this.phase.cid)];
  }

  // MARK: - Inputs from the shell

  /** The transport is open: say hello. */
  connected(cid) {
    if (this.phase.name !== 'connecting' || this.phase.cid !== cid) return [];
    this.phase = { name: 'awaitingWelcome', cid };
    this.heard = true;
    const hello = { type: 'hello', token: this.token };
    const resume = this.resumePoint;
    if (resume) hello.resume = resume;
    return [send(hello, cid)];
  }

  received(frame, cid) {
    if (this.currentConnection !== cid) return [];
    this.heard = true;
    switch (frame?.type) {
      case 'welcome': return this.welcomed(frame, cid);
      case 'event': return this.event(frame, cid);
      case 'ack': return this.complete(frame.id, { ok: true, seq: frame.seq, epoch: frame.epoch });
      case 'reject': return this.rejected(frame);
      case 'signal': return [emit({ kind: 'signal', from: frame.from, signal: frame.signal })];
      case 'error': return this.serverError(frame, cid);
      default: return []; // pong, and frame types added later
    }
  }

  /**
   * The connection ended by itself, or could not be opened.
   * @param {{transportFault?: boolean, reason?: string}} info transportFault: the server
   *   answered over HTTP but this transport could not be opened (a blocked WebSocket).
   */
  disconnected(cid, info = {}) {
    if (this.currentConnection !== cid) return [];
    return this.retry(cid, info.reason ?? 'transport closed', info);
  }

  backoffElapsed() {
    if (this.phase.name !== 'waitingToReconnect') return [];
    return this.openConnection();
  }

  /**
   * Call a few times per heartbeat interval with a monotonic time. Silence alone never
   * drops a live connection: a ping must go unanswered. Browsers throttle timers in
   * background tabs, and a late tick must not be mistaken for a silent server.
   */
  tick(nowMs) {
    const cid = this.currentConnection;
    if (cid === null) return [];
    if (this.heard || this.lastHeardMs === null) {
      this.lastHeardMs = nowMs;
      this.heard = false;
      this.pingSentMs = null;
    }
    const silentMs = nowMs - this.lastHeardMs;
    if (!this.isLive) {
      return silentMs >= this.policy.connectTimeoutMs ? this.retry(cid, 'no welcome in time') : [];
    }
    if (this.unacked.length === 0) {
      this.unansweredSinceMs = null;
    } else if (this.unansweredSinceMs === null) {
      this.unansweredSinceMs = nowMs;
    } else if (nowMs - this.unansweredSinceMs >= this.policy.opAnswerTimeoutMs) {
      return this.retry(cid, 'the server stopped answering our ops');
    }
    if (this.pingSentMs !== null) {
      const waitedMs = nowMs - this.pingSentMs;
      const allowedMs = this.policy.heartbeatTimeoutMs - this.policy.heartbeatIntervalMs;
      return waitedMs >= allowedMs ? this.retry(cid, 'the server stopped answering') : [];
    }
    if (silentMs >= this.policy.heartbeatIntervalMs) {
      this.pingSentMs = nowMs;
      return [send({ type: 'ping' }, cid)];
    }
    return [];
  }

  // MARK: - Frames

  welcomed(welcome, cid) {
    if (this.phase.name !== 'awaitingWelcome') return this.retry(cid, 'unexpected welcome');
    if (this.meetingId && welcome.meeting !== this.meetingId) {
      return this.finish({ code: 'meeting_mismatch', message: 'The server welcomed us into another meeting' }, 'closing');
    }
    if (welcome.mode === 'snapshot') {
      if (!welcome.state) return this.retry(cid, 'snapshot welcome without state');
      this.meeting = normalizeMeeting(welcome.state);
      this.lastSeq = welcome.seq;
    } else {
      if (!this.meeting) return this.retry(cid, 'replay welcome without local state');
      // Behind us is harmless (the overlap is dropped as duplicates); ahead would be a gap.
      if (welcome.seq > this.lastSeq) return this.retry(cid, `replay from ${welcome.seq} is past our seq ${this.lastSeq}`);
    }
    this.meetingId = welcome.meeting;
    this.participantId = welcome.participant;
    this.epoch = Math.max(this.epoch, welcome.epoch ?? 0);
    this.limits = { ...this.limits, ...(welcome.limits ?? {}) };
    this.phase = { name: 'live', cid };
    this.failuresInARow = 0;
    this.transportFaultsInARow = 0;
    if (this.transport === 'websocket') this.welcomedOnWebSocket = true;
    const resumed = this.hasBeenWelcomed;
    this.hasBeenWelcomed = true;
    // Behind the resume window the server may no longer know whether it committed what we
    // sent: resending could apply it twice.
    const withdrawn = resumed && welcome.mode === 'snapshot'
      ? this.unacked.filter((entry) => entry.sent).flatMap(({ id }) => this.complete(id, {
        ok: false, code: 'outside_resume_window',
        message: 'The connection was away too long to know whether this was saved; check before sending it again.',
      }))
      : [];
    for (const entry of this.unacked) entry.sent = true;
    return [
      emit({ kind: 'connection', state: resumed ? 'resumed' : 'connected', transport: this.transport }),
      emit({ kind: 'welcome', mode: welcome.mode, resumed }),
      ...withdrawn,
      ...this.unacked.map(({ id, op }) => send({ type: 'op', id, op }, cid)),
    ];
  }

  event(frame, cid) {
    if (!this.isLive || !this.meeting) return this.retry(cid, `event ${frame.seq} before welcome`);
    const seq = frame.seq;
    // Already applied: a replay overlapping what we saw.
    if (seq <= this.lastSeq) return [];
    if (seq !== this.lastSeq + 1) return this.retry(cid, `gap: expected seq ${this.lastSeq + 1}, got ${seq}`);
    this.epoch = Math.max(this.epoch, frame.epoch ?? 0);
    if (frame.redacted) {
      // Someone else's private message: only its position is ours.
      this.lastSeq = seq;
      return [];
    }
    try {
      applyOp(this.meeting, frame.op, frame.issuer, frame.at, seq);
    } catch (error) {
      // Our copy no longer matches the server's; only a snapshot can repair it.
      console.error('parley: cannot apply event', seq, error);
      this.meeting = null;
      return this.retry(cid, `event ${seq} does not apply: ${error.message}`);
    }
    this.lastSeq = seq;
    // Our own op, committed: done, even if its ack never comes (the connection may drop
    // first). Resent after a resume from beyond this seq, the server could no longer tell it
    // from a new op: it only promises to know the ops after a resume point.
    if (frame.opId && frame.issuer === this.participantId) {
      return [emit({ kind: 'entry', event: frame }), ...this.complete(frame.opId, { ok: true, seq, epoch: frame.epoch })];
    }
    return [emit({ kind: 'entry', event: frame })];
  }

  rejected(frame) {
    this.unansweredSinceMs = null; // an answer is progress, even one to retry later
    const pending = this.unacked.find((entry) => entry.id === frame.id);
    if (pending && TRANSIENT_REJECTS.has(frame.code) && pending.retries < this.policy.maxTransientRetries) {
      pending.retries += 1;
      return [{ type: 'retryOpLater', id: frame.id, afterMs: this.policy.transientRetryMs * pending.retries }];
    }
    return this.complete(frame.id, { ok: false, code: frame.code, message: frame.message });
  }

  complete(id, outcome) {
    // An answer for an op already completed (a retry's second answer) is dropped.
    const index = this.unacked.findIndex((entry) => entry.id === id);
    if (index < 0) return [];
    this.unacked.splice(index, 1);
    this.unansweredSinceMs = null; // progress: the clock starts again for the ops still waiting
    return [{ type: 'complete', id, outcome }];
  }

  serverError(error, cid) {
    // The server could not read this op: it was dropped, so it is completed, never resent.
    const invalid = error.id ? this.complete(error.id, { ok: false, code: error.code, message: error.message }) : [];
    if (!error.fatal) return [...invalid, emit({ kind: 'error', error })];
    if (TERMINAL_CODES.has(error.code)) return [...invalid, ...this.finish(error, 'closing')];
    if (error.code === 'seq_from_future' || error.code === 'meeting_mismatch') {
      // The server has less than we saw (or another meeting): start over from a snapshot.
      this.meeting = null;
    }
    // moved, slow_consumer, server_busy, internal_error...: a new connection cures them.
    return [...invalid, emit({ kind: 'error', error }), ...this.retry(cid, error.message)];
  }

  // MARK: - Connections

  openConnection() {
    const cid = this.nextConnection;
    this.nextConnection += 1;
    this.phase = { name: 'connecting', cid };
    this.heard = true;
    this.lastHeardMs = null;
    this.pingSentMs = null;
    return [{ type: 'connect', cid, transport: this.transport }];
  }

  /** Drops the connection and schedules the next attempt. */
  retry(cid, reason, info = {}) {
    const actions = [{ type: 'disconnect', cid, cause: 'retry' }];
    this.unansweredSinceMs = null;
    if (this.isLive) {
      actions.push(emit({ kind: 'connection', state: 'reconnecting', reason }));
    } else {
      this.failuresInARow += 1;
      if (info.transportFault) this.transportFaultsInARow += 1;
      actions.push(emit({ kind: 'attemptFailed', failures: this.failuresInARow, reason }));
    }
    // Fall back only while the WebSocket has never worked: once it has, a failure is the
    // server's, not a proxy's, and long-polling would not help.
    if (this.policy.transport === 'automatic' && this.transport === 'websocket' && !this.welcomedOnWebSocket &&
        this.transportFaultsInARow >= this.policy.attemptsBeforeFallback) {
      this.transport = 'long-poll';
      this.transportFaultsInARow = 0;
      actions.push(emit({ kind: 'transport', transport: this.transport }));
    }
    this.phase = { name: 'waitingToReconnect' };
    actions.push({ type: 'scheduleReconnect', afterMs: this.backoffMs() });
    return actions;
  }

  /**
   * Exponential in the failures in a row, capped, with "equal jitter": a delay in
   * [base/2, base], so clients dropped together do not come back together.
   */
  backoffMs() {
    const doublings = Math.min(this.failuresInARow, 20);
    const base = Math.min(this.policy.backoffMaxMs, this.policy.backoffInitialMs * 2 ** doublings);
    const half = base / 2;
    return Math.round(half + this.random() * (base - half));
  }

  /** @param reason {code, message}; @param cause 'leaving' (flush first) or 'closing'. */
  finish(reason, cause) {
    const actions = [];
    const cid = this.currentConnection;
    if (cid !== null) actions.push({ type: 'disconnect', cid, cause: cause === 'leaving' ? 'leaving' : 'closing' });
    this.phase = { name: 'closed', reason };
    for (const { id } of this.unacked) {
      actions.push({ type: 'complete', id, outcome: { ok: false, code: 'closed', message: reason.message } });
    }
    this.unacked = [];
    actions.push(emit({ kind: 'connection', state: 'closed', reason }));
    actions.push({ type: 'finished', reason });
    return actions;
  }
}

function emit(event) {
  return { type: 'emit', event };
}

function send(frame, cid) {
  return { type: 'send', frame, cid };
}

function byteLength(frame) {
  return encoder.encode(JSON.stringify(frame)).length;
}
