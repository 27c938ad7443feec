// Builders for the ops the page sends (protocol §5.2), the argument limits the page checks
// before sending (so a person gets a clear message instead of a reject), and the ids the
// client chooses for documents, whiteboards, pages, strokes and polls.

import { randomId } from './dom.js';

/** ParleyCore's ModelLimits, as far as the page needs them. */
export const LIMITS = Object.freeze({
  textLength: 4000,
  titleLength: 200,
  pollOptions: { min: 2, max: 20 },
  pollOptionLength: 200,
});

/**
 * A length no smaller than Swift's character count (code points ≥ grapheme clusters), so a
 * text that passes here is never refused for its length by the server.
 */
export function textLength(text) {
  let count = 0;
  for (const _ of text) count += 1;
  return count;
}

/** Whether `text` is a valid chat, message or poll question (1 to 4000 characters). */
export function isValidText(text) {
  return text.length > 0 && textLength(text) <= LIMITS.textLength;
}

/** A fresh identifier `${prefix}-xxxxxxxxxx` in the protocol's alphabet. */
export function newId(prefix) {
  return `${prefix}-${randomId(10)}`;
}

/**
 * The next free page id of a whiteboard, `${document}.${n}`, the form the server gives a
 * whiteboard's first page (`${document}.1`).
 */
export function nextWhiteboardPage(meeting, document) {
  const taken = new Set(meeting.documents.flatMap((d) => d.pages));
  let n = document.pages.length + 1;
  while (taken.has(`${document.id}.${n}`)) n += 1;
  return `${document.id}.${n}`;
}

export const ops = {
  chat: (text) => ({ chat: { text } }),
  privateMessage: (to, text) => ({ privateMessage: { to, text } }),
  setPresenter: (to) => ({ setPresenter: { to } }),
  handOverHost: (to) => ({ handOverHost: { to } }),
  addDocument: (id, title, pages) => ({ addDocument: { id, title, pages } }),
  addWhiteboard: (id, title) => ({ addWhiteboard: { id, title } }),
  addWhiteboardPage: (document, page) => ({ addWhiteboardPage: { document, page } }),
  turnPage: (to) => ({ turnPage: { to } }),
  draw: (page, stroke, tool, color, width, points) => ({ draw: { page, stroke, tool, color, width, points } }),
  erase: (page, stroke) => ({ erase: { page, stroke } }),
  clearPage: (page) => ({ clearPage: { page } }),
  createPoll: (id, question, options) => ({ createPoll: { id, question, options } }),
  vote: (poll, option) => ({ vote: { poll, option } }),
  closePoll: (poll) => ({ closePoll: { poll } }),
  startShare: (kind, title) => ({ startShare: { kind, title } }),
  stopShare: () => ({ stopShare: {} }),
  requestControl: () => ({ requestControl: {} }),
  grantControl: (to) => ({ grantControl: { to } }),
  revokeControl: () => ({ revokeControl: {} }),
  releaseControl: () => ({ releaseControl: {} }),
  lock: () => ({ lock: {} }),
  unlock: () => ({ unlock: {} }),
  end: () => ({ end: {} }),
};

/** Cuts a title to the server's limit (titles of uploads and shares come from file and window names). */
export function clampTitle(title) {
  const characters = [...String(title)];
  return characters.length <= LIMITS.titleLength ? String(title) : characters.slice(0, LIMITS.titleLength).join('');
}
