// #notice: a short message about something the user did that did not work (a rejected op,
// a failed upload) or something that happened to the connection. One at a time; the
// newest wins, and it fades after a few seconds.

import { el, setText, setData } from '../dom.js';

const VISIBLE_MS = 6000;

export class NoticeView {
  constructor() {
    this.element = el('div', { id: 'notice', class: 'meeting-notice', role: 'status', attrs: { 'aria-live': 'polite' }, hidden: true });
    this.timer = null;
  }

  /** @param {'error' | 'info'} kind */
  show(text, kind = 'error') {
    setText(this.element, text);
    setData(this.element, 'kind', kind);
    this.element.hidden = false;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.element.hidden = true;
    }, VISIBLE_MS);
  }
}
