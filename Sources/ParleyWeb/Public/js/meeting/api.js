// HTTP calls to the web zone: the locator, document uploads and page images. Every call
// authenticates with the meeting token in an Authorization header, never a cookie, so a
// page on another site cannot make them on the user's behalf (CSRF).

import { FrontChoice } from './fronts.js';

/** An HTTP error with the server's stable `code` and its message for people. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The document types the server converts (an <input accept> and an upload check). */
export const DOCUMENT_TYPES = Object.freeze({
  'application/pdf': ['.pdf'],
  'image/png': ['.png'],
  'image/jpeg': ['.jpg', '.jpeg'],
});

async function failure(response, fallback) {
  return failureFrom(response.status, await response.text().catch(() => ''), fallback);
}

/** The server's JSON refusal ({code, message}) in `text`, or a fallback for people. */
function failureFrom(status, text, fallback) {
  let code = `http_${status}`;
  let message = `${fallback} (HTTP ${status})`;
  try {
    const body = JSON.parse(text);
    if (typeof body?.code === 'string') code = body.code;
    if (typeof body?.message === 'string' && body.message) message = body.message;
  } catch {
    // No JSON body (a 404 from a route that does not exist yet, a 413 from the HTTP layer).
    if (status === 413) message = 'The file is too large to upload.';
  }
  return new ApiError(status, code, message);
}

export class Api {
  /**
   * @param {string} meetingId
   * @param {string} token the meeting token (a JWT), sent as a Bearer credential.
   * @param {string} [origin] where the web zone is; the page's own origin by default.
   * @param {string[]} [otherFronts] other fronts the meeting may be located through
   *   (`web.otherFronts`): the fastest to answer a ping is asked first.
   * @param {object} [options] `fetch` and `now` for tests.
   */
  constructor(meetingId, token, origin = location.origin, otherFronts = [], { fetch = globalThis.fetch.bind(globalThis), now } = {}) {
    this.meetingId = meetingId;
    this.token = token;
    this.origin = origin;
    this.fetch = fetch;
    this.fronts = new FrontChoice([origin, ...otherFronts], { fetch, ...(now ? { now } : {}) });
  }

  meetingUrl(path, origin = this.origin) {
    return `${origin}/v1/meetings/${encodeURIComponent(this.meetingId)}${path}`;
  }

  /**
   * Where to connect now (protocol §3). Asked again before every connection, because the
   * answer changes when a meeting fails over or moves. With other fronts, the fastest is
   * asked first, and one that cannot be reached or answers 5xx is passed over for the next.
   * @returns {Promise<string>} the server's base URL.
   * @throws ApiError: 404 unknown_meeting is final; 503 unavailable means "back off and ask again".
   */
  async locate(signal) {
    let last;
    for (const origin of await this.fronts.order()) {
      let response;
      try {
        response = await this.fetch(this.meetingUrl('/locate', origin), { cache: 'no-store', signal });
      } catch (error) {
        if (signal?.aborted) throw error;
        last = error;
        this.fronts.failed(origin);
        continue;
      }
      if (response.status >= 500) {
        last = await failure(response, 'The meeting could not be located');
        this.fronts.failed(origin);
        continue;
      }
      if (!response.ok) throw await failure(response, 'The meeting could not be located');
      const body = await response.json();
      if (typeof body?.url !== 'string') throw new ApiError(response.status, 'malformed_response', 'The locator answered without a URL');
      this.fronts.succeeded();
      return body.url;
    }
    throw last ?? new ApiError(0, 'unreachable', 'No front answered');
  }

  /**
   * Uploads a PDF or image; the server converts it to page images. XMLHttpRequest rather
   * than fetch, because only it reports how much of the body has gone up.
   * @param {object} [options]
   * @param {string} [options.id] names the upload, for `uploadProgress` while it converts.
   * @param {(sent: {loaded: number, total: number, done: boolean}) => void} [options.onSent]
   *   as the body goes up; `done` once all of it has.
   * @returns {Promise<{document: string, title: string, pages: string[]}>}
   */
  uploadDocument(file, contentType, { id, onSent } = {}) {
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open('POST', this.meetingUrl('/documents'));
      request.setRequestHeader('Authorization', `Bearer ${this.token}`);
      request.setRequestHeader('Content-Type', contentType);
      request.setRequestHeader('X-Parley-Title', encodeURIComponent(file.name));
      if (id) request.setRequestHeader('X-Parley-Upload', id);
      request.upload.addEventListener('progress', (event) => {
        onSent?.({ loaded: event.loaded, total: event.lengthComputable ? event.total : file.size, done: false });
      });
      request.upload.addEventListener('load', () => onSent?.({ loaded: file.size, total: file.size, done: true }));
      request.addEventListener('load', () => {
        if (request.status !== 201 && (request.status < 200 || request.status > 299)) {
          reject(failureFrom(request.status, request.responseText, 'The upload failed'));
          return;
        }
        let body = null;
        try {
          body = JSON.parse(request.responseText);
        } catch {
          // handled below
        }
        if (typeof body?.document !== 'string' || !Array.isArray(body.pages) || body.pages.length === 0) {
          reject(new ApiError(request.status, 'malformed_response', 'The server answered the upload without pages'));
          return;
        }
        resolve({ document: body.document, title: String(body.title ?? file.name), pages: body.pages.map(String) });
      });
      const lost = () => reject(new ApiError(0, 'network_error', 'The upload did not reach the server. Check the connection and try again.'));
      request.addEventListener('error', lost);
      request.addEventListener('abort', lost);
      request.send(file);
    });
  }

  /**
   * How far the server has got with upload `id` (DocumentRoutes: {state, page?, pages?}), or
   * null when it does not know it (not started yet, or finished).
   */
  async uploadProgress(id) {
    const response = await fetch(this.meetingUrl(`/uploads/${encodeURIComponent(id)}`), {
      headers: { Authorization: `Bearer ${this.token}` },
      cache: 'no-store',
    });
    if (response.status === 404) return null;
    if (!response.ok) throw await failure(response, 'The upload’s progress could not be read');
    return response.json();
  }

  /** A page image's bytes. An <img src> cannot send the Authorization header, so it is fetched. */
  async pageImage(pageId) {
    const response = await fetch(this.meetingUrl(`/pages/${encodeURIComponent(pageId)}`), {
      headers: { Authorization: `Bearer ${this.token}` },
    });
    if (!response.ok) throw await failure(response, 'The page could not be loaded');
    return response.blob();
  }
}

/** The content type to upload `file` as, from its type or else its name; null if unsupported. */
export function documentType(file) {
  if (DOCUMENT_TYPES[file.type]) return file.type;
  const name = file.name.toLowerCase();
  for (const [type, extensions] of Object.entries(DOCUMENT_TYPES)) {
    if (extensions.some((extension) => name.endsWith(extension))) return type;
  }
  return null;
}

/**
 * Page images by page id, as object URLs. Page ids are stable, so a page is fetched once and
 * kept; the least recently used URLs beyond `capacity` are released. A failed fetch is
 * forgotten, so showing the page again tries again.
 */
export class PageImages {
  constructor(api, capacity = 40) {
    this.api = api;
    this.capacity = capacity;
    /** pageId → Promise<string>, in use order (a Map keeps insertion order). */
    this.entries = new Map();
  }

  /** @returns {Promise<string>} an object URL for the page's image. */
  url(pageId) {
    let entry = this.entries.get(pageId);
    if (entry) {
      this.entries.delete(pageId); // move to the most recently used end
    } else {
      entry = this.api.pageImage(pageId).then((blob) => URL.createObjectURL(blob));
      entry.catch(() => {
        if (this.entries.get(pageId) === entry) this.entries.delete(pageId);
      });
    }
    this.entries.set(pageId, entry);
    this.evict(pageId);
    return entry;
  }

  evict(keep) {
    for (const [pageId, entry] of this.entries) {
      if (this.entries.size <= this.capacity) break;
      if (pageId === keep) continue;
      this.entries.delete(pageId);
      entry.then((url) => URL.revokeObjectURL(url), () => {});
    }
  }
}
