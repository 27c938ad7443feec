// One WebSocket connection (protocol §2.1). It asks for `frames=lines`: a text message may
// carry several frames, one per line. The transport decides nothing about the session; it
// reports open, frames and close, in that order.

/**
 * Opens `${serverUrl}/v1/ws?frames=lines`.
 * @param {string} serverUrl the locator's base URL, http(s)://host:port.
 * @param {{onOpen: () => void, onFrame: (frame: object) => void, onClose: (info: {opened: boolean, reason: string}) => void}} handlers
 *   onClose is called at most once, and never after `close()`.
 */
export function openWebSocket(serverUrl, handlers) {
  return new WebSocketTransport(serverUrl, handlers);
}

function webSocketUrl(serverUrl) {
  const url = new URL('/v1/ws?frames=lines', serverUrl);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

class WebSocketTransport {
  constructor(serverUrl, handlers) {
    this.kind = 'websocket';
    this.handlers = handlers;
    this.opened = false;
    this.closed = false;
    try {
      this.socket = new WebSocket(webSocketUrl(serverUrl));
    } catch (error) {
      // A malformed URL or a blocked scheme: report it like a failed open, asynchronously
      // so the caller has the transport before it hears about it.
      this.socket = null;
      queueMicrotask(() => this.fail(`cannot open a WebSocket: ${error.message}`));
      return;
    }
    this.socket.onopen = () => {
      if (this.closed) return;
      this.opened = true;
      handlers.onOpen();
    };
    this.socket.onmessage = (message) => this.receive(message.data);
    // The close event follows an error event; the close says it all.
    this.socket.onclose = () => this.fail(this.opened ? 'the connection closed' : 'the WebSocket could not be opened');
  }

  receive(data) {
    if (this.closed) return;
    if (typeof data !== 'string') {
      this.fail('the server sent a binary message; Parley frames are text');
      return;
    }
    let frames;
    try {
      frames = data.split('\n').filter((line) => line.length > 0).map((line) => JSON.parse(line));
    } catch {
      this.fail('the server sent a frame that is not JSON');
      return;
    }
    for (const frame of frames) {
      if (this.closed) return;
      this.handlers.onFrame(frame);
    }
  }

  /** @returns {boolean} whether the frame was handed to the socket. */
  send(frame) {
    if (this.closed || !this.opened) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  /** Bytes written but not yet sent; screen sharing drops frames while this is high. */
  get backlogBytes() {
    return this.socket?.bufferedAmount ?? 0;
  }

  /**
   * Closes without reporting. Frames already passed to `send` (a `leave`) still go out:
   * the browser sends queued messages before the close handshake.
   */
  close() {
    if (this.closed) return;
    this.closed = true;
    if (!this.socket) return;
    this.socket.onopen = this.socket.onmessage = this.socket.onclose = null;
    try {
      this.socket.close(1000);
    } catch {
      // Already closing.
    }
  }

  fail(reason) {
    if (this.closed) return;
    this.close();
    this.handlers.onClose({ opened: this.opened, reason });
  }
}
