// The shared pane: documents and whiteboards, the current page with its annotations, and
// screen sharing. Each part is its own view; this one lays them out and passes on renders.

import { el } from '../dom.js';
import { DocumentsPanel } from './documents.js';
import { PageView } from './page-view.js';
import { SharePanel } from './share-panel.js';

export class SharedPane {
  constructor(ctx) {
    this.documents = new DocumentsPanel(ctx);
    this.page = new PageView(ctx);
    this.share = new SharePanel(ctx);
    this.element = el('section', { class: 'pane shared-pane', attrs: { 'aria-labelledby': 'shared-heading' } },
      el('h2', { id: 'shared-heading', class: 'visually-hidden', text: 'Shared' }),
      this.documents.element, this.share.element, this.page.element);
  }

  render(model) {
    this.documents.render(model);
    this.share.render(model);
    this.page.render(model);
  }

  handleSignal(from, signal) {
    this.share.handleSignal(from, signal);
  }
}
