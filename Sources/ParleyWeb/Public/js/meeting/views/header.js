// The header: the meeting's title, the connection state and transport, who I am, and the
// host's meeting controls (lock, end). Leaving is for everyone.

import { el, setText, setData, show, enable } from '../dom.js';
import { ops } from '../ops.js';

/** What #connection-state says for each state; `failed` shows the reason instead. */
const STATE_TEXT = {
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Reconnecting…',
  resumed: 'Resumed',
};

/** Ending is a two-step click (no modal dialog): the first click arms it for this long. */
const END_ARM_MS = 4000;

export class HeaderView {
  constructor(ctx) {
    this.ctx = ctx;
    this.title = el('h1', { class: 'meeting-title', text: ctx.bootTitle || 'Meeting' });
    this.state = el('span', { id: 'connection-state', class: 'connection-state', role: 'status', data: { state: 'connecting' }, text: STATE_TEXT.connecting });
    this.transport = el('span', { id: 'transport', class: 'transport', title: 'How this page talks to the server', text: '' });
    this.who = el('span', { class: 'me' });
    this.locked = el('span', { class: 'meeting-locked', hidden: true, text: 'Locked' });
    this.lockButton = el('button', { id: 'meeting-lock', type: 'button', hidden: true, on: { click: () => this.toggleLock() } });
    this.endButton = el('button', { id: 'meeting-end', type: 'button', class: 'danger', hidden: true, text: 'End meeting', on: { click: () => this.end() } });
    this.leaveButton = el('button', { id: 'meeting-leave', type: 'button', text: 'Leave', on: { click: () => ctx.leave() } });
    this.endArmed = null;
    this.element = el('header', { class: 'meeting-header' },
      el('div', { class: 'header-title' }, this.title, this.locked),
      el('div', { class: 'header-status' }, this.state, this.transport),
      el('div', { class: 'header-actions' }, this.who, this.lockButton, this.endButton, this.leaveButton));
  }

  render(model) {
    const { meeting, self, status, canAct, closed } = model;
    const isHost = model.isHost && !closed;
    if (meeting) {
      setText(this.title, meeting.title);
      document.title = `${meeting.title} · Parley`;
    }
    setData(this.state, 'state', status.state);
    setText(this.state, status.state === 'failed' || status.state === 'left' ? status.message : STATE_TEXT[status.state]);
    if (status.detail) this.state.title = status.detail;
    else this.state.removeAttribute('title');
    setText(this.transport, status.transport);
    show(this.locked, Boolean(meeting?.locked));
    show(this.lockButton, isHost);
    show(this.endButton, isHost);
    setText(this.lockButton, meeting?.locked ? 'Unlock' : 'Lock');
    enable(this.lockButton, canAct);
    enable(this.endButton, canAct);
    show(this.leaveButton, !closed);
    setText(this.who, self && !closed ? `${self.name} · ${roleLabel(self)}` : '');
  }

  toggleLock() {
    const meeting = this.ctx.meeting();
    if (meeting) this.ctx.send(meeting.locked ? ops.unlock() : ops.lock());
  }

  end() {
    if (!this.endArmed) {
      setText(this.endButton, 'Click again to end for everyone');
      this.endArmed = setTimeout(() => this.disarmEnd(), END_ARM_MS);
      return;
    }
    this.disarmEnd();
    this.ctx.send(ops.end());
  }

  disarmEnd() {
    clearTimeout(this.endArmed);
    this.endArmed = null;
    setText(this.endButton, 'End meeting');
  }
}

function roleLabel(participant) {
  const role = { host: 'Host', presenter: 'Presenter', attendee: 'Attendee' }[participant.role] ?? participant.role;
  return participant.isPresenter && participant.role !== 'presenter' ? `${role}, presenting` : role;
}
