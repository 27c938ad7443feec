// HTTP long-polling, the "virtual socket" of protocol §2.2, for networks that block
// WebSockets. The first frame sent (hello) opens the session with POST /v1/poll; later
// frames go up in batches with POST /v1/poll/{sid}?batch=N, one request at a time so their
// order is kept; frames come down with GET /v1/poll/{sid}?waitMs=N&after=K.
//
// Both are numbered because a browser or a proxy may resend a request whose connection died
// before the answer came: the server takes a resent batch once, and sends again a received
// batch whose answer was lost, rather than the client seeing a gap (protocol §2.2).
//
// Bodies are sent as text/plain: in a zone the collaboration server is another origin, and
// a "simple" request needs no CORS preflight. The session is never DELETEd; an abandoned
// one expires on the server after 30 s, and a reconnect replaces it anyway (§11).

/** How long one receive may wait on the server; well under the 30 s session expiry. */
const WAIT_MS = 25000;
/** The server accepts at most 1 MiB per batch; stay clear of it. */
const MAX_BATCH_BYTES = 512 * 1024;

export function openLongPoll(serverUrl, handlers) {
  return new LongPollTransport(serverUrl, handlers);
}

class LongPollTransport {
  /** Same contract as the WebSocket transport: onOpen, onFrame..., then at most one onClose. */
  constructor(serverUrl, handlers) {
    this.kind = 'long-poll';
    this.base = new URL('/v1/poll', serverUrl).href;
    this.handlers = handlers;
    this.queue = [];
    this.queuedBytes = 0;
    this.sid = null;
    /** Batches posted, and batches received: the `batch` and `after` of the next requests. */
    this.posted = 0;
    this.received = 0;
    this.sending = false;
    this.closed = false;
    // Separate, so that closing after a `leave` can stop receiving but finish sending.
    this.receiveAbort = new AbortController();
    this.sendAbort = new AbortController();
    // There is no handshake before hello: the virtual socket opens with it.
    queueMicrotask(() => {
      if (!this.closed) handlers.onOpen();
    });
  }

  send(frame) {
    if (this.closed) return false;
    const text = JSON.stringify(frame);
    this.queue.push(text);
    this.queuedBytes += text.length;
    this.pump();
    return true;
  }

  /** Frames waiting to be posted; screen sharing drops frames while any wait. */
  get backlogBytes() {
    return this.queuedBytes + (this.sending ? 1 : 0);
  }

  /**
   * Closes without reporting. With `flush`, frames already passed to `send` (a `leave`)
   * are still posted; receiving stops at once.
   */
  close({ flush = false } = {}) {
    if (this.closed) return;
    this.closed = true;
    this.receiveAbort.abort();
    if (!flush || (!this.sending && this.queue.length === 0)) this.sendAbort.abort();
  }

  fail(reason) {
    if (this.closed) return;
    this.close();
    this.handlers.onClose({ opened: this.sid !== null, reason });
  }

  /** Posts queued frames, one request at a time. */
  async pump() {
    if (this.sending) return;
    this.sending = true;
    try {
      while (this.queue.length > 0 && !this.sendAbort.signal.aborted) {
        if (this.sid === null) await this.openSession(this.takeOne());
        else await this.post(this.takeBatch());
      }
    } catch (error) {
      this.fail(describe(error));
    } finally {
      this.sending = false;
      if (this.closed) this.sendAbort.abort(); // a flush is done
    }
  }

  takeOne() {
    const text = this.queue.shift();
    this.queuedBytes -= text.length;
    return text;
  }

  /** As many queued frames as fit in one request body, as a JSON array; at least one. */
  takeBatch() {
    const batch = [this.takeOne()];
    let bytes = batch[0].length + 2;
    while (this.queue.length > 0 && bytes + this.queue[0].length + 1 <= MAX_BATCH_BYTES) {
      bytes += this.queue[0].length + 1;
      batch.push(this.takeOne());
    }
    return `[${batch.join(',')}]`;
  }

  async openSession(hello) {
    const response = await fetch(this.base, this.request('POST', this.sendAbort, hello));
    if (this.closed) return;
    if (response.ok) {
      const { sid } = await response.json();
      if (this.closed) return;
      this.sid = sid;
      this.receiveLoop();
      return;
    }
    // A refused hello names one of our error codes: tell the session as a fatal error
    // frame, so it can tell "bad token" from "try again".
    const body = await readError(response);
    if (body?.code && response.status === 400) {
      this.handlers.onFrame({ type: 'error', code: body.code, message: body.message ?? body.code, fatal: true });
    }
    this.fail(`opening a long-poll session failed with ${response.status}`);
  }

  async post(batch) {
    this.posted += 1;
    const url = `${this.base}/${encodeURIComponent(this.sid)}?batch=${this.posted}`;
    const response = await fetch(url, this.request('POST', this.sendAbort, batch));
    if (this.closed) return;
    if (response.status === 404) this.fail('the long-poll session expired');
    else if (!response.ok) this.fail(`sending failed with ${response.status}`);
  }

  async receiveLoop() {
    const base = `${this.base}/${encodeURIComponent(this.sid)}?waitMs=${WAIT_MS}`;
    try {
      while (!this.closed) {
        const response = await fetch(`${base}&after=${this.received}`, this.request('GET', this.receiveAbort));
        if (this.closed) return;
        if (response.status === 404) return this.fail('the long-poll session expired');
        if (response.status !== 200) return this.fail(`receiving failed with ${response.status}`);
        const frames = await response.json();
        if (!Array.isArray(frames)) return this.fail('the server sent something other than a frame array');
        this.received += 1;
        for (const frame of frames) {
          if (this.closed) return;
          this.handlers.onFrame(frame);
        }
      }
    } catch (error) {
      this.fail(describe(error));
    }
  }

  request(method, abort, body) {
    const init = { method, cache: 'no-store', signal: abort.signal };
    if (body !== undefined) {
      init.body = body;
      init.headers = { 'Content-Type': 'text/plain;charset=UTF-8' };
    }
    return init;
  }
}

async function readError(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

function describe(error) {
  return error?.name === 'AbortError' ? 'closed' : `the server could not be reached (${error?.message ?? error})`;
}
