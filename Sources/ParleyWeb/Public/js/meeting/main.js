// The meeting page's entry module. It reads the bootstrap the server put in the page,
// builds the three panes inside #app, connects, and re-renders every view from the
// meeting state whenever something changes.
//
// Data flows one way: the connection's session owns the meeting state (a copy kept in step
// with the server's log); views render from it and act only by sending ops and signals.

import { Api, PageImages } from './api.js';
import { Connection } from './connection.js';
import { el, show } from './dom.js';
import { hostOf } from './state.js';
import { sentence } from './text.js';
import { HeaderView } from './views/header.js';
import { NoticeView } from './views/notice.js';
import { ConnectionBanner } from './views/connection-banner.js';
import { ClosedView } from './views/closed-view.js';
import { SharedPane } from './views/shared-pane.js';
import { AttendeePane } from './views/attendee-pane.js';
import { MessagePane } from './views/message-pane.js';

/** What a person reads when the session ends for good (protocol §13.1). */
const CLOSED_TEXT = {
  left: 'You left the meeting.',
  meeting_ended: 'The meeting has ended.',
  replaced: 'This meeting was opened in another window or tab.',
  invalid_token: 'Your link to this meeting is not valid.',
  token_expired: 'Your link to this meeting has expired. Reload the page to join again.',
  unknown_meeting: 'This meeting does not exist.',
};

class MeetingPage {
  constructor(root, boot, transport) {
    this.boot = boot;
    this.api = new Api(boot.meeting, boot.token, location.origin, Array.isArray(boot.otherFronts) ? boot.otherFronts : []);
    this.pages = new PageImages(this.api);
    this.connection = new Connection({ api: this.api, token: boot.token, transport, onEvent: (event) => this.onEvent(event) });
    this.status = { state: 'connecting', message: '', detail: '', transport: this.connection.transportKind };
    /** Why the session closed, once it has: a protocol code (§13.1), 'left', or 'failed'. */
    this.closedCode = null;
    /** Attempts have failed since the last welcome (or the start): the page is offline. */
    this.attemptsFailing = false;
    this.renderQueued = false;

    const ctx = {
      bootTitle: boot.title,
      guestPrefix: typeof boot.guestPrefix === 'string' && boot.guestPrefix ? boot.guestPrefix : null,
      api: this.api,
      pages: this.pages,
      meeting: () => this.connection.meeting,
      send: (op, options) => this.send(op, options),
      signal: (signal) => this.connection.signal(signal),
      backlogBytes: () => this.connection.backlogBytes,
      maxFrameBytes: () => this.connection.session.limits.maxFrameBytes,
      notify: (text, kind) => this.notice.show(text, kind),
      refresh: () => this.refresh(),
      leave: () => this.connection.leave(),
    };
    this.notice = new NoticeView();
    this.banner = new ConnectionBanner();
    // Rejoining is loading the page again: a fresh token, the same URL (and ?transport).
    this.closed = new ClosedView({ guest: Boolean(boot.guest), rejoin: () => location.reload() });
    this.header = new HeaderView(ctx);
    this.shared = new SharedPane(ctx);
    this.attendees = new AttendeePane(ctx);
    this.messages = new MessagePane(ctx);
    this.panes = el('main', { class: 'meeting-panes' }, this.shared.element, this.attendees.element, this.messages.element);
    this.views = [this.header, this.banner, this.closed, this.shared, this.attendees, this.messages];
    root.replaceChildren(this.header.element, this.banner.element, this.notice.element, this.closed.element, this.panes);
  }

  start() {
    this.render();
    this.connection.start();
  }

  /**
   * Sends an op; resolves with its outcome. A refusal is shown in #notice unless `quiet`
   * (the caller then says it its own way, as the upload does).
   */
  async send(op, { quiet = false } = {}) {
    const answer = this.connection.send(op);
    this.refresh(); // an op queued while offline counts in the banner at once
    const outcome = await answer;
    // Codes are for programs; a refusal without a message still gets words.
    if (!outcome.ok && !quiet) this.notice.show(sentence(outcome.message || 'The server did not accept that.'));
    this.refresh();
    return outcome;
  }

  onEvent(event) {
    switch (event.kind) {
      case 'connection': this.connectionChanged(event); break;
      case 'welcome':
        if (event.resumed && event.mode === 'snapshot') {
          this.notice.show('You were away for a while: the meeting was reloaded as it is now.', 'info');
        }
        break;
      case 'attemptFailed':
        this.status.detail = `Attempt ${event.failures} failed: ${event.reason}`;
        this.attemptsFailing = true;
        break;
      case 'transport': this.status.transport = event.transport; break;
      case 'signal': this.shared.handleSignal(event.from, event.signal); return; // changes no state
      case 'error': if (!event.error.fatal) this.notice.show(sentence(event.error.message || 'The server reported a problem.')); break;
      default: break; // 'entry': the state changed
    }
    this.refresh();
  }

  connectionChanged({ state, reason, transport }) {
    this.status.detail = '';
    if (transport) this.status.transport = transport;
    if (state === 'connected' || state === 'resumed' || state === 'closed') this.attemptsFailing = false;
    if (state === 'closed') {
      this.closedCode = reason?.code ?? 'failed';
      this.status.state = reason?.code === 'left' ? 'left' : 'failed';
      this.status.message = CLOSED_TEXT[reason?.code] ?? sentence(reason?.message || 'The connection failed.');
      if (reason?.code === 'join_refused' && reason.message) this.status.message = `You cannot join: ${reason.message.replace(/\.$/, '')}.`;
    } else {
      this.status.state = state;
    }
  }

  /** Coalesces the changes of one task (a batch of long-poll frames, say) into one render. */
  refresh() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    queueMicrotask(() => {
      this.renderQueued = false;
      this.render();
    });
  }

  render() {
    const meeting = this.connection.meeting;
    const me = this.connection.session.participantId ?? this.boot.participant;
    const self = meeting?.participants.find((p) => p.id === me) ?? null;
    const present = self !== null && self.presence !== 'left';
    const closed = this.status.state === 'left' || this.status.state === 'failed';
    // Offline: the connection dropped, or the first attempts are failing. Ops still queue.
    const offline = !closed && (this.status.state === 'reconnecting' || this.attemptsFailing);
    const model = {
      meeting,
      me,
      self,
      isHost: present && hostOf(meeting)?.id === me,
      isPresenter: present && self.isPresenter,
      // Ops can be sent while reconnecting: they wait and go out after the resume.
      canAct: Boolean(meeting) && !meeting.ended && this.connection.session.phase.name !== 'closed',
      status: this.status,
      closed,
      closedCode: this.closedCode,
      offline,
      pendingOps: this.connection.session.unacked.length,
    };
    // CSS marks the controls as pending while offline; the panes go once the session is over.
    document.body.dataset.connection = closed ? 'closed' : offline ? 'offline' : 'online';
    show(this.panes, !closed);
    for (const view of this.views) {
      try {
        view.render(model);
      } catch (error) {
        // One broken view must not take the others (or the connection) down with it.
        console.error('parley: a view failed to render', error);
      }
    }
  }
}

/** The JSON the server embedded in the page: {meeting, title, token, participant, name, role}. */
function readBootstrap() {
  const node = document.getElementById('parley-bootstrap');
  if (!node) throw new Error('This page is missing its meeting details.');
  const boot = JSON.parse(node.textContent);
  if (typeof boot?.meeting !== 'string' || typeof boot?.token !== 'string') {
    throw new Error('This page’s meeting details are incomplete.');
  }
  return boot;
}

/** `?transport=poll` forces long-polling (tests use it); `?transport=websocket` forbids the fallback. */
function transportFromUrl() {
  const wanted = new URLSearchParams(location.search).get('transport');
  if (wanted === 'poll' || wanted === 'long-poll') return 'long-poll';
  if (wanted === 'websocket' || wanted === 'ws') return 'websocket';
  return 'automatic';
}

function main() {
  const root = document.getElementById('app') ?? document.body.appendChild(el('div', { id: 'app' }));
  let boot;
  try {
    boot = readBootstrap();
  } catch (error) {
    root.replaceChildren(el('p', { class: 'fatal', role: 'alert', text: error.message }));
    return;
  }
  const page = new MeetingPage(root, boot, transportFromUrl());
  page.start();
  // For debugging from the console; the page never reads it.
  window.parley = page;
}

main();
