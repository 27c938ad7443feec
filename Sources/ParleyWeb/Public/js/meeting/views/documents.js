// Documents and whiteboards: upload a PDF or image (the server converts it to pages), add a
// whiteboard or a whiteboard page, and the list of the meeting's documents, which the
// presenter clicks to open. Adding is for the presenter or host; turning pages is for the
// presenter only, so a host who is not presenting adds without opening.

import { el, setText, setData, show, enable, syncKeyed } from '../dom.js';
import { documentType } from '../api.js';
import { clampTitle, newId, nextWhiteboardPage, ops } from '../ops.js';
import { locatePage } from '../state.js';
import { count, sentence } from '../text.js';

/** How often the conversion's progress is asked for. */
const CONVERSION_POLL_MS = 400;

/** "812 KiB", "12.5 MiB". */
function bytes(n) {
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${Math.round(n / (1 << 10))} KiB`;
  return `${n} bytes`;
}

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
    // Without a value the bar is "indeterminate": working, amount unknown.
    this.progress = el('progress', { id: 'upload-progress', class: 'upload-progress', hidden: true, attrs: { max: 1, 'aria-label': 'Upload progress' } });
    this.addWhiteboard = el('button', { id: 'whiteboard-add', type: 'button', text: 'New whiteboard', on: { click: () => this.createWhiteboard() } });
    this.addWhiteboardPage = el('button', { id: 'whiteboard-page-add', type: 'button', text: 'Add whiteboard page', hidden: true, on: { click: () => this.createWhiteboardPage() } });
    this.adding = el('div', { class: 'document-actions' },
      el('div', { class: 'upload' },
        el('label', { htmlFor: 'document-upload', text: 'Upload a document (PDF, PNG, JPEG)' }), this.upload),
      el('div', { class: 'whiteboard-actions' }, this.addWhiteboard, this.addWhiteboardPage),
      el('div', { class: 'upload-state' }, this.progress, this.status));
    this.list = el('ul', { id: 'document-list', class: 'document-list', attrs: { 'aria-label': 'Documents' } });
    this.element = el('div', { class: 'documents' }, this.adding, this.list);
  }

  render(model) {
    this.model = model;
    const { meeting, isPresenter, isHost, canAct } = model;
    const mayAdd = isPresenter || isHost;
    const documents = meeting?.documents ?? [];
    show(this.adding, mayAdd);
    // Someone who may not add sees this part only once there is something in it.
    show(this.element, mayAdd || documents.length > 0);
    show(this.list, documents.length > 0);
    enable(this.upload, canAct && !this.uploading);
    enable(this.addWhiteboard, canAct);
    const current = meeting ? locatePage(meeting, meeting.currentPage) : null;
    show(this.addWhiteboardPage, Boolean(current?.document.isWhiteboard));
    enable(this.addWhiteboardPage, canAct);
    syncKeyed(this.list, documents, (d) => d.id, (d) => this.createItem(d),
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

  /** `fraction` in [0, 1], or null for "busy, amount unknown"; `false` hides the bar. */
  setProgress(fraction) {
    show(this.progress, fraction !== false);
    if (fraction === false || fraction === null) this.progress.removeAttribute('value');
    else this.progress.value = Math.min(1, Math.max(0, fraction));
  }

  /** While the server converts: "counting the pages", then "page 3 of 12", from its report. */
  async followConversion(uploadId, name, isFinished) {
    const said = { waiting: `Waiting for a free converter for “${name}”…`, counting: `Converting “${name}”: counting the pages…`, storing: `Saving the pages of “${name}”…` };
    while (!isFinished()) {
      await new Promise((resolve) => setTimeout(resolve, CONVERSION_POLL_MS));
      if (isFinished()) return;
      let report;
      try {
        report = await this.ctx.api.uploadProgress(uploadId);
      } catch {
        continue; // the report is a nicety; the upload's own answer is what counts
      }
      if (isFinished() || !report) continue;
      if (report.state === 'converting' && report.page && report.pages) {
        this.setStatus('converting', `Converting “${name}”: page ${report.page} of ${report.pages}…`);
        this.setProgress((report.page - 1) / report.pages);
      } else if (said[report.state]) {
        this.setStatus('converting', said[report.state]);
      }
    }
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
    this.setProgress(0);
    const uploadId = newId('up');
    let finished = false;
    try {
      const uploaded = await this.ctx.api.uploadDocument(file, type, {
        id: uploadId,
        onSent: ({ loaded, total, done }) => {
          if (finished) return;
          if (!done) {
            this.setStatus('uploading', `Uploading “${file.name}”: ${bytes(loaded)} of ${bytes(total)} (${Math.floor((100 * loaded) / Math.max(1, total))} %)`);
            this.setProgress(total > 0 ? loaded / total : null);
            return;
          }
          // All sent. A PDF is now converted page by page, which the server reports.
          this.setStatus('converting', type === 'application/pdf' ? `Converting “${file.name}”…` : `Adding “${file.name}”…`);
          this.setProgress(null);
          if (type === 'application/pdf') this.followConversion(uploadId, file.name, () => finished);
        },
      });
      finished = true;
      this.setProgress(false);
      const title = clampTitle(uploaded.title || file.name);
      this.setStatus('converting', `Adding “${title}” to the meeting…`);
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
      finished = true;
      this.setProgress(false);
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
