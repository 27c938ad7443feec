// The message pane: public chat and my private messages, in seq order, and the composer.
// "To" lists the people present other than me; a private message goes as op privateMessage.

import { el, setText, show, enable, syncKeyed } from '../dom.js';
import { isValidText, LIMITS, ops } from '../ops.js';
import { participantOf } from '../state.js';

/** Within this many pixels of the bottom, a new message scrolls the log down. */
const STICKY_SCROLL_PX = 48;

export class MessagePane {
  constructor(ctx) {
    this.ctx = ctx;
    this.log = el('ol', { id: 'chat-log', class: 'chat-log', role: 'log', attrs: { 'aria-live': 'polite', 'aria-label': 'Messages' } });
    this.empty = el('p', { class: 'empty', text: 'No messages yet.' });
    this.to = el('select', { id: 'chat-to', attrs: { 'aria-label': 'Send to' } });
    this.input = el('input', { id: 'chat-input', type: 'text', maxLength: LIMITS.textLength, placeholder: 'Write a message', autocomplete: 'off', attrs: { 'aria-label': 'Message' } });
    this.sendButton = el('button', { id: 'chat-send', type: 'submit', text: 'Send' });
    // A form, so Enter in the input sends.
    this.composer = el('form', { class: 'chat-composer', on: { submit: (event) => this.submit(event) } },
      this.to, this.input, this.sendButton);
    this.disabledNote = el('p', { class: 'empty', text: 'Chat is turned off in this meeting.', hidden: true });
    this.element = el('section', { class: 'pane message-pane', attrs: { 'aria-labelledby': 'messages-heading' } },
      el('h2', { id: 'messages-heading', text: 'Messages' }),
      this.empty, this.log, this.disabledNote, this.composer);
  }

  render(model) {
    const { meeting, me, canAct, offline } = model;
    if (!meeting) return;
    const features = meeting.settings.features;
    const messages = [
      ...meeting.chat.map((m) => ({ ...m, private: false })),
      ...meeting.privateMessages.map((m) => ({ ...m, private: true })),
    ].sort((a, b) => a.seq - b.seq);
    const stick = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < STICKY_SCROLL_PX;
    const before = this.log.childElementCount;
    show(this.empty, messages.length === 0);
    syncKeyed(this.log, messages, (m) => m.seq, (m) => this.createItem(m, meeting, me), () => {});
    if (stick && this.log.childElementCount !== before) this.log.scrollTop = this.log.scrollHeight;

    const recipients = this.renderRecipients(meeting, me, features);
    const canWrite = features.chat || features.privateChat;
    show(this.composer, canWrite);
    show(this.disabledNote, !canWrite);
    enable(this.input, canAct && recipients > 0);
    enable(this.sendButton, canAct && recipients > 0);
    this.input.placeholder = recipients === 0 ? 'Nobody to write to privately yet'
      : offline ? 'Offline: sent once reconnected' : 'Write a message';
  }

  /** Messages never change once committed, so an item is built once. */
  createItem(message, meeting, me) {
    const name = (id) => participantOf(meeting, id)?.name ?? id;
    const node = el('li', { class: 'chat-message', data: { seq: message.seq, private: message.private ? 'true' : 'false' } },
      el('span', { class: 'chat-from', text: name(message.from) }),
      message.private
        ? el('span', { class: 'chat-private-label', text: message.to === me ? ' privately to you' : ` privately to ${name(message.to)}` })
        : null,
      el('time', { class: 'chat-time', attrs: { datetime: new Date(message.at).toISOString() }, text: formatTime(message.at) }),
      el('p', { class: 'chat-text', text: message.text }));
    if (message.from === me) node.classList.add('mine');
    return node;
  }

  /** Fills #chat-to; returns how many choices it has (0: nobody may be written to). */
  renderRecipients(meeting, me, features) {
    const people = features.privateChat
      ? meeting.participants.filter((p) => p.presence !== 'left' && p.id !== me)
      : [];
    const options = [
      ...(features.chat ? [{ value: '', label: 'Everyone' }] : []),
      ...people.map((p) => ({ value: p.id, label: p.name })),
    ];
    const selected = this.to.value;
    syncKeyed(this.to, options, (o) => o.value, (o) => el('option', { value: o.value }), (node, o) => setText(node, o.label));
    // Keep the choice while that person is still here; otherwise fall back to the first.
    if (options.some((o) => o.value === selected)) this.to.value = selected;
    show(this.to, features.privateChat);
    return options.length;
  }

  async submit(event) {
    event.preventDefault();
    const text = this.input.value;
    if (text.trim().length === 0) return;
    if (!isValidText(text)) {
      this.ctx.notify(`A message has at most ${LIMITS.textLength} characters.`);
      return;
    }
    const to = this.to.value;
    this.input.value = '';
    const outcome = await this.ctx.send(to ? ops.privateMessage(to, text) : ops.chat(text));
    // Give the text back if it did not go through, unless the user already typed more.
    if (!outcome.ok && this.input.value === '') this.input.value = text;
  }
}

function formatTime(millis) {
  return new Date(millis).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}
