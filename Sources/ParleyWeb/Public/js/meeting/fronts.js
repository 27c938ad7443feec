// Which web front the page asks where to connect (protocol §3, `GET /v1/ping`): its own,
// or another front of the same deployment that the server lists (`web.otherFronts`). Each is
// timed with a ping before the first locate, fastest first; one that fails goes to the back,
// and once every one has failed in a row they are timed again. Time and fetch are passed in,
// so tests drive it without a network.

/** How long a ping may take before its front counts as unreachable. */
export const PING_TIMEOUT_MS = 3000;

export class FrontChoice {
  /**
   * @param {string[]} origins the page's own origin first, then the others.
   * @param {object} [options]
   * @param {typeof fetch} [options.fetch]
   * @param {() => number} [options.now] milliseconds, monotonic.
   * @param {number} [options.timeoutMs]
   */
  constructor(origins, { fetch = globalThis.fetch.bind(globalThis), now = () => performance.now(), timeoutMs = PING_TIMEOUT_MS } = {}) {
    this.origins = [...new Set(origins)];
    this.fetch = fetch;
    this.now = now;
    this.timeoutMs = timeoutMs;
    /** The order to try them in; the given order until probed. */
    this.ranked = [...this.origins];
    this.probed = false;
    /** Failures in a row since the last success or probe. */
    this.failures = 0;
  }

  /** Whether there is anything to choose between. */
  get choosing() {
    return this.origins.length > 1;
  }

  /**
   * Times `GET /v1/ping` on every front at once and ranks them fastest first; those that do
   * not answer (in time, or with 200) go last, in their given order.
   * @returns {Promise<{origin: string, ms: number|null}[]>} what was measured, in rank order.
   */
  async probe() {
    const timed = await Promise.all(this.origins.map(async (origin, index) => ({ origin, index, ms: await this.ping(origin) })));
    timed.sort((a, b) => (a.ms ?? Infinity) - (b.ms ?? Infinity) || a.index - b.index);
    this.ranked = timed.map((entry) => entry.origin);
    this.probed = true;
    this.failures = 0;
    return timed.map(({ origin, ms }) => ({ origin, ms }));
  }

  async ping(origin) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), this.timeoutMs);
    const started = this.now();
    try {
      const response = await this.fetch(`${origin}/v1/ping`, { cache: 'no-store', signal: abort.signal });
      return response.ok ? this.now() - started : null;
    } catch {
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The fronts to try, in order. Times them first when that is due. */
  async order() {
    if (this.choosing && (!this.probed || this.failures >= this.origins.length)) await this.probe();
    return [...this.ranked];
  }

  /** `origin` answered. */
  succeeded() {
    this.failures = 0;
  }

  /** `origin` could not be reached, or could not answer now: it goes to the back. */
  failed(origin) {
    this.failures += 1;
    this.ranked = [...this.ranked.filter((other) => other !== origin), origin];
  }
}
