// The current page: a document page's image (fetched by page id and cached) or a blank
// whiteboard, with the annotation layer over it, page navigation for the presenter and the
// annotation tools. The page follows meeting.currentPage: only the presenter turns it.

import { el, setText, setData, show, enable } from '../dom.js';
import { ops, newId } from '../ops.js';
import { locatePage, strokesOn } from '../state.js';
import { AnnotationLayer } from './annotation-layer.js';

/** Whiteboards, and pages whose image has not loaded yet, are shown at this width / height. */
const DEFAULT_ASPECT = 4 / 3;
/** The page takes at most this share of the window's height. */
const MAX_HEIGHT_SHARE = 0.72;

export class PageView {
  constructor(ctx) {
    this.ctx = ctx;
    this.model = null;
    this.page = null;
    this.aspect = DEFAULT_ASPECT;
    this.strokePrefix = newId('s');
    this.strokeCount = 0;

    this.image = el('img', { id: 'page-image', class: 'page-image', alt: '', hidden: true, draggable: false });
    this.image.addEventListener('load', () => {
      if (this.image.naturalWidth > 0) this.setAspect(this.image.naturalWidth / this.image.naturalHeight);
    });
    this.whiteboard = el('div', { class: 'whiteboard-surface', hidden: true });
    this.canvas = el('canvas', { id: 'annotation-layer', class: 'annotation-layer', data: { strokes: 0 } });
    this.message = el('p', { class: 'page-message', text: 'No document is open yet.' });
    this.retry = el('button', { type: 'button', class: 'page-retry', text: 'Try again', hidden: true, on: { click: () => this.loadImage(this.page, true) } });
    this.stage = el('div', { class: 'page-stage' }, this.image, this.whiteboard, this.canvas);
    this.view = el('div', { id: 'page-view', class: 'page-view', data: { kind: 'none' } },
      this.stage, el('div', { class: 'page-message-box' }, this.message, this.retry));

    this.layer = new AnnotationLayer(this.canvas, {
      onStroke: (stroke) => this.sendStroke(stroke),
      onErase: (stroke) => this.ctx.send(ops.erase(this.page, stroke.id)),
      mayErase: (stroke) => this.mayErase(stroke),
    });

    this.prev = el('button', { id: 'page-prev', type: 'button', text: '‹ Previous', disabled: true, on: { click: () => this.turnBy(-1) } });
    this.next = el('button', { id: 'page-next', type: 'button', text: 'Next ›', disabled: true, on: { click: () => this.turnBy(1) } });
    this.number = el('span', { id: 'page-number', class: 'page-number', text: '0 / 0' });
    this.documentTitle = el('span', { class: 'page-document' });
    const navigation = el('div', { class: 'page-nav' }, this.prev, this.number, this.next, this.documentTitle);

    this.toolButtons = {
      pen: el('button', { id: 'tool-pen', type: 'button', text: 'Pen', on: { click: () => this.selectTool('pen') } }),
      highlighter: el('button', { id: 'tool-highlighter', type: 'button', text: 'Highlighter', on: { click: () => this.selectTool('highlighter') } }),
      eraser: el('button', { id: 'tool-eraser', type: 'button', text: 'Eraser', on: { click: () => this.selectTool('eraser') } }),
    };
    this.color = el('input', { id: 'annotation-color', type: 'color', value: '#e53935', title: 'Colour', on: { input: () => this.layer.setColor(this.color.value) } });
    this.clear = el('button', { id: 'annotation-clear', type: 'button', text: 'Clear page', on: { click: () => this.page && this.ctx.send(ops.clearPage(this.page)) } });
    this.tools = el('div', { class: 'annotation-tools', role: 'toolbar', attrs: { 'aria-label': 'Annotation tools' } },
      this.toolButtons.pen, this.toolButtons.highlighter, this.toolButtons.eraser,
      el('label', { class: 'color-label' }, 'Colour ', this.color), this.clear);
    this.selectTool('pen');

    this.toolbar = el('div', { class: 'page-toolbar' }, navigation, this.tools);
    this.element = el('div', { class: 'page-area' }, this.toolbar, this.view);
    new ResizeObserver(() => this.layout()).observe(this.view);
    window.addEventListener('resize', () => this.layout());
  }

  render(model) {
    this.model = model;
    const { meeting, isPresenter, isHost, canAct } = model;
    const page = meeting?.currentPage ?? null;
    const located = meeting ? locatePage(meeting, page) : null;

    if (page !== this.page) this.showPage(page, located);
    setText(this.number, located ? `${located.index + 1} / ${located.document.pages.length}` : '0 / 0');
    setText(this.documentTitle, located ? located.document.title : '');
    enable(this.prev, canAct && isPresenter && located !== null && located.index > 0);
    enable(this.next, canAct && isPresenter && located !== null && located.index < located.document.pages.length - 1);

    // Only what can be used is shown, and an empty toolbar not at all: a guest with no page
    // open yet had a strip of greyed-out buttons over nothing.
    show(this.prev, isPresenter);
    show(this.next, isPresenter);
    show(this.number, isPresenter || located !== null);
    const annotation = Boolean(meeting?.settings.features.annotation);
    show(this.tools, annotation && located !== null);
    show(this.toolbar, isPresenter || located !== null);
    show(this.clear, isPresenter || isHost);
    enable(this.clear, canAct && located !== null);
    this.layer.setPage(page, located ? strokesOn(meeting, page) : [], annotation && canAct && located !== null);
  }

  showPage(page, located) {
    this.page = page;
    if (page === null || !located) {
      delete this.view.dataset.page;
      setData(this.view, 'kind', 'none');
      delete this.image.dataset.page;
      show(this.image, false);
      show(this.whiteboard, false);
      this.say(page === null ? 'No document is open yet.' : 'This page is not available.');
      return;
    }
    setData(this.view, 'page', page);
    if (located.document.isWhiteboard) {
      setData(this.view, 'kind', 'whiteboard');
      delete this.image.dataset.page;
      this.image.removeAttribute('src');
      show(this.image, false);
      show(this.whiteboard, true);
      this.setAspect(DEFAULT_ASPECT);
      this.say('');
      return;
    }
    setData(this.view, 'kind', 'document');
    show(this.whiteboard, false);
    setData(this.image, 'page', page);
    this.loadImage(page, false);
    // The presenter will most likely turn to the next page: have it ready.
    const following = located.document.pages[located.index + 1];
    if (following) this.ctx.pages.url(following).catch(() => {});
  }

  async loadImage(page, retrying) {
    show(this.retry, false);
    if (!retrying) {
      this.image.removeAttribute('src');
      show(this.image, false);
    }
    this.say('Loading the page…');
    try {
      const url = await this.ctx.pages.url(page);
      if (this.page !== page) return; // turned again meanwhile
      this.image.src = url;
      show(this.image, true);
      this.say('');
    } catch (error) {
      if (this.page !== page) return;
      this.say(`This page could not be loaded: ${error.message}`);
      show(this.retry, true);
    }
  }

  say(text) {
    setText(this.message, text);
    show(this.message, text !== '');
  }

  setAspect(aspect) {
    if (!Number.isFinite(aspect) || aspect <= 0 || aspect === this.aspect) return;
    this.aspect = aspect;
    this.layout();
  }

  /** Fits the stage into the pane at the page's aspect ratio; the canvas follows. */
  layout() {
    const style = getComputedStyle(this.view);
    const availableWidth = this.view.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    if (availableWidth <= 0) return;
    const availableHeight = Math.max(160, window.innerHeight * MAX_HEIGHT_SHARE);
    const width = Math.floor(Math.min(availableWidth, availableHeight * this.aspect));
    const height = Math.floor(width / this.aspect);
    this.stage.style.width = `${width}px`;
    this.stage.style.height = `${height}px`;
    this.layer.resize(width, height);
  }

  selectTool(tool) {
    for (const [name, button] of Object.entries(this.toolButtons)) button.setAttribute('aria-pressed', name === tool ? 'true' : 'false');
    this.layer.setTool(tool);
  }

  turnBy(delta) {
    const meeting = this.model?.meeting;
    const located = meeting ? locatePage(meeting, meeting.currentPage) : null;
    const target = located?.document.pages[located.index + delta];
    if (target) this.ctx.send(ops.turnPage(target));
  }

  mayErase(stroke) {
    const { me, isPresenter, isHost } = this.model ?? {};
    return stroke.author === me || isPresenter || isHost;
  }

  async sendStroke({ tool, width, color, points }) {
    const page = this.page;
    if (!page) return;
    this.strokeCount += 1;
    const id = `${this.strokePrefix}-${this.strokeCount}`;
    this.layer.addPending(id, { id, tool, width, color, points });
    await this.ctx.send(ops.draw(page, id, tool, color, width, points));
    this.layer.settlePending(id);
  }
}
