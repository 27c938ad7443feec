// Screen sharing and its control token. The sharer captures the screen and sends frames;
// viewers see the latest frame in #share-view. Anyone may request control; the sharer grants
// or revokes it; the holder's clicks and keys over #share-view go to the sharer as `input`
// signals, which the sharer's page shows as a marker and a line in #share-input-log.

import { el, setText, show, enable, syncKeyed } from '../dom.js';
import { clampTitle, ops } from '../ops.js';
import { mayControlShare, participantOf } from '../state.js';
import { ScreenCapture, frameBlob } from '../share.js';

const INPUT_LOG_LINES = 50;
const MARKER_MS = 1500;

export class SharePanel {
  constructor(ctx) {
    this.ctx = ctx;
    this.model = null;
    this.starting = false;
    this.frameUrl = null;
    this.frameFrom = null;
    this.capture = new ScreenCapture({
      send: (frame) => ctx.signal({ shareFrame: frame }),
      backlogBytes: () => ctx.backlogBytes(),
      maxFrameBytes: () => ctx.maxFrameBytes(),
      onEnded: () => this.stop(),
    });

    this.status = el('span', { class: 'share-status', role: 'status' });
    this.startButton = el('button', { id: 'share-start', type: 'button', text: 'Share screen', on: { click: () => this.start() } });
    this.stopButton = el('button', { id: 'share-stop', type: 'button', text: 'Stop sharing', on: { click: () => this.stop() } });
    this.requestButton = el('button', { id: 'control-request', type: 'button', text: 'Request control', on: { click: () => ctx.send(ops.requestControl()) } });
    this.releaseButton = el('button', { id: 'control-release', type: 'button', text: 'Release control', on: { click: () => ctx.send(ops.releaseControl()) } });
    this.revokeButton = el('button', { id: 'control-revoke', type: 'button', text: 'Take back control', on: { click: () => ctx.send(ops.revokeControl()) } });
    this.requests = el('ul', { id: 'control-requests', class: 'control-requests', attrs: { 'aria-label': 'Control requests' } });

    this.view = el('img', { id: 'share-view', class: 'share-view', alt: 'The shared screen', tabIndex: 0, hidden: true, draggable: false });
    this.view.addEventListener('click', (event) => this.sendPointer(event));
    this.view.addEventListener('keydown', (event) => this.sendKey(event));
    this.view.addEventListener('load', () => this.releaseOldFrame());
    this.preview = el('video', { id: 'share-preview', class: 'share-preview', hidden: true, attrs: { playsinline: '', muted: '' } });
    this.marker = el('div', { class: 'share-input-marker', hidden: true, attrs: { 'aria-hidden': 'true' } });
    this.stage = el('div', { class: 'share-stage', hidden: true }, this.view, this.preview, this.marker);
    this.inputLog = el('ol', { id: 'share-input-log', class: 'share-input-log', hidden: true, attrs: { 'aria-label': 'Input from the control holder' } });
    this.markerTimer = null;

    this.element = el('section', { class: 'share-panel', attrs: { 'aria-labelledby': 'share-heading' } },
      el('div', { class: 'share-bar' },
        el('h3', { id: 'share-heading', text: 'Screen sharing' }), this.status,
        this.startButton, this.stopButton, this.requestButton, this.releaseButton, this.revokeButton),
      this.requests, this.stage, this.inputLog);
  }

  render(model) {
    this.model = model;
    const { meeting, me, isPresenter, isHost, canAct } = model;
    const enabled = Boolean(meeting?.settings.features.applicationSharing);
    show(this.element, enabled);
    if (!meeting) return;
    const share = meeting.share ?? null;
    const name = (id) => participantOf(meeting, id)?.name ?? id;
    const mine = share?.sharer === me;
    const holder = share?.controlHolder ?? null;

    // The capture follows the committed state: frames only while the share is ours.
    if (mine && this.capture.active) this.capture.startFrames();
    else this.capture.stopFrames();
    // Ours no more (the host stopped it, the meeting ended, this tab was replaced): let go of the screen.
    if ((!mine || !canAct) && this.capture.active && !this.starting) this.capture.close();
    if ((share?.sharer ?? null) !== this.frameFrom) this.clearFrame();

    let status = 'Nobody is sharing.';
    if (share) {
      status = mine ? `You are sharing “${share.title}”.` : `${name(share.sharer)} is sharing “${share.title}”.`;
      if (holder) status += holder === me ? ' You have control.' : ` ${name(holder)} has control.`;
      if (mine && !this.capture.active && !this.starting) status += ' Your screen is not being captured: press “Resume sharing”.';
    }
    setText(this.status, status);

    const mayStart = enabled && (isPresenter || isHost);
    show(this.startButton, mayStart && (!share || (mine && !this.capture.active)));
    setText(this.startButton, mine ? 'Resume sharing' : 'Share screen');
    enable(this.startButton, canAct && !this.starting);
    show(this.stopButton, Boolean(share) && (mine || isHost));
    enable(this.stopButton, canAct);

    const requested = Boolean(share?.controlRequests.includes(me));
    show(this.requestButton, Boolean(share) && !mine && holder !== me);
    setText(this.requestButton, requested ? 'Control requested' : 'Request control');
    enable(this.requestButton, canAct && !requested);
    show(this.releaseButton, Boolean(share) && holder === me);
    enable(this.releaseButton, canAct);
    show(this.revokeButton, mine && holder !== null);
    enable(this.revokeButton, canAct);

    const requests = mine ? share.controlRequests : [];
    show(this.requests, requests.length > 0);
    syncKeyed(this.requests, requests, (id) => id, (id) => this.createRequest(id), (node, id) => {
      setText(node.firstChild, name(id));
      enable(node.lastChild, canAct);
    });

    show(this.stage, Boolean(share));
    show(this.preview, mine && this.capture.active);
    show(this.view, Boolean(share) && !mine);
    const controlling = Boolean(share) && !mine && mayControlShare(meeting, me);
    this.view.classList.toggle('has-control', controlling);
    show(this.inputLog, mine);
  }

  createRequest(id) {
    return el('li', {},
      el('span', { class: 'control-requester' }),
      el('button', { type: 'button', class: 'control-grant', data: { participant: id }, text: 'Give control', on: { click: () => this.ctx.send(ops.grantControl(id)) } }));
  }

  async start() {
    if (this.starting || this.capture.active) return;
    this.starting = true;
    this.ctx.refresh();
    try {
      await this.capture.open(this.preview);
    } catch (error) {
      this.starting = false;
      this.ctx.notify(error?.name === 'NotAllowedError' ? 'Screen sharing was not allowed.' : `Screen sharing failed: ${error.message}`);
      this.ctx.refresh();
      return;
    }
    // After a reload the share may still be ours: then only the capture was missing.
    if (this.model?.meeting?.share?.sharer !== this.model?.me) {
      const outcome = await this.ctx.send(ops.startShare('screen', clampTitle(this.capture.title)));
      if (!outcome.ok) this.capture.close();
    }
    this.starting = false;
    this.ctx.refresh();
  }

  async stop() {
    const share = this.model?.meeting?.share;
    this.capture.close();
    if (share && (share.sharer === this.model.me || this.model.isHost)) await this.ctx.send(ops.stopShare());
    this.ctx.refresh();
  }

  // MARK: - Signals

  /** A signal from another participant: a frame to show, or input for my share. */
  handleSignal(from, signal) {
    const meeting = this.model?.meeting;
    const share = meeting?.share;
    if (!share) return;
    if (signal.shareFrame && from === share.sharer && from !== this.model.me) this.showFrame(from, signal.shareFrame);
    else if (signal.input && share.sharer === this.model.me) this.showInput(from, signal.input);
  }

  showFrame(from, frame) {
    const blob = frameBlob(frame);
    if (!blob) return;
    // The previous URL is released once the new picture has loaded, so the view never blanks.
    if (this.frameUrl) this.oldFrameUrl ??= this.frameUrl;
    this.frameUrl = URL.createObjectURL(blob);
    this.frameFrom = from;
    this.view.src = this.frameUrl;
  }

  releaseOldFrame() {
    if (this.oldFrameUrl && this.oldFrameUrl !== this.frameUrl) URL.revokeObjectURL(this.oldFrameUrl);
    this.oldFrameUrl = null;
  }

  clearFrame() {
    this.view.removeAttribute('src');
    if (this.frameUrl) URL.revokeObjectURL(this.frameUrl);
    this.releaseOldFrame();
    this.frameUrl = null;
    this.frameFrom = this.model?.meeting?.share?.sharer ?? null;
  }

  showInput(from, input) {
    const name = participantOf(this.model.meeting, from)?.name ?? from;
    const hasPoint = Number.isFinite(input.x) && Number.isFinite(input.y);
    const where = hasPoint ? ` at (${input.x.toFixed(2)}, ${input.y.toFixed(2)})` : '';
    const key = typeof input.key === 'string' ? ` “${input.key.slice(0, 32)}”` : '';
    this.inputLog.append(el('li', { class: 'share-input', text: `${name}: ${String(input.event).slice(0, 32)}${key}${where}` }));
    while (this.inputLog.childElementCount > INPUT_LOG_LINES) this.inputLog.firstChild.remove();
    this.inputLog.scrollTop = this.inputLog.scrollHeight;
    if (hasPoint) {
      this.marker.style.left = `${Math.min(1, Math.max(0, input.x)) * 100}%`;
      this.marker.style.top = `${Math.min(1, Math.max(0, input.y)) * 100}%`;
      show(this.marker, true);
      clearTimeout(this.markerTimer);
      this.markerTimer = setTimeout(() => show(this.marker, false), MARKER_MS);
    }
  }

  /** Input is the control holder's (or the sharer's while nobody holds it; §5.2). */
  mayControl() {
    const { meeting, me } = this.model ?? {};
    return Boolean(meeting?.share) && meeting.share.sharer !== me && mayControlShare(meeting, me);
  }

  sendPointer(event) {
    if (!this.mayControl()) return;
    const box = this.view.getBoundingClientRect();
    const clamp = (v) => Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000;
    this.ctx.signal({ input: { event: 'click', x: clamp((event.clientX - box.left) / box.width), y: clamp((event.clientY - box.top) / box.height) } });
  }

  sendKey(event) {
    if (!this.mayControl() || event.key === 'Tab') return; // Tab still moves focus
    event.preventDefault();
    this.ctx.signal({ input: { event: 'keydown', key: event.key } });
  }
}
