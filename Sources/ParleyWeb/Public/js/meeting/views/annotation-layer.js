// The annotation canvas stacked over a page. It draws the page's committed strokes plus my
// strokes still on their way to the server, and turns pointer gestures into ops: one
// `draw` per stroke, or `erase` for the stroke under the eraser.
//
// Coordinates on the wire are normalized to the page, 0..1 on both axes, so every viewer
// draws the same picture at any size. A stroke's `width` is in thousandths of the page
// width (so a width of 3 is 3 px on a 1000 px wide page), within the server's (0, 100].

import { setData } from '../dom.js';

/** Tool presets: the wire tool and width, and how the stroke is painted. */
export const TOOLS = Object.freeze({
  pen: { tool: 'pen', width: 3 },
  highlighter: { tool: 'highlighter', width: 24 },
});

/** Points per stroke we send. Each costs ~26 bytes of JSON; 1500 keep a draw op near 40 KB, under maxFrameBytes. */
const MAX_POINTS = 1500;
/** Pointer moves closer than this (px) to the last point are skipped. */
const MIN_STEP_PX = 2;
/** The eraser hits a stroke within this distance (px) of its line, beyond its own half width. */
const ERASE_SLOP_PX = 6;

export class AnnotationLayer {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {object} hooks
   * @param {(stroke: {tool, color, width, points}) => void} hooks.onStroke a finished stroke of mine.
   * @param {(stroke: object) => void} hooks.onErase the committed stroke under the eraser.
   * @param {(stroke: object) => boolean} hooks.mayErase whether I may erase it (author, presenter, host).
   */
  constructor(canvas, hooks) {
    this.canvas = canvas;
    this.hooks = hooks;
    this.context = canvas.getContext('2d');
    this.page = null;
    this.strokes = [];
    this.signature = '';
    /** My strokes sent but not yet answered, drawn so the pen feels immediate. id → stroke. */
    this.pending = new Map();
    this.enabled = false;
    this.tool = 'pen';
    this.color = '#e53935';
    this.gesture = null;
    this.cssWidth = 0;
    this.cssHeight = 0;
    canvas.addEventListener('pointerdown', (event) => this.pointerDown(event));
    canvas.addEventListener('pointermove', (event) => this.pointerMove(event));
    canvas.addEventListener('pointerup', (event) => this.pointerUp(event));
    canvas.addEventListener('pointercancel', (event) => this.pointerUp(event));
  }

  /** Shows `page`'s committed strokes; redraws only when they changed. */
  setPage(page, strokes, enabled) {
    this.enabled = enabled;
    this.canvas.classList.toggle('drawing-enabled', enabled);
    const signature = `${page}|${strokes.length}|${strokes.map((s) => s.id).join(',')}`;
    setData(this.canvas, 'strokes', strokes.length);
    if (page !== this.page) {
      this.gesture = null;
      this.pending.clear();
    }
    this.strokes = strokes;
    if (page === this.page && signature === this.signature) return;
    this.page = page;
    this.signature = signature;
    this.redraw();
  }

  setTool(tool) {
    this.tool = tool;
    this.canvas.dataset.tool = tool;
  }

  setColor(color) {
    this.color = color;
  }

  /** Matches the canvas to its displayed size, in device pixels for a sharp line. */
  resize(cssWidth, cssHeight) {
    const ratio = window.devicePixelRatio || 1;
    this.cssWidth = cssWidth;
    this.cssHeight = cssHeight;
    const width = Math.max(1, Math.round(cssWidth * ratio));
    const height = Math.max(1, Math.round(cssHeight * ratio));
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    this.redraw();
  }

  addPending(id, stroke) {
    this.pending.set(id, stroke);
    this.redraw();
  }

  /** The server answered: the stroke is now among the committed ones, or it was refused. */
  settlePending(id) {
    if (this.pending.delete(id)) this.redraw();
  }

  redraw() {
    const { context: g, canvas } = this;
    g.setTransform(1, 0, 0, 1, 0, 0);
    g.clearRect(0, 0, canvas.width, canvas.height);
    const committed = new Set(this.strokes.map((s) => s.id));
    for (const stroke of this.strokes) paint(g, stroke, canvas.width, canvas.height);
    for (const [id, stroke] of this.pending) if (!committed.has(id)) paint(g, stroke, canvas.width, canvas.height);
    if (this.gesture?.points) paint(g, this.gesture, canvas.width, canvas.height);
  }

  // MARK: - Pointer gestures

  pointerDown(event) {
    if (!this.enabled || this.page === null || event.button !== 0) return;
    event.preventDefault();
    this.canvas.setPointerCapture?.(event.pointerId);
    const point = this.normalized(event);
    if (this.tool === 'eraser') {
      this.gesture = { erasing: true, erased: new Set() };
      this.eraseAt(point);
      return;
    }
    const preset = TOOLS[this.tool] ?? TOOLS.pen;
    this.gesture = { tool: preset.tool, width: preset.width, color: this.color, points: [point], pointerId: event.pointerId };
    this.redraw();
  }

  pointerMove(event) {
    let gesture = this.gesture;
    if (!gesture) return;
    const coalesced = event.getCoalescedEvents?.() ?? [];
    for (const e of coalesced.length > 0 ? coalesced : [event]) {
      const point = this.normalized(e);
      if (gesture.erasing) {
        this.eraseAt(point);
        continue;
      }
      const last = gesture.points[gesture.points.length - 1];
      if (Math.hypot((point.x - last.x) * this.cssWidth, (point.y - last.y) * this.cssHeight) < MIN_STEP_PX) continue;
      gesture.points.push(point);
      if (gesture.points.length >= MAX_POINTS) {
        // A very long stroke goes out in pieces, each within the frame limit.
        this.finishStroke();
        gesture = this.gesture = { ...gesture, points: [point] };
      }
    }
    if (!gesture.erasing) this.redraw();
  }

  pointerUp() {
    if (!this.gesture) return;
    if (!this.gesture.erasing) this.finishStroke();
    this.gesture = null;
    this.redraw();
  }

  finishStroke() {
    const { tool, width, color, points } = this.gesture;
    this.hooks.onStroke({ tool, width, color, points: [...points] });
  }

  eraseAt(point) {
    const hit = this.strokeAt(point);
    if (!hit || this.gesture.erased.has(hit.id)) return;
    this.gesture.erased.add(hit.id);
    this.hooks.onErase(hit);
  }

  /** The topmost committed stroke I may erase whose line passes near `point`. */
  strokeAt(point) {
    const box = this.canvas.getBoundingClientRect();
    const w = box.width;
    const h = box.height;
    for (let i = this.strokes.length - 1; i >= 0; i -= 1) {
      const stroke = this.strokes[i];
      if (!this.hooks.mayErase(stroke)) continue;
      const reach = (stroke.width * w) / 1000 / 2 + ERASE_SLOP_PX;
      const pts = outline(stroke);
      for (let j = 0; j < pts.length; j += 1) {
        const a = pts[j];
        const b = pts[Math.min(j + 1, pts.length - 1)];
        if (segmentDistance(point.x * w, point.y * h, a.x * w, a.y * h, b.x * w, b.y * h) <= reach) return stroke;
      }
    }
    return null;
  }

  normalized(event) {
    const box = this.canvas.getBoundingClientRect();
    const round = (v) => Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000;
    return { x: round((event.clientX - box.left) / box.width), y: round((event.clientY - box.top) / box.height) };
  }
}

/** The polyline a stroke covers, for hit testing (shapes by their outline). */
function outline(stroke) {
  const p = stroke.points;
  if (p.length < 2 || stroke.tool === 'pen' || stroke.tool === 'highlighter' || stroke.tool === 'line') return p;
  const a = p[0];
  const b = p[p.length - 1];
  return [a, { x: b.x, y: a.y }, b, { x: a.x, y: b.y }, a];
}

function segmentDistance(px, py, ax, ay, bx, by) {
  const dx = bx - ax;
  const dy = by - ay;
  const length2 = dx * dx + dy * dy;
  const t = length2 === 0 ? 0 : Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / length2));
  return Math.hypot(px - (ax + t * dx), py - (ay + t * dy));
}

/** Paints one stroke on a canvas of `w` × `h` device pixels. Shapes from other clients too. */
function paint(g, stroke, w, h) {
  const points = stroke.points ?? [];
  if (points.length === 0) return;
  const lineWidth = Math.max(1, (stroke.width * w) / 1000);
  g.save();
  g.strokeStyle = stroke.color;
  g.fillStyle = stroke.color;
  g.lineWidth = lineWidth;
  g.lineCap = 'round';
  g.lineJoin = 'round';
  if (stroke.tool === 'highlighter') {
    g.globalAlpha = 0.35;
    g.lineCap = 'square';
  }
  const x = (p) => p.x * w;
  const y = (p) => p.y * h;
  const first = points[0];
  const last = points[points.length - 1];
  g.beginPath();
  switch (stroke.tool) {
    case 'line':
      g.moveTo(x(first), y(first));
      g.lineTo(x(last), y(last));
      g.stroke();
      break;
    case 'rectangle':
      g.strokeRect(x(first), y(first), x(last) - x(first), y(last) - y(first));
      break;
    case 'ellipse':
      g.ellipse((x(first) + x(last)) / 2, (y(first) + y(last)) / 2,
        Math.abs(x(last) - x(first)) / 2, Math.abs(y(last) - y(first)) / 2, 0, 0, 2 * Math.PI);
      g.stroke();
      break;
    case 'text':
      // fillText draws characters, never markup.
      g.font = `${Math.max(10, lineWidth * 6)}px system-ui, sans-serif`;
      g.textBaseline = 'top';
      g.fillText(stroke.text ?? '', x(first), y(first));
      break;
    default:
      if (points.length === 1) {
        g.arc(x(first), y(first), lineWidth / 2, 0, 2 * Math.PI);
        g.fill();
        break;
      }
      g.moveTo(x(first), y(first));
      for (const p of points.slice(1)) g.lineTo(x(p), y(p));
      g.stroke();
  }
  g.restore();
}
