// The attendee pane: who is in the meeting (with role, presenter and presence), the host's
// hand-over actions, and the polls.

import { el, setText, setData, show, syncKeyed } from '../dom.js';
import { ops } from '../ops.js';
import { PollsView } from './polls.js';

const PRESENCE_TEXT = { connected: 'online', reconnecting: 'reconnecting', left: 'left' };

export class AttendeePane {
  constructor(ctx) {
    this.ctx = ctx;
    this.count = el('span', { class: 'count' });
    this.list = el('ul', { id: 'attendee-list', class: 'attendee-list' });
    this.polls = new PollsView(ctx);
    this.element = el('section', { class: 'pane attendee-pane', attrs: { 'aria-labelledby': 'attendees-heading' } },
      el('h2', { id: 'attendees-heading' }, 'Attendees ', this.count),
      this.list,
      this.polls.element);
  }

  render(model) {
    const { meeting, me, isHost, canAct } = model;
    const participants = meeting?.participants ?? [];
    // People who left stay listed (the state keeps them), after everyone still here.
    const ordered = [...participants.filter((p) => p.presence !== 'left'), ...participants.filter((p) => p.presence === 'left')];
    setText(this.count, `(${participants.filter((p) => p.presence !== 'left').length})`);
    syncKeyed(this.list, ordered, (p) => p.id, (p) => this.createItem(p), (node, p) => this.updateItem(node, p, me, isHost && canAct));
    this.polls.render(model);
  }

  /** The web zone gives guests ids with their own prefix (the page's bootstrap says which). */
  isGuest(participant) {
    return Boolean(this.ctx.guestPrefix) && participant.id.startsWith(this.ctx.guestPrefix);
  }

  createItem(participant) {
    const id = participant.id;
    const node = el('li', { class: 'attendee', data: { participant: id } },
      el('span', { class: 'attendee-presence', attrs: { 'aria-hidden': 'true' } }),
      el('span', { class: 'attendee-name' }),
      el('span', { class: 'attendee-you', text: ' (you)', hidden: true }),
      el('span', { class: 'attendee-guest', text: 'guest', hidden: true, title: 'Joined with a link, without a Parley account' }),
      el('span', { class: 'attendee-badges' }),
      el('span', { class: 'attendee-actions' },
        el('button', { type: 'button', class: 'attendee-make-presenter', text: 'Make presenter', on: { click: () => this.ctx.send(ops.setPresenter(id)) } }),
        el('button', { type: 'button', class: 'attendee-make-host', text: 'Make host', on: { click: () => this.ctx.send(ops.handOverHost(id)) } })));
    node.parts = {
      presence: node.children[0], name: node.children[1], you: node.children[2], guest: node.children[3], badges: node.children[4],
      makePresenter: node.querySelector('.attendee-make-presenter'), makeHost: node.querySelector('.attendee-make-host'),
    };
    return node;
  }

  updateItem(node, p, me, hostActions) {
    setData(node, 'role', p.role);
    setData(node, 'presence', p.presence);
    setData(node, 'presenter', p.isPresenter ? 'true' : 'false');
    const { parts } = node;
    setText(parts.name, p.name);
    show(parts.you, p.id === me);
    const guest = this.isGuest(p);
    setData(node, 'guest', guest ? 'true' : 'false');
    show(parts.guest, guest);
    parts.presence.title = PRESENCE_TEXT[p.presence] ?? p.presence;
    const badges = [];
    if (p.role === 'host') badges.push('host');
    if (p.isPresenter) badges.push('presenting');
    if (p.presence === 'reconnecting') badges.push('reconnecting…');
    if (p.presence === 'left') badges.push('left');
    setText(parts.badges, badges.join(' · '));
    const present = p.presence !== 'left';
    show(parts.makePresenter, hostActions && present && !p.isPresenter);
    show(parts.makeHost, hostActions && present && p.id !== me);
  }
}
