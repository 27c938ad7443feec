import ParleyCore
import ParleyProtocol

/// Who a token says is joining.
public struct MeetingJoiner: Equatable, Sendable {
    public var participant: ParticipantID
    public var name: String
    public var role: Role

    public init(participant: ParticipantID, name: String, role: Role) {
        self.participant = participant
        self.name = name
        self.role = role
    }
}

/// The client connections attached to one copy of a meeting (the host's, or an edge's on
/// another server): who each speaks for, and the ops each resumed connection finds in its
/// replay. The host's rules and the edge's share it, so a client is welcomed and replaced
/// the same way wherever it connects.
struct AttachedClients<Connection: Hashable & Sendable>: Sendable {
    private var speaksFor = OrderedTable<Connection, ParticipantID>()
    /// Per connection resumed by replay, its participant's own ops in that replay. The client
    /// resends what it has no ack for with the welcome, before it reads the replay; by the
    /// time they arrive, commits may have trimmed those entries, and their outcomes, out of
    /// the resume window. These answer them as the duplicates they are.
    private var replayedOps: [Connection: [OpID: (seq: Seq, epoch: Epoch)]] = [:]

    subscript(connection: Connection) -> ParticipantID? { speaksFor[connection] }
    var entries: [(Connection, ParticipantID)] { speaksFor.entries }
    var connections: [Connection] { speaksFor.keys }
    var count: Int { speaksFor.count }

    func contains(_ participant: ParticipantID) -> Bool { speaksFor.values.contains(participant) }

    /// The connections attached as `participant` (one, unless a replacement is on its way).
    func connections(of participant: ParticipantID) -> [Connection] {
        speaksFor.entries.filter { $0.1 == participant }.map(\.0)
    }

    /// Attaches `connection` as `participant`, welcomed with `replay`. Returns the older
    /// connections of the same participant, which it replaces and which must be closed.
    mutating func attach(_ connection: Connection, as participant: ParticipantID, replay: ArraySlice<LogEntry>) -> [Connection] {
        let replaced = connections(of: participant)
        for old in replaced { detach(old) }
        // Attached before the welcome goes out: a client may send an op the moment it reads
        // the welcome, and it must be routed here rather than answered not_joined.
        speaksFor[connection] = participant
        var own: [OpID: (seq: Seq, epoch: Epoch)] = [:]
        for entry in replay where entry.issuer == .participant(participant) {
            if let id = entry.opID { own[id] = (entry.seq, entry.epoch) }
        }
        replayedOps[connection] = own.isEmpty ? nil : own
        return replaced
    }

    /// Forgets `connection`; returns whom it spoke for.
    @discardableResult
    mutating func detach(_ connection: Connection) -> ParticipantID? {
        replayedOps[connection] = nil
        return speaksFor.removeValue(forKey: connection)
    }

    /// The ack for an op the connection's replay holds already.
    func replayed(_ opID: OpID, on connection: Connection) -> (seq: Seq, epoch: Epoch)? {
        replayedOps[connection]?[opID]
    }

    /// Forgets every connection; returns them in the order they attached.
    mutating func removeAll() -> [Connection] {
        defer {
            speaksFor.removeAll()
            replayedOps.removeAll()
        }
        return speaksFor.keys
    }
}

extension MeetingLog {
    /// Why a client resuming from `resume` (nil: new) cannot attach to this meeting at all.
    func refusal(resuming resume: ResumePoint?) -> ProtocolError? {
        if let resume, resume.meeting != meeting.id {
            return ProtocolError(.meetingMismatch, "resume point is for meeting \(resume.meeting), this token is for \(meeting.id)", fatal: true)
        }
        // An ended meeting takes nobody back, not even a participant it still lists as connected.
        if meeting.ended { return ProtocolError(.meetingEnded, "meeting \(meeting.id) has ended", fatal: true) }
        return nil
    }

    /// Whom the joiner's arrival adds or brings back, if anyone: nil if already connected.
    func arrival(of joiner: MeetingJoiner) -> MeetingOp? {
        switch meeting.participant(joiner.participant)?.presence {
        // The token's role, not the one the participant ends up with (``Meeting/roleOnJoining(_:)``):
        // a host token is admitted into a locked or full meeting even when it joins as attendee.
        case nil, .left?: .join(participant: joiner.participant, name: joiner.name, role: joiner.role)
        case .reconnecting?: .presence(participant: joiner.participant, presence: .connected)
        case .connected?: nil
        }
    }

    /// Why the meeting would refuse the arrival now, from a dry run on a copy of its state.
    func refusal(of arrival: MeetingOp, at now: Millis) -> Rejection? {
        var probe = meeting
        do throws(Rejection) {
            try probe.apply(arrival, by: .system, at: now, seq: lastSeq + 1)
            return nil
        } catch {
            return error
        }
    }

    /// The welcome for a participant resuming after `resume` (nothing seen: nil), and the
    /// committed entries to replay after it.
    func welcome(_ participant: ParticipantID, resume: ResumePoint?, limits: ConnectionLimits)
        throws(ProtocolError) -> (Welcome, replay: ArraySlice<LogEntry>)
    {
        switch self.resume(after: resume?.seq) {
        case .replay(let entries):
            return (Welcome(meeting: meeting.id, participant: participant, epoch: epoch, mode: .replay,
                            seq: resume?.seq ?? 0, state: nil, limits: limits), entries[...])
        case .snapshot(let snapshot):
            return (Welcome(meeting: meeting.id, participant: participant, epoch: epoch, mode: .snapshot,
                            seq: snapshot.seq, state: snapshot.meeting.visible(to: participant), limits: limits), [])
        case .fromFuture(let latest):
            throw ProtocolError(.seqFromFuture, "ahead of the last committed seq \(latest)", fatal: true)
        }
    }
}

extension ProtocolError {
    /// How a refused join or return reaches the client.
    static func refusing(_ rejection: Rejection) -> ProtocolError {
        let code: ProtocolErrorCode = rejection.code == .meetingEnded ? .meetingEnded : .joinRefused
        return ProtocolError(code, rejection.message, fatal: true, reason: rejection.code.rawValue)
    }

    static func licenseRefused(_ why: String) -> ProtocolError {
        ProtocolError(.joinRefused, why, fatal: true, reason: "zone_full")
    }

    static func replaced(_ participant: ParticipantID) -> ProtocolError {
        ProtocolError(.replaced, "another connection of \(participant) joined; this one is closed", fatal: true)
    }
}

extension HostLogLine {
    static func licenseRefused(_ participant: ParticipantID, _ why: String) -> HostLogLine {
        HostLogLine(.notice, "join refused by the license service", ["participant": "\(participant)", "reason": why])
    }
}
