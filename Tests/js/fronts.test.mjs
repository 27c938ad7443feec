// The meeting page's choice of web front (Sources/ParleyWeb/Public/js/meeting/fronts.js and
// Api.locate): pings timed with a fake clock, fetch answered by a fake network. Run by
// `swift test` (Tests/ParleyWebTests/PageSessionTests.swift runs every test here), or by
// hand: node --test Tests/js
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrontChoice } from '../../Sources/ParleyWeb/Public/js/meeting/fronts.js';
import { Api } from '../../Sources/ParleyWeb/Public/js/meeting/api.js';

/**
 * A network of fronts on a fake clock: each origin answers ping `delay` ms after it was
 * sent (or never: `down`), and locate at once with `locate` ({status, body}). Pings in
 * flight are answered in the order they are due, each in a turn of its own with the clock
 * set to its time, so concurrent pings measure their own delays.
 */
function network(fronts) {
  let clock = 0;
  const asked = [];
  const pending = [];
  const deliverNext = () => {
    pending.sort((a, b) => a.due - b.due);
    const next = pending.shift();
    if (!next) return;
    clock = Math.max(clock, next.due);
    next.resolve({ ok: true, status: 200, json: async () => ({ pong: true }) });
    if (pending.length) setImmediate(deliverNext);
  };
  const fetch = async (url) => {
    const origin = new URL(url).origin;
    const front = fronts[origin];
    asked.push(url);
    if (!front || front.down) throw new TypeError('Failed to fetch');
    if (url.endsWith('/v1/ping')) {
      return new Promise((resolve) => {
        if (!pending.length) setImmediate(deliverNext);
        pending.push({ due: clock + front.delay, resolve });
      });
    }
    const { status, body } = front.locate;
    return { ok: status < 300, status, json: async () => body, text: async () => JSON.stringify(body) };
  };
  return { fetch, now: () => clock, asked };
}

const here = 'https://here.example';
const near = 'https://near.example';
const far = 'https://far.example';

test('fronts are ranked by ping, fastest first; one that does not answer goes last', async () => {
  const net = network({ [here]: { delay: 80 }, [near]: { delay: 10 }, [far]: { down: true } });
  const choice = new FrontChoice([here, near, far], { fetch: net.fetch, now: net.now });
  const measured = await choice.probe();
  assert.deepEqual(measured.map((m) => m.origin), [near, here, far]);
  assert.equal(measured[2].ms, null);
});

test('the page locates through the fastest front, and falls back to the next when it cannot be reached', async () => {
  const answer = { status: 200, body: { meeting: 'm-1', url: 'https://collab-7.example' } };
  const net = network({ [here]: { delay: 50, locate: answer }, [near]: { delay: 5, locate: answer } });
  const api = new Api('m-1', 'tok', here, [near], { fetch: net.fetch, now: net.now });
  assert.equal(await api.locate(), 'https://collab-7.example');
  const locates = net.asked.filter((url) => url.includes('/locate'));
  assert.deepEqual(locates, [`${near}/v1/meetings/m-1/locate`], 'the faster front was asked');
  // The near front goes down: the next locate falls back to the page's own front.
  net.asked.length = 0;
  const fronts = { [here]: { delay: 50, locate: answer }, [near]: { down: true } };
  const down = network(fronts);
  api.fetch = down.fetch;
  api.fronts.fetch = down.fetch;
  assert.equal(await api.locate(), 'https://collab-7.example');
  assert.deepEqual(down.asked.filter((url) => url.includes('/locate')), [`${near}/v1/meetings/m-1/locate`, `${here}/v1/meetings/m-1/locate`]);
});

test('a 503 from one front is passed over; unknown_meeting from a front is final', async () => {
  const busy = { status: 503, body: { code: 'unavailable', message: 'no host yet' } };
  const unknown = { status: 404, body: { code: 'unknown_meeting', message: 'there is no meeting m-1' } };
  const ok = { status: 200, body: { meeting: 'm-1', url: 'https://collab-1.example' } };
  const net = network({ [here]: { delay: 1, locate: busy }, [near]: { delay: 2, locate: ok } });
  const api = new Api('m-1', 'tok', here, [near], { fetch: net.fetch, now: net.now });
  assert.equal(await api.locate(), 'https://collab-1.example');
  const final = network({ [here]: { delay: 1, locate: unknown }, [near]: { delay: 2, locate: ok } });
  const refused = new Api('m-1', 'tok', here, [near], { fetch: final.fetch, now: final.now });
  await assert.rejects(refused.locate(), (error) => error.code === 'unknown_meeting');
});

test('with only its own front, the page never pings', async () => {
  const answer = { status: 200, body: { meeting: 'm-1', url: 'https://collab-1.example' } };
  const net = network({ [here]: { delay: 1, locate: answer } });
  const api = new Api('m-1', 'tok', here, [], { fetch: net.fetch, now: net.now });
  assert.equal(await api.locate(), 'https://collab-1.example');
  assert.equal(net.asked.some((url) => url.endsWith('/v1/ping')), false);
});
