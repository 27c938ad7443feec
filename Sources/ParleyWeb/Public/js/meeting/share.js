// Screen capture for sharing: getDisplayMedia → a <video> → a canvas → JPEG frames, sent as
// `shareFrame` signals (protocol §6). Signals are relayed, never stored, so a frame is
// worth sending only while it is fresh: frames are taken at a bounded rate and dropped,
// never queued, when the previous one is still being encoded or the connection is backed up.
// Every frame must fit in one frame of at most maxFrameBytes once base64-encoded, so the
// encoder lowers its quality, then its size, until frames fit.

/** Default frames per second; a share is slides and windows, not video. */
export const DEFAULT_FPS = 2;
/** The largest picture sent, before any downscaling the size budget forces. */
const MAX_WIDTH = 1280;
const MAX_HEIGHT = 800;
/** Bytes of the signal frame around the base64 data (type, kind, mime, sizes). */
const ENVELOPE_BYTES = 256;
/** Skip a frame while more than this is waiting to go out on the connection. */
const MAX_BACKLOG_BYTES = 128 * 1024;
const QUALITY = { start: 0.7, min: 0.35, max: 0.8, step: 0.1 };

export class ScreenCapture {
  /**
   * @param {object} options
   * @param {(frame: {mime, width, height, data}) => boolean} options.send sends one frame; false if it did not go.
   * @param {() => number} options.backlogBytes bytes waiting on the connection.
   * @param {() => number} options.maxFrameBytes the server's limit, from welcome.
   * @param {() => void} options.onEnded the user stopped the capture in the browser's own UI.
   * @param {number} [options.fps]
   */
  constructor({ send, backlogBytes, maxFrameBytes, onEnded, fps = DEFAULT_FPS }) {
    this.sendFrame = send;
    this.backlogBytes = backlogBytes;
    this.maxFrameBytes = maxFrameBytes;
    this.onEnded = onEnded;
    this.intervalMs = Math.max(100, Math.round(1000 / fps));
    this.stream = null;
    this.video = null;
    this.canvas = document.createElement('canvas');
    this.timer = null;
    this.busy = false;
    this.quality = QUALITY.start;
    this.scale = 1;
    this.title = 'Screen';
  }

  get active() {
    return this.stream !== null;
  }

  /**
   * Asks the user what to share. Rejects if they refuse or the browser cannot capture.
   * @param {HTMLVideoElement} video where the local preview plays.
   */
  async open(video) {
    if (!navigator.mediaDevices?.getDisplayMedia) throw new Error('This browser cannot share its screen.');
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 5 }, audio: false });
    this.stream = stream;
    this.video = video;
    const [track] = stream.getVideoTracks();
    this.title = track?.label || 'Screen';
    track?.addEventListener('ended', () => {
      if (this.stream === stream) this.onEnded();
    });
    video.srcObject = stream;
    video.muted = true;
    await video.play().catch(() => {});
  }

  /** Starts sending frames; call once the share is committed (the server refuses frames before). */
  startFrames() {
    if (this.timer || !this.stream) return;
    this.timer = setInterval(() => this.captureFrame(), this.intervalMs);
  }

  stopFrames() {
    clearInterval(this.timer);
    this.timer = null;
  }

  close() {
    this.stopFrames();
    this.stream?.getTracks().forEach((track) => track.stop());
    this.stream = null;
    if (this.video) this.video.srcObject = null;
  }

  async captureFrame() {
    const video = this.video;
    if (this.busy || !video || video.readyState < 2 || video.videoWidth === 0) return;
    if (this.backlogBytes() > MAX_BACKLOG_BYTES) return; // the connection is behind: drop this frame
    this.busy = true;
    try {
      const fit = Math.min(1, MAX_WIDTH / video.videoWidth, MAX_HEIGHT / video.videoHeight) * this.scale;
      const width = Math.max(16, Math.round(video.videoWidth * fit));
      const height = Math.max(16, Math.round(video.videoHeight * fit));
      this.canvas.width = width;
      this.canvas.height = height;
      this.canvas.getContext('2d').drawImage(video, 0, 0, width, height);
      const blob = await new Promise((resolve) => this.canvas.toBlob(resolve, 'image/jpeg', this.quality));
      if (!blob || !this.timer) return;
      const budget = Math.floor(((this.maxFrameBytes() - ENVELOPE_BYTES) * 3) / 4);
      if (blob.size > budget) {
        this.shrink();
        return; // too big to send: drop it; the next one is smaller
      }
      if (blob.size < budget / 2) this.grow();
      const data = await toBase64(blob);
      if (this.timer) this.sendFrame({ mime: 'image/jpeg', width, height, data });
    } finally {
      this.busy = false;
    }
  }

  shrink() {
    if (this.quality > QUALITY.min) this.quality = Math.max(QUALITY.min, this.quality - QUALITY.step);
    else this.scale = Math.max(0.2, this.scale * 0.8);
  }

  grow() {
    if (this.scale < 1) this.scale = Math.min(1, this.scale / 0.9);
    else if (this.quality < QUALITY.max) this.quality = Math.min(QUALITY.max, this.quality + QUALITY.step / 2);
  }
}

function toBase64(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).slice(String(reader.result).indexOf(',') + 1));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

const FRAME_TYPES = new Set(['image/jpeg', 'image/png', 'image/webp']);
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * A received frame as a Blob, or null if it is not a well-formed image frame. The bytes
 * only ever reach an <img> as an object URL of an image type.
 */
export function frameBlob(frame) {
  if (!frame || !FRAME_TYPES.has(frame.mime) || typeof frame.data !== 'string' || !BASE64.test(frame.data)) return null;
  try {
    const binary = atob(frame.data);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
    return new Blob([bytes], { type: frame.mime });
  } catch {
    return null;
  }
}
