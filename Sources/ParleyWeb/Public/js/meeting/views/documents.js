// Documents and whiteboards: upload a PDF or image (the server converts it to pages), add a
// whiteboard or a whiteboard page, and the list of the meeting's documents, which the
// presenter clicks to open. Adding is for the presenter or host; turning pages is for the
// presenter only, so a host who is not presenting adds without opening.

import { el, setText, setData, show, enable, syncKeyed } from '../dom.js';
import { documentType } from '../api.js';
import { clampTitle, newId, nextWhiteboardPage, ops } from '../ops.js';
import { locatePage } from '../state.js';
import { count, sentence } from '../text.js';

export class DocumentsPanel {
  constructor(ctx) {
    this.ctx = ctx;
    this.model = null;
    this.uploading = false;
    this.upload = el('input', {
      id: 'document-upload', type: 'file', accept: '.pdf,.png,.jpg,.jpeg,application/pdf,image/png,image/jpeg',
      on: { change: () => this.uploadChosen() },
    });
    this.status = el('span', { id: 'upload-status', class: 'upload-status', role: 'status', data: { state: 'idle' } });
    this.addWhiteboard = el('button', { id: 'whiteboard-add', type: 'button', text: 'New whiteboard', on: { click: () => this.createWhiteboard() } });
    this.addWhiteboardPage = el('button', { id: 'whiteboard-page-add', type: 'button', text: 'Add whiteboard page', hidden: true, on: { click: () => this.createWhiteboardPage() } });
    this.adding = el('div', { class: 'document-actions' },
      el('div', { class: 'upload' },
        el('label', { htmlFor: 'document-upload', text: 'Upload a document (PDF, PNG, JPEG)' }), this.upload),
      el('div', { class: 'whiteboard-actions' }, this.addWhiteboard, this.addWhiteboardPage),
      this.status);
    this.list = el('ul', { id: 'document-list', class: 'document-list', attrs: { 'aria-label': 'Documents' } });
    this.element = el('div', { class: 'documents' }, this.adding, this.list);
  }

  render(model) {
    this.model = model;
    const { meeting, isPresenter, isHost, canAct } = model;
    const mayAdd = isPresenter || isHost;
    show(this.adding, mayAdd);
    enable(this.upload, canAct && !this.uploading);
    enable(this.addWhiteboard, canAct);
    const current = meeting ? locatePage(meeting, meeting.currentPage) : null;
    show(this.addWhiteboardPage, Boolean(current?.document.isWhiteboard));
    enable(this.addWhiteboardPage, canAct);
    syncKeyed(this.list, meeting?.documents ?? [], (d) => d.id, (d) => this.createItem(d),
      (node, d) => this.updateItem(node, d, current?.document.id === d.id, canAct && isPresenter));
  }

  createItem(document) {
    const button = el('button', { type: 'button', class: 'document', data: { document: document.id }, on: { click: () => this.open(document.id) } },
      el('span', { class: 'document-title', text: document.title || (document.isWhiteboard ? 'Whiteboard' : 'Untitled') }),
      el('span', { class: 'document-pages' }));
    return el('li', {}, button);
  }

  updateItem(node, document, isCurrent, mayOpen) {
    const button = node.firstChild;
    const pages = count(document.pages.length, 'page');
    setText(button.lastChild, document.isWhiteboard ? `whiteboard · ${pages}` : pages);
    if (isCurrent) button.setAttribute('aria-current', 'true');
    else button.removeAttribute('aria-current');
    enable(button, mayOpen);
  }

  open(documentId) {
    const document = this.model?.meeting?.documents.find((d) => d.id === documentId);
    if (document) this.ctx.send(ops.turnPage(document.pages[0]));
  }

  setStatus(state, message) {
    setData(this.status, 'state', state);
    setText(this.status, message);
  }

  async uploadChosen() {
    const file = this.upload.files?.[0];
    if (!file) return;
    this.upload.value = ''; // the same file can be chosen again
    const type = documentType(file);
    if (!type) {
      this.setStatus('failed', `“${file.name}” is not a PDF, PNG or JPEG file.`);
      return;
    }
    this.uploading = true;
    enable(this.upload, false);
    this.setStatus('uploading', `Uploading “${file.name}”…`);
    try {
      const uploaded = await this.ctx.api.uploadDocument(file, type);
      const title = clampTitle(uploaded.title || file.name);
      const added = await this.ctx.send(ops.addDocument(uploaded.document, title, uploaded.pages), { quiet: true });
      if (!added.ok) {
        this.setStatus('failed', `“${title}” could not be added: ${sentence(added.message)}`);
        return;
      }
      await this.openIfPresenting(uploaded.pages[0]);
      this.setStatus('done', `Added “${title}” (${count(uploaded.pages.length, 'page')}).`);
    } catch (error) {
      this.setStatus('failed', sentence(error.message || 'the upload failed'));
    } finally {
      this.uploading = false;
      this.ctx.refresh();
    }
  }

  async createWhiteboard() {
    const meeting = this.model?.meeting;
    if (!meeting) return;
    const id = newId('wb');
    const count = meeting.documents.filter((d) => d.isWhiteboard).length + 1;
    const added = await this.ctx.send(ops.addWhiteboard(id, `Whiteboard ${count}`));
    if (added.ok) await this.openIfPresenting(`${id}.1`);
  }

  async createWhiteboardPage() {
    const meeting = this.model?.meeting;
    const current = meeting ? locatePage(meeting, meeting.currentPage) : null;
    if (!current?.document.isWhiteboard) return;
    const page = nextWhiteboardPage(meeting, current.document);
    const added = await this.ctx.send(ops.addWhiteboardPage(current.document.id, page));
    if (added.ok) await this.openIfPresenting(page);
  }

  /** Only the presenter turns pages; a host who is not presenting just adds. */
  async openIfPresenting(page) {
    if (this.model?.isPresenter) await this.ctx.send(ops.turnPage(page));
  }
}
