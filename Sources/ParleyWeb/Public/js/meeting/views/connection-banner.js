// #connection-banner: while the connection is down, a banner across the page says so, and
// that what the user does meanwhile is kept and sent once it is back (the session queues
// ops and resends them after the resume). The header pill alone was too easy to miss.

import { el, setText, setData, show } from '../dom.js';
import { count } from '../text.js';

export class ConnectionBanner {
  constructor() {
    this.headline = el('strong', { class: 'banner-headline' });
    this.detail = el('span', { class: 'banner-detail' });
    this.pending = el('span', { id: 'pending-ops', class: 'banner-pending', data: { count: 0 } });
    this.element = el('div', { id: 'connection-banner', class: 'connection-banner', role: 'status', attrs: { 'aria-live': 'polite' }, hidden: true },
      this.headline, ' ', this.detail, ' ', this.pending);
  }

  /** @param {{status: object, offline: boolean, pendingOps: number}} model */
  render({ status, offline, pendingOps }) {
    show(this.element, offline);
    if (!offline) return;
    setData(this.element, 'state', status.state);
    setText(this.headline, status.state === 'reconnecting'
      ? 'The connection to the meeting was lost. Reconnecting…'
      : 'Connecting to the meeting…');
    setText(this.detail, 'You can carry on: what you do now is kept and sent as soon as the connection is back.');
    setData(this.pending, 'count', pendingOps);
    setText(this.pending, pendingOps > 0 ? `${count(pendingOps, 'action')} waiting to be sent.` : '');
  }
}
