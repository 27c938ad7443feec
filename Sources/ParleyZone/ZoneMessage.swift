import ParleyCore

/// What the processes of a zone say to each other over their links (`/zone/link`).
///
/// Orders from a manager carry its lease term; a server ignores orders from a term older
/// than the newest it has seen, so a deposed manager that still runs cannot move meetings.
public enum ZoneMessage: Codable, Equatable, Sendable {
    // A server to the manager.
    /// First message on a link. `address` is nil for processes clients never reach.
    case register(name: NodeName, role: NodeRole, address: ServerAddress?, holding: [HeldMeeting])
    /// The heartbeat: sent every `heartbeat.intervalMs`.
    case load(ServerLoad)
    case hosting(meeting: MeetingID, epoch: Epoch)
    case failedToHost(meeting: MeetingID, reason: String)
    /// A copy of the meeting found its host's state wrong at checkpoint `seq`: the host's
    /// digest, and the copy's, which the state rebuilt from the log agreed with.
    case hostOutvoted(meeting: MeetingID, seq: Seq, hostDigest: String, copyDigest: String)
    /// The server dropped its edge copy of the meeting: no participant used it for
    /// `scaling.edgeUnusedSeconds`.
    case edgeDropped(meeting: MeetingID)
    /// The web process asks where a meeting's clients should connect.
    case locate(request: UInt64, meeting: MeetingID)
    /// A server keeping a copy of the meeting (an edge) asks where its host is; answered
    /// with `located`.
    case findHost(request: UInt64, meeting: MeetingID)

    /// A join or leave for the log service (the manager passes it on).
    case attendance(Attendance)
    /// A host asks the license service whether a participant may join (passed on by the manager).
    case admit(request: UInt64, meeting: MeetingID, participant: ParticipantID)
    /// The license service's answer, passed back by the manager.
    case admitted(request: UInt64, ok: Bool, reason: String)
    /// An operator (`parley ctl drain`) asks the manager to move every meeting off `server`.
    case drain(server: NodeName)

    // The manager to a server.
    case open(meeting: MeetingID, standby: NodeName?, term: UInt64)
    /// `trace`: the manager's failover span, as W3C trace-context fields, when it traces.
    case promote(meeting: MeetingID, standby: NodeName?, term: UInt64, trace: [String: String]? = nil)
    case follow(meeting: MeetingID, host: NodeName, hostAddress: ServerAddress, term: UInt64)
    case release(meeting: MeetingID, term: UInt64)
    case located(request: UInt64, answer: LocateResult)
    /// The answer to `drain`: nothing is left on `server` (ok), or why the drain cannot run.
    case drained(server: NodeName, ok: Bool, detail: String)
    /// In a cluster: ask this process's supervisor for one more collab server on its machine,
    /// the one with the most room.
    case startCollab

    // A copy (standby or edge) and its host, over one link per pair of servers shared by
    // every meeting the one follows of the other.
    /// The copy asks for every committed entry after `after`, then the live stream. The host
    /// answers `subscribed` with the same number first: what it sends of the meeting from
    /// then on is for this subscription. A second one for the same meeting replaces the first.
    case subscribe(meeting: MeetingID, after: Seq, subscription: UInt64)
    case subscribed(meeting: MeetingID, subscription: UInt64)
    /// Either side ends the subscription (the host: it no longer streams the meeting).
    case unsubscribe(meeting: MeetingID, subscription: UInt64)
    /// The copy took this many of the meeting's messages: the host may send as many more.
    case credit(meeting: MeetingID, Int)
    case entries(meeting: MeetingID, [LogEntry])
    /// The host no longer holds the entries asked for: reload from the store, then subscribe again.
    case reload(meeting: MeetingID)
    /// The host's state digest at checkpoint `seq`, for its copies to compare theirs with.
    case digest(meeting: MeetingID, seq: Seq, digest: String)
    /// A copy passes up what one of the participants attached to it did.
    case copyRequest(meeting: MeetingID, CopyRequest)
    /// The host tells a copy about one of its participants.
    case copyNotice(meeting: MeetingID, CopyNotice)
}

/// The locator's answer as it travels from the manager to the web process.
public enum LocateResult: Codable, Equatable, Sendable {
    case at(NodeName, ServerAddress)
    case unavailable(String)

    public init(_ answer: Placement.LocateAnswer) {
        switch answer {
        case .at(let name, let address): self = .at(name, address)
        case .unavailable(let why): self = .unavailable(why.description)
        }
    }
}
