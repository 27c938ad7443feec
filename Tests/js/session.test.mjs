// The meeting page's protocol state machine (Sources/ParleyWeb/Public/js/meeting/session.js),
// driven directly: inputs in, actions out, time passed in. Run by `swift test`
// (Tests/ParleyWebTests/PageSessionTests.swift), or by hand: node --test Tests/js
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClientSession } from '../../Sources/ParleyWeb/Public/js/meeting/session.js';

/** A session welcomed on connection 1, with the page's default policy. */
function liveSession() {
  const session = new ClientSession({ token: 'tok', opIdPrefix: 'p', random: () => 0 });
  session.start();
  session.connected(1);
  session.received({ type: 'welcome', mode: 'snapshot', seq: 3, epoch: 1, meeting: 'm-1', participant: 'p-1',
                     state: { id: 'm-1', title: 'T' } }, 1);
  assert.equal(session.isLive, true);
  return session;
}

const dropped = (actions) => actions.some((action) => action.type === 'disconnect');

test('a live connection whose ops go unanswered for opAnswerTimeoutMs is dropped, though it answers pings (a stuck host)', () => {
  const session = liveSession();
  const { id: first } = session.send({ chat: { text: 'one' } });
  session.send({ chat: { text: 'two' } });
  assert.deepEqual(session.tick(0), []);
  // The server keeps answering pings: the connection is never silent.
  for (let now = 500; now <= 9500; now += 500) {
    assert.equal(dropped(session.tick(now)), false, `dropped at ${now}`);
    session.received({ type: 'pong' }, 1);
  }
  // An answer is progress: the clock starts again for the op still waiting.
  session.received({ type: 'ack', id: first, seq: 4, epoch: 1 }, 1);
  assert.equal(dropped(session.tick(9600)), false);
  session.received({ type: 'pong' }, 1);
  assert.equal(dropped(session.tick(19599)), false, '10 s after the last answer, not after the first send');
  session.received({ type: 'pong' }, 1);
  const actions = session.tick(19600);
  assert.deepEqual(actions.slice(0, 2), [
    { type: 'disconnect', cid: 1, cause: 'retry' },
    { type: 'emit', event: { kind: 'connection', state: 'reconnecting', reason: 'the server stopped answering our ops' } },
  ]);
  assert.deepEqual(session.unacked.map((entry) => entry.id), ['p-2'], 'the waiting op is kept and resent after the next welcome');
});

test('with no ops waiting, a connection that answers pings is never dropped', () => {
  const session = liveSession();
  for (let now = 0; now <= 60000; now += 500) {
    assert.equal(dropped(session.tick(now)), false, `dropped at ${now}`);
    session.received({ type: 'pong' }, 1);
  }
});

test('a silent connection is pinged after heartbeatIntervalMs and dropped when the ping goes unanswered', () => {
  const session = liveSession();
  assert.deepEqual(session.tick(0), []);
  assert.deepEqual(session.tick(1000), [{ type: 'send', frame: { type: 'ping' }, cid: 1 }]);
  assert.equal(dropped(session.tick(2999)), false);
  assert.equal(dropped(session.tick(3000)), true);
});

test('after a resume answered with a snapshot, ops already sent complete as outside_resume_window instead of being resent; ops never sent are sent', () => {
  const session = liveSession();
  const { id: sent } = session.send({ chat: { text: 'sent' } });
  session.disconnected(1);
  const { id: queued } = session.send({ chat: { text: 'queued' } });
  session.backoffElapsed();
  const cid = session.currentConnection;
  session.connected(cid);
  const actions = session.received({ type: 'welcome', mode: 'snapshot', seq: 90, epoch: 2, meeting: 'm-1', participant: 'p-1',
                                     state: { id: 'm-1', title: 'T' } }, cid);
  const completed = actions.filter((action) => action.type === 'complete');
  assert.deepEqual(completed.map((action) => [action.id, action.outcome.code]), [[sent, 'outside_resume_window']]);
  assert.deepEqual(actions.filter((action) => action.type === 'send').map((action) => action.frame.id), [queued]);
  assert.deepEqual(session.unacked.map((entry) => entry.id), [queued]);
});

test('the event of our own op settles it as its ack would; the ack that follows is dropped; another participant\'s event with the same op id is not ours', () => {
  const session = new ClientSession({ token: 'tok', opIdPrefix: 'p', random: () => 0 });
  session.start();
  session.connected(1);
  const people = [{ id: 'p-1', name: 'Ann', role: 'host', presence: 'connected' }, { id: 'p-2', name: 'Bob', role: 'attendee', presence: 'connected' }];
  session.received({ type: 'welcome', mode: 'snapshot', seq: 3, epoch: 1, meeting: 'm-1', participant: 'p-1',
                     state: { id: 'm-1', title: 'T', participants: people } }, 1);
  const { id: mine } = session.send({ chat: { text: 'mine' } });
  const { id: other } = session.send({ chat: { text: 'other' } });
  const actions = session.received({ type: 'event', seq: 4, epoch: 1, at: 1, issuer: 'p-1', opId: mine, op: { chat: { text: 'mine' } } }, 1);
  assert.deepEqual(actions.filter((action) => action.type === 'complete'), [{ type: 'complete', id: mine, outcome: { ok: true, seq: 4, epoch: 1 } }]);
  assert.deepEqual(session.received({ type: 'ack', id: mine, seq: 4, epoch: 1 }, 1), []);
  session.received({ type: 'event', seq: 5, epoch: 1, at: 2, issuer: 'p-2', opId: other, op: { chat: { text: 'other' } } }, 1);
  assert.deepEqual(session.unacked.map((entry) => entry.id), [other]);
});
