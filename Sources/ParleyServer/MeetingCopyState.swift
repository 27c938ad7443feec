import ParleyCore
import ParleyProtocol

/// Names a copy of a meeting on another server, as its host knows it: one per link the
/// copy follows the host over.
public struct CopyID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "copy#\(rawValue)" }
}

/// The rules of serving a meeting's participants from a copy of it on a server that does not
/// host it (an edge): the copy follows the host's committed stream, welcomes and resumes
/// its own clients from what it holds, fans the stream out to them, and passes their ops up
/// to the host under the ids the clients gave them.
///
/// Acknowledged still means committed: an op is acknowledged once the copy holds the entry
/// the host committed for it (the entry carries the op's id), or the host said the op was
/// committed earlier and the copy holds that seq. An op passed up and not answered yet is
/// passed up again, under the same id, on every new link to a host (a new host after a
/// failover answers it as the duplicate it may be), so the copy's clients keep their
/// connections through a host failover and see only a pause.
///
/// Pure, like ``MeetingHostState``: the shell feeds it inputs and carries out its actions.
public struct MeetingCopyState<Connection: Hashable & Sendable>: Sendable {
    public enum Action: Sendable {
        case send(Connection, ServerFrame)
        /// Send an error; a fatal one closes the connection after it.
        case fail(Connection, ProtocolError)
        /// As for the host: the welcome, then `replay`, are a backlog the connection reads at its own pace.
        case welcome(Connection, ParticipantID, Welcome, replay: ArraySlice<LogEntry>)
        case close(Connection)
        /// Ask the license service whether `participant` may join; answer with ``admission(_:_:at:)``.
        case askAdmission(Connection, ParticipantID)
        /// Committed entries for these connections, each entry followed by the acks owed for it.
        case deliver(ArraySlice<LogEntry>, to: [(Connection, ParticipantID)], acks: [Seq: [(Connection, OpID)]])
        case relay(Signal, from: ParticipantID, to: [Connection])
        /// Pass this up to the host, over the link the copy follows it on.
        case forward(CopyRequest)
        /// The host's state disagreed with this copy's at checkpoint `seq`, and the state
        /// rebuilt from the last agreed checkpoint sided with the copy: the zone must demote
        /// the host.
        case hostOutvoted(seq: Seq, host: MeetingDigest, copy: MeetingDigest)
        /// The copy no longer follows on from the host's stream: rebuild it from the store
        /// and report it with ``rebuilt(_:at:)``.
        case rebuild
        case log(HostLogLine)
    }

    private struct Joining: Sendable {
        var joiner: MeetingJoiner
        var resume: ResumePoint?
        var admitted: Bool
    }

    /// An op passed up and not answered yet.
    private struct Pending: Sendable {
        var participant: ParticipantID
        var id: OpID
        var operation: MeetingOp
    }

    public private(set) var log: MeetingLog
    private let limits: ConnectionLimits
    private let asksAdmission: Bool
    private var attached = AttachedClients<Connection>()
    /// Who each attached participant joined as: said again on every new link, and a
    /// participant whose join the host has not sequenced yet is not in the copy's state.
    private var joiners: [ParticipantID: MeetingJoiner] = [:]
    private var awaitingAdmission = OrderedTable<Connection, Joining>()
    /// Resuming from a seq this copy does not hold yet: the client came from a copy further
    /// along. Welcomed when the stream gets here.
    private var awaitingSeq: [(Connection, Joining)] = []
    /// In the order the clients sent them.
    private var pending: [Pending] = []
    /// Acks the host gave for seqs this copy does not hold yet.
    private var owedAcks: [Seq: [(ParticipantID, OpID)]] = [:]
    /// Goodbyes the host has not committed yet: said again on a new link.
    private var leaving: [ParticipantID] = []
    /// Whether a link to the host is up: requests go up only then, and all of them again
    /// when the next one starts.
    public private(set) var linked = false
    /// The last checkpoint this copy and its host agreed on (or where the copy was loaded
    /// from the store: `voted` false), with the state then: a disagreement is settled from it.
    private var agreed: (seq: Seq, meeting: Meeting, voted: Bool)
    /// Set by a vote that disagreed, until one agrees again (which is logged).
    private var disagreedAt: Seq?
    /// The copy was outvoted or fell out of step, and waits to be rebuilt from the store:
    /// nothing may be promoted from it meanwhile.
    public private(set) var awaitsRebuild = false
    public private(set) var stopped = false

    public init(log: MeetingLog, limits: ConnectionLimits, asksAdmission: Bool) {
        self.log = log
        self.limits = limits
        self.asksAdmission = asksAdmission
        agreed = (log.committedSeq, log.meeting, false)
    }

    public var meeting: MeetingID { log.meeting.id }
    /// Clients attached or joining.
    public var clientCount: Int { attached.connections.count + awaitingAdmission.keys.count + awaitingSeq.count }

    // MARK: Clients

    public mutating func attach(_ connection: Connection, _ joiner: MeetingJoiner, resume: ResumePoint?, at now: Millis) -> [Action] {
        guard !stopped else { return [] }
        return attach(connection, Joining(joiner: joiner, resume: resume, admitted: false), at: now)
    }

    private mutating func attach(_ connection: Connection, _ joining: Joining, at now: Millis) -> [Action] {
        if let refusal = log.refusal(resuming: joining.resume) { return [.fail(connection, refusal)] }
        if let resume = joining.resume, resume.seq > log.committedSeq {
            awaitingSeq.append((connection, joining))
            return []
        }
        if let arrival = log.arrival(of: joining.joiner) {
            if let refusal = log.refusal(of: arrival, at: now) { return [.fail(connection, .refusing(refusal))] }
            if case .join = arrival, asksAdmission, !joining.admitted {
                awaitingAdmission[connection] = joining
                return [.askAdmission(connection, joining.joiner.participant)]
            }
        }
        return welcome(connection, joining, at: now)
    }

    public mutating func admission(_ connection: Connection, _ decision: Admission, at now: Millis) -> [Action] {
        guard !stopped, var joining = awaitingAdmission.removeValue(forKey: connection) else { return [] }
        if case .refuse(let why) = decision {
            return [
                .log(.licenseRefused(joining.joiner.participant, why)),
                .fail(connection, .licenseRefused(why)),
            ]
        }
        joining.admitted = true
        return attach(connection, joining, at: now)
    }

    /// Welcomed from what the copy holds (all of it committed); the host hears of the
    /// arrival and sequences it, and the client sees it come by in the stream.
    private mutating func welcome(_ connection: Connection, _ joining: Joining, at now: Millis) -> [Action] {
        let joiner = joining.joiner
        if let arrival = log.arrival(of: joiner), let refusal = log.refusal(of: arrival, at: now) {
            return [.fail(connection, .refusing(refusal))]
        }
        let welcome: Welcome
        let replay: ArraySlice<LogEntry>
        do throws(ProtocolError) {
            (welcome, replay) = try log.welcome(joiner.participant, resume: joining.resume, limits: limits)
        } catch {
            return [.fail(connection, error)]
        }
        var actions = attached.attach(connection, as: joiner.participant, replay: replay)
            .map { Action.fail($0, .replaced(joiner.participant)) }
        actions.append(.welcome(connection, joiner.participant, welcome, replay: replay))
        joiners[joiner.participant] = joiner
        leaving.removeAll { $0 == joiner.participant }
        if linked { actions.append(.forward(.arrive(participant: joiner.participant, name: joiner.name, role: joiner.role))) }
        return actions
    }

    public mutating func op(_ connection: Connection, _ opID: OpID, _ operation: MeetingOp, at now: Millis) -> [Action] {
        guard !stopped else { return [] }
        guard let participant = attached[connection] else {
            return [.send(connection, .error(ProtocolError(.notJoined, "send hello and wait for welcome first")))]
        }
        if let earlier = attached.replayed(opID, on: connection) {
            return [.send(connection, .ack(id: opID, epoch: earlier.epoch, seq: earlier.seq))]
        }
        if let seq = log.committedSeq(of: participant, opID: opID) {
            let epoch = log.tail.first { $0.seq == seq }?.epoch ?? log.epoch
            return [.send(connection, .ack(id: opID, epoch: epoch, seq: seq))]
        }
        // Sent again before its answer came: the first one's answer serves both.
        if pending.contains(where: { $0.participant == participant && $0.id == opID }) { return [] }
        pending.append(Pending(participant: participant, id: opID, operation: operation))
        return linked ? [.forward(.op(participant: participant, id: opID, operation))] : []
    }

    /// Relayed here at once, and to the host for everyone elsewhere; never logged. While no
    /// link is up, only this copy's clients get it.
    public mutating func signal(_ connection: Connection, _ signal: Signal) -> [Action] {
        guard !stopped else { return [] }
        guard let participant = attached[connection] else {
            return [.send(connection, .error(ProtocolError(.notJoined, "send hello and wait for welcome first")))]
        }
        do throws(Rejection) {
            try log.meeting.checkSignal(signal, from: participant)
        } catch {
            return [.send(connection, .error(ProtocolError(.signalRefused, error.message)))]
        }
        var actions: [Action] = [.relay(signal, from: participant, to: attached.connections.filter { $0 != connection })]
        if linked { actions.append(.forward(.signal(participant: participant, signal))) }
        return actions
    }

    public mutating func detach(_ connection: Connection, at now: Millis) -> [Action] {
        awaitingAdmission[connection] = nil
        awaitingSeq.removeAll { $0.0 == connection }
        guard !stopped, let participant = detachClient(connection), !attached.contains(participant) else { return [] }
        return linked ? [.forward(.depart(participant: participant, leaving: false))] : []
    }

    public mutating func leave(_ connection: Connection, at now: Millis) -> [Action] {
        awaitingAdmission[connection] = nil
        awaitingSeq.removeAll { $0.0 == connection }
        guard !stopped, let participant = detachClient(connection) else { return [] }
        if !leaving.contains(participant) { leaving.append(participant) }
        return (linked ? [.forward(.depart(participant: participant, leaving: true))] : []) + [.close(connection)]
    }

    // MARK: The host

    /// A link to the host is up (the first, or one to a new host after a failover): say
    /// again who is attached, who left, and every op not answered yet.
    public mutating func linkStarted() -> [Action] {
        guard !stopped else { return [] }
        linked = true
        var actions: [Action] = []
        var announced: Set<ParticipantID> = []
        for (_, participant) in attached.entries where announced.insert(participant).inserted {
            guard let joiner = joiners[participant] else { continue }
            actions.append(.forward(.arrive(participant: participant, name: joiner.name, role: joiner.role)))
        }
        actions += leaving.map { .forward(.depart(participant: $0, leaving: true)) }
        actions += pending.map { .forward(.op(participant: $0.participant, id: $0.id, $0.operation)) }
        return actions
    }

    /// The link to the host ended. Nothing is lost: requests wait for the next one.
    public mutating func linkEnded() {
        linked = false
    }

    /// Committed entries from the host's stream, in seq order.
    public mutating func entries(_ entries: [LogEntry], at now: Millis) -> [Action] {
        guard !stopped else { return [] }
        let before = log.lastSeq
        do throws(MeetingLog.RecoveryError) {
            try log.replicate(entries)
        } catch {
            // What was applied before the entry that did not fit is committed: the clients
            // get it, so that they stay where the copy is when it is rebuilt.
            let applied = entries.filter { $0.seq > before && $0.seq <= log.lastSeq }
            awaitsRebuild = true
            return caughtUp(applied, at: now)
                + [.log(.init(.warning, "copy out of step with its host; rebuilding it", ["error": "\(error)"])), .rebuild]
        }
        return caughtUp(entries.filter { $0.seq > before }, at: now)
    }

    /// The copy was rebuilt from the store (it fell out of step, or the host no longer had
    /// what it lacked). Its clients get what they miss from the new copy, or, when it does
    /// not reach back that far, resume afresh.
    public mutating func rebuilt(_ newLog: MeetingLog, at now: Millis) -> [Action] {
        guard !stopped else { return [] }
        let before = log.lastSeq
        log = newLog
        awaitsRebuild = false
        agreed = (newLog.committedSeq, newLog.meeting, false)
        let rebuiltLine = Action.log(.init(.notice, "copy rebuilt from the store", ["last_seq": "\(newLog.committedSeq)", "had": "\(before)"]))
        let tail = newLog.tail.prefix { $0.seq <= newLog.committedSeq }
        if newLog.committedSeq >= before, newLog.committedSeq == before || (tail.first.map { $0.seq <= before + 1 } ?? false) {
            return [rebuiltLine] + caughtUp(tail.filter { $0.seq > before }, at: now)
        }
        let error = ProtocolError(.moved, "this server's copy of the meeting was rebuilt; reconnect to resume", fatal: true)
        return [rebuiltLine] + removeAllClients().map { .fail($0, error) }
    }

    /// Delivers `new`, the entries the copy took beyond what its clients had, with the acks now due.
    private mutating func caughtUp(_ new: [LogEntry], at now: Millis) -> [Action] {
        guard !new.isEmpty else { return [] }
        var acks: [Seq: [(Connection, OpID)]] = [:]
        for entry in new {
            var due = owedAcks.removeValue(forKey: entry.seq) ?? []
            if let id = entry.opID, case .participant(let participant) = entry.issuer, removePending(participant, id) {
                due.append((participant, id))
            }
            if case .leave(let participant) = entry.operation { leaving.removeAll { $0 == participant } }
            for (participant, id) in due {
                for connection in attached.connections(of: participant) { acks[entry.seq, default: []].append((connection, id)) }
            }
        }
        var actions: [Action] = [.deliver(new[...], to: attached.entries, acks: acks)]
        if log.meeting.ended {
            let error = ProtocolError(.meetingEnded, "the meeting has ended", fatal: true)
            actions += (removeAllClients() + awaitingAdmission.keys + awaitingSeq.map(\.0)).map { .fail($0, error) }
            awaitingAdmission.removeAll()
            awaitingSeq.removeAll()
            return actions
        }
        // Clients that came from a copy further along, now that this one is there too.
        let ready = awaitingSeq.filter { ($0.1.resume?.seq ?? 0) <= log.committedSeq }
        awaitingSeq.removeAll { ($0.1.resume?.seq ?? 0) <= log.committedSeq }
        for (connection, joining) in ready { actions += attach(connection, joining, at: now) }
        return actions
    }

    // MARK: Voting

    /// The host's digest of its state at checkpoint `seq`. The copy votes with its own; a
    /// disagreement is settled by a third vote, the state rebuilt from the last checkpoint
    /// both agreed on plus the committed entries since (``DigestVerdict``).
    public mutating func hostDigest(_ digest: MeetingDigest, at seq: Seq) -> [Action] {
        guard !stopped, log.committedSeq == seq else { return [] }
        let mine = MeetingDigest(of: log.meeting)
        let rebuilt = mine == digest ? nil : rebuiltSinceAgreement(through: seq).map(MeetingDigest.init(of:))
        let facts = ["seq": "\(seq)", "host_digest": digest.hex, "copy_digest": mine.hex, "rebuilt_digest": rebuilt?.hex ?? "-"]
        if mine != digest, disagreedAt == nil { disagreedAt = seq }
        switch DigestVerdict.settle(host: digest, copy: mine, rebuilt: rebuilt, baseVoted: agreed.voted) {
        case .agreed:
            agreed = (seq, log.meeting, true)
            guard let since = disagreedAt else { return [] }
            disagreedAt = nil
            return [.log(.init(.notice, "this copy agrees with its host again", ["seq": "\(seq)", "disagreed_at": "\(since)"]))]
        case .copyOutvoted:
            awaitsRebuild = true
            return [.log(.init(.error, "this copy's state disagreed with its host's at a checkpoint and was outvoted; rebuilding it from the store", facts)),
                    .rebuild]
        case .hostOutvoted:
            agreed = (seq, log.meeting, true)
            return [.log(.init(.error, "the host's state disagreed with this copy's at a checkpoint, and the log sides with the copy; the host must be demoted", facts)),
                    .hostOutvoted(seq: seq, host: digest, copy: mine)]
        case .undecided:
            awaitsRebuild = true
            return [.log(.init(.error, "this copy's state disagreed with its host's at a checkpoint and no two votes agree; rebuilding it from the store", facts)),
                    .rebuild]
        }
    }

    /// The state at `seq` rebuilt from the last agreed checkpoint and the committed entries
    /// since; nil when the copy no longer holds all of them.
    private func rebuiltSinceAgreement(through seq: Seq) -> Meeting? {
        let entries = log.tail.filter { $0.seq > agreed.seq && $0.seq <= seq }
        guard entries.count == Int(seq - agreed.seq) else { return nil }
        let base = Snapshot(meeting: agreed.meeting, seq: agreed.seq, epoch: log.epoch, outcomes: OpOutcomes(capacity: 1))
        return (try? MeetingLog(standbyFrom: base, entries: entries))?.meeting
    }

    /// Test fault injection only: see ``MeetingLog/corruptStateForTesting(_:)``.
    public mutating func corruptStateForTesting(_ change: (inout Meeting) -> Void) {
        log.corruptStateForTesting(change)
    }

    /// What the host told the copy about one of its participants.
    public mutating func notice(_ notice: CopyNotice) -> [Action] {
        guard !stopped else { return [] }
        switch notice {
        case .acked(let participant, let id, let epoch, let seq):
            // Answered already (its entry came by in the stream first): once is enough.
            guard removePending(participant, id) else { return [] }
            guard seq <= log.committedSeq else {
                owedAcks[seq, default: []].append((participant, id))
                return []
            }
            return attached.connections(of: participant).map { .send($0, .ack(id: id, epoch: epoch, seq: seq)) }
        case .rejected(let participant, let id, let rejection):
            guard removePending(participant, id) else { return [] }
            return attached.connections(of: participant).map { .send($0, .reject(id: id, rejection)) }
        case .refused(let participant, let rejection):
            return attached.connections(of: participant).map { connection in
                detachClient(connection)
                return .fail(connection, .refusing(rejection))
            }
        case .replaced(let participant):
            return attached.connections(of: participant).map { connection in
                detachClient(connection)
                return .fail(connection, .replaced(participant))
            }
        case .signal(let from, let signal):
            return [.relay(signal, from: from, to: attached.connections)]
        }
    }

    @discardableResult
    private mutating func detachClient(_ connection: Connection) -> ParticipantID? {
        guard let participant = attached.detach(connection) else { return nil }
        if !attached.contains(participant) { joiners[participant] = nil }
        return participant
    }

    private mutating func removeAllClients() -> [Connection] {
        joiners.removeAll()
        return attached.removeAll()
    }

    /// Whether the op was waiting for its answer (it no longer is).
    private mutating func removePending(_ participant: ParticipantID, _ id: OpID) -> Bool {
        guard let index = pending.firstIndex(where: { $0.participant == participant && $0.id == id }) else { return false }
        pending.remove(at: index)
        return true
    }

    // MARK: Stopping

    /// Stops the copy if no participant is attached or joining: an edge copy nobody uses
    /// would follow its host for nothing. Returns whether it stopped. Decided here, in
    /// order with the attaches, so that a participant arriving as the copy is dropped is
    /// either counted (the copy stays) or finds it gone (and asks the locator again).
    public mutating func stopIfUnused() -> Bool {
        guard !stopped, clientCount == 0 else { return false }
        stopped = true
        return true
    }

    /// The copy is dropped (the meeting moved away for good, or the server is stopping with
    /// `error` nil): its clients resume elsewhere.
    public mutating func stop(failing error: ProtocolError?) -> [Action] {
        guard !stopped else { return [] }
        stopped = true
        let connections = removeAllClients() + awaitingAdmission.keys + awaitingSeq.map(\.0)
        awaitingAdmission.removeAll()
        awaitingSeq.removeAll()
        guard let error else { return connections.map { .close($0) } }
        return connections.map { .fail($0, error) }
    }
}
