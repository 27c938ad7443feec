// #meeting-closed: what the page shows once the session has ended for good (the user left,
// the meeting ended, another tab took over, the link expired). The meeting itself is hidden
// then: the copy on screen would go on listing the user as online and presenting, which is
// no longer true. It says what happened and offers the ways on.

import { el, setText, show } from '../dom.js';

/** Reasons after which joining again from this page cannot help. */
const FINAL = new Set(['meeting_ended', 'unknown_meeting', 'invalid_token', 'join_refused']);

export class ClosedView {
  /**
   * @param {object} options
   * @param {boolean} options.guest a guest has no meeting center to go back to.
   * @param {() => void} options.rejoin
   */
  constructor({ guest, rejoin }) {
    this.guest = guest;
    this.heading = el('h2', { id: 'meeting-closed-heading', tabIndex: -1 });
    this.explanation = el('p', { class: 'closed-explanation' });
    this.rejoin = el('button', { id: 'rejoin', type: 'button', class: 'primary', text: 'Rejoin', on: { click: () => rejoin() } });
    // Going somewhere else is a link; it looks like the button next to it.
    this.center = el('a', { id: 'back-to-center', class: 'button', href: '/center', text: 'Back to the meeting center', hidden: guest });
    // A labelled region, not an alert (it holds buttons): focus moves to its heading, and the
    // header's status pill announces the change.
    this.element = el('section', { id: 'meeting-closed', class: 'meeting-closed', hidden: true, attrs: { 'aria-labelledby': 'meeting-closed-heading' } },
      this.heading, this.explanation, el('div', { class: 'closed-actions' }, this.rejoin, this.center));
    this.shown = false;
  }

  /** @param {{status: object, closedCode: string|null}} model */
  render({ status, closedCode }) {
    const closed = status.state === 'left' || status.state === 'failed';
    show(this.element, closed);
    if (!closed) {
      this.shown = false;
      return;
    }
    const code = closedCode ?? 'failed';
    setText(this.heading, status.message || 'You are no longer in the meeting.');
    setText(this.explanation, explanation(code, this.guest));
    show(this.rejoin, !FINAL.has(code));
    setText(this.rejoin, code === 'replaced' ? 'Use the meeting in this tab' : code === 'left' ? 'Rejoin' : 'Try again');
    if (!this.shown) {
      this.shown = true;
      // Focus follows the change, so a keyboard or screen-reader user is not left on a hidden button.
      queueMicrotask(() => this.heading.focus());
    }
  }
}

function explanation(code, guest) {
  const elsewhere = guest ? 'You can close this tab.' : 'Your meetings are in the meeting center.';
  switch (code) {
    case 'left': return `The others no longer see you in the meeting. ${guest ? 'Rejoin to come back in.' : 'Rejoin to come back in, or go back to the meeting center.'}`;
    case 'meeting_ended': return `Nothing more can happen in it. ${elsewhere}`;
    case 'replaced': return 'The meeting is open in another window or tab; this one has stopped.';
    default: return elsewhere;
  }
}
