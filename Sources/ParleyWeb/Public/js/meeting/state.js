// The page's copy of the meeting (protocol §1, §7): the welcome snapshot, then every event
// applied in seq order. A port of the *effects* in ParleyCore/Meeting+Rules.swift. Events
// are ops the server already accepted, so the rules are not checked again here; but an
// event that cannot apply (an unknown participant, poll or stroke) means our copy no longer
// matches the server's, and `applyOp` throws so the session can fetch a fresh snapshot.

/** Public and private messages kept in the state, as on the server (ModelLimits.messageHistory). */
export const MESSAGE_HISTORY = 1000;

export class InconsistentState extends Error {}

/**
 * A snapshot from `welcome.state`, with the fields the server omits when empty filled in,
 * so the rest of the page never has to check for them.
 */
export function normalizeMeeting(state) {
  const meeting = structuredClone(state);
  meeting.participants ??= [];
  meeting.chat ??= [];
  meeting.privateMessages ??= [];
  meeting.documents ??= [];
  meeting.annotations ??= [];
  meeting.polls ??= [];
  meeting.locked ??= false;
  meeting.ended ??= false;
  meeting.settings ??= { maxParticipants: 0, features: {} };
  meeting.settings.features = {
    chat: true, privateChat: true, annotation: true, polls: true, applicationSharing: true,
    ...meeting.settings.features,
  };
  for (const document of meeting.documents) {
    document.pages ??= [];
    document.isWhiteboard ??= false;
  }
  for (const slot of meeting.annotations) slot.strokes ??= [];
  for (const poll of meeting.polls) {
    poll.votes ??= [];
    poll.closed ??= false;
  }
  if (meeting.share) meeting.share.controlRequests ??= [];
  return meeting;
}

// MARK: - Reading the state

/** The host: role host and still present (protocol §7). */
export function hostOf(meeting) {
  return meeting.participants.find((p) => p.role === 'host' && p.presence !== 'left') ?? null;
}

export function presenterOf(meeting) {
  return meeting.participants.find((p) => p.isPresenter && p.presence !== 'left') ?? null;
}

export function participantOf(meeting, id) {
  return meeting.participants.find((p) => p.id === id) ?? null;
}

export function activeParticipant(meeting, id) {
  return meeting.participants.find((p) => p.id === id && p.presence !== 'left') ?? null;
}

/** The document holding `page`, and the page's index in it; null if no document has it. */
export function locatePage(meeting, page) {
  if (!page) return null;
  for (const document of meeting.documents) {
    const index = document.pages.indexOf(page);
    if (index >= 0) return { document, index };
  }
  return null;
}

export function strokesOn(meeting, page) {
  return meeting.annotations.find((slot) => slot.page === page)?.strokes ?? [];
}

/** Votes per option, in option order (Poll.results). */
export function pollResults(poll) {
  const counts = poll.options.map(() => 0);
  for (const vote of poll.votes) if (vote.option >= 0 && vote.option < counts.length) counts[vote.option] += 1;
  return counts;
}

/** Whether `participant` may send input to the shared application now (Meeting.mayControlShare). */
export function mayControlShare(meeting, participant) {
  const share = meeting.share;
  if (!share) return false;
  return share.controlHolder === participant || (!share.controlHolder && share.sharer === participant);
}

// MARK: - Applying events

/**
 * Applies one committed op to `meeting` in place.
 * @param op the wire op, an object with exactly one key (the kind).
 * @param issuer "system" or a participant id.
 * Ops of a kind this page does not know are ignored (the protocol may add kinds).
 */
export function applyOp(meeting, op, issuer, at, seq) {
  const kinds = Object.keys(op ?? {});
  if (kinds.length !== 1) throw new InconsistentState(`event ${seq} has no single op kind`);
  const kind = kinds[0];
  const args = op[kind] ?? {};
  if (issuer === 'system') {
    applySystem(meeting, kind, args, at, seq);
    return;
  }
  const actor = activeParticipant(meeting, issuer);
  if (!actor) throw new InconsistentState(`event ${seq}: ${issuer} is not in the meeting`);
  const handler = PARTICIPANT_EFFECTS[kind];
  if (handler) handler(meeting, args, actor, at, seq);
  else console.warn(`parley: ignoring op kind '${kind}' at seq ${seq}`);
}

function need(value, what) {
  if (value === null || value === undefined || value === -1) throw new InconsistentState(`no ${what}`);
  return value;
}

function capMessages(list) {
  if (list.length > MESSAGE_HISTORY) list.splice(0, list.length - MESSAGE_HISTORY);
}

function share(meeting) {
  return need(meeting.share, 'share in progress');
}

const PARTICIPANT_EFFECTS = {
  handOverHost(m, { to }, actor) {
    const target = need(activeParticipant(m, to), `participant ${to}`);
    actor.role = 'attendee';
    target.role = 'host';
  },
  setPresenter(m, { to }) {
    need(activeParticipant(m, to), `participant ${to}`);
    // Exactly one presenter: everyone else stops, including people who left.
    for (const p of m.participants) p.isPresenter = p.id === to && p.presence !== 'left';
  },
  chat(m, { text }, actor, at, seq) {
    m.chat.push({ seq, from: actor.id, text, at });
    capMessages(m.chat);
  },
  privateMessage(m, { to, text }, actor, at, seq) {
    m.privateMessages.push({ seq, from: actor.id, to, text, at });
    capMessages(m.privateMessages);
  },
  addDocument(m, { id, title, pages }) {
    m.documents.push({ id, title, pages: [...pages], isWhiteboard: false });
    if (!m.currentPage) m.currentPage = pages[0];
  },
  addWhiteboard(m, { id, title }) {
    const page = firstWhiteboardPage(id);
    m.documents.push({ id, title, pages: [page], isWhiteboard: true });
    if (!m.currentPage) m.currentPage = page;
  },
  addWhiteboardPage(m, { document, page }) {
    need(m.documents.find((d) => d.id === document), `document ${document}`).pages.push(page);
  },
  turnPage(m, { to }) {
    m.currentPage = to;
  },
  draw(m, { page, stroke, tool, color, width, points, text }, actor) {
    let slot = m.annotations.find((s) => s.page === page);
    if (!slot) {
      slot = { page, strokes: [] };
      m.annotations.push(slot);
    }
    const entry = { id: stroke, author: actor.id, tool, color, width, points };
    if (text !== undefined && text !== null) entry.text = text;
    slot.strokes.push(entry);
  },
  erase(m, { page, stroke }) {
    const slotIndex = m.annotations.findIndex((s) => s.page === page);
    const slot = need(m.annotations[slotIndex], `annotations on ${page}`);
    const index = need(slot.strokes.findIndex((s) => s.id === stroke), `stroke ${stroke}`);
    slot.strokes.splice(index, 1);
    if (slot.strokes.length === 0) m.annotations.splice(slotIndex, 1);
  },
  clearPage(m, { page }) {
    m.annotations = m.annotations.filter((s) => s.page !== page);
  },
  createPoll(m, { id, question, options }, actor) {
    m.polls.push({ id, creator: actor.id, question, options: [...options], votes: [], closed: false });
  },
  vote(m, { poll, option }, actor) {
    need(m.polls.find((p) => p.id === poll), `poll ${poll}`).votes.push({ voter: actor.id, option });
  },
  closePoll(m, { poll }) {
    need(m.polls.find((p) => p.id === poll), `poll ${poll}`).closed = true;
  },
  startShare(m, { kind, title }, actor) {
    m.share = { sharer: actor.id, kind, title, controlRequests: [] };
  },
  stopShare(m) {
    delete m.share;
  },
  requestControl(m, _args, actor) {
    share(m).controlRequests.push(actor.id);
  },
  grantControl(m, { to }) {
    const current = share(m);
    current.controlHolder = to;
    current.controlRequests = current.controlRequests.filter((id) => id !== to);
  },
  revokeControl(m) {
    delete share(m).controlHolder;
  },
  releaseControl(m) {
    delete share(m).controlHolder;
  },
  lock(m) {
    m.locked = true;
  },
  unlock(m) {
    m.locked = false;
  },
  end(m) {
    m.ended = true;
    delete m.share;
  },
};

function applySystem(m, kind, args, at, seq) {
  switch (kind) {
    case 'join': {
      const { participant: id, role } = args;
      const name = String(args.name ?? '').trim();
      // A host token joins as attendee while another host is present.
      const effectiveRole = role === 'host' && hostOf(m) ? 'attendee' : role;
      const becomesPresenter = !presenterOf(m) && (effectiveRole === 'host' || effectiveRole === 'presenter');
      const entry = { id, name, role: effectiveRole, isPresenter: becomesPresenter, presence: 'connected', joinedAt: at };
      const existing = m.participants.findIndex((p) => p.id === id);
      if (existing >= 0) m.participants[existing] = entry; // a participant who left comes back in the same slot
      else m.participants.push(entry);
      return;
    }
    case 'leave': {
      const p = need(activeParticipant(m, args.participant), `participant ${args.participant}`);
      const wasHost = p.role === 'host';
      const wasPresenter = p.isPresenter;
      p.presence = 'left';
      p.isPresenter = false;
      p.role = 'attendee';
      if (wasHost) {
        const heir = m.participants.find((q) => q.presence !== 'left');
        if (heir) heir.role = 'host';
      }
      if (wasPresenter) {
        const host = hostOf(m);
        if (host) host.isPresenter = true;
      }
      if (m.share?.sharer === p.id) delete m.share;
      if (m.share?.controlHolder === p.id) delete m.share.controlHolder;
      if (m.share) m.share.controlRequests = m.share.controlRequests.filter((id) => id !== p.id);
      return;
    }
    case 'presence': {
      need(activeParticipant(m, args.participant), `participant ${args.participant}`).presence = args.presence;
      return;
    }
    default:
      console.warn(`parley: ignoring system op kind '${kind}' at seq ${seq}`);
  }
}

/** The page a new whiteboard starts with (Meeting.firstWhiteboardPage). */
export function firstWhiteboardPage(documentId) {
  return `${documentId}.1`;
}
