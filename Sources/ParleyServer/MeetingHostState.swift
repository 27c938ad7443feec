import Logging
import ParleyCore
import ParleyProtocol

/// The rules of hosting one meeting, apart from sockets, the store and the clock: who is
/// attached, which ops are sequenced and acknowledged when, what a joining client is
/// welcomed with, and what happens when a commit is fenced or fails.
///
/// Pure: ``MeetingHost`` feeds it inputs (with the time) and carries out the actions it
/// returns, in order. `Connection` is whatever the shell names a client connection by: the
/// server's socket object, or a number in a simulation. The state never calls it.
///
/// Acknowledged means committed: an op is answered only after the store holds it, under
/// this host's epoch. At most one commit is in flight; what is sequenced meanwhile goes in
/// the next.
public struct MeetingHostState<Connection: Hashable & Sendable>: Sendable {
    public typealias Joiner = MeetingJoiner

    public enum Action: Sendable {
        /// Send one frame to one connection.
        case send(Connection, ServerFrame)
        /// Send an error; a fatal one closes the connection after it.
        case fail(Connection, ProtocolError)
        /// The connection is attached as `participant`: its welcome, then `replay`, are a
        /// backlog it reads at its own pace.
        case welcome(Connection, ParticipantID, Welcome, replay: ArraySlice<LogEntry>)
        /// Close the connection quietly (its participant left).
        case close(Connection)
        /// Ask the license service whether `participant` may join; answer with ``admission(_:_:at:)``.
        case askAdmission(Connection, ParticipantID)
        /// Store these entries under this host's epoch; answer with ``committed(at:)``,
        /// ``fenced(current:)`` or ``commitFailed(_:)``.
        case commit([LogEntry])
        /// Deliver committed entries to these connections (each sees its own view), each
        /// entry followed by the acks owed for it. A connection that cannot take them is
        /// reported back with ``detach(_:at:)``.
        case deliver(ArraySlice<LogEntry>, to: [(Connection, ParticipantID)], acks: [Seq: [(Connection, OpID)]])
        /// A signal from `from`, relayed (not logged) to these connections.
        case relay(Signal, from: ParticipantID, to: [Connection])
        /// A join or leave was committed.
        case attendance(Attendance)
        /// Committed entries for every copy (standby or edge), in seq order.
        case replicate([LogEntry])
        /// Tell the copy on another server about its participants.
        case notify(CopyID, CopyNotice)
        /// Write this checkpoint before stopping (graceful shutdown).
        case finalCheckpoint(Snapshot)
        case log(HostLogLine)
        /// The host is done: close these connections quietly and stop reading inputs.
        case stop(closing: [Connection])
    }

    /// A connection waiting to be welcomed.
    private struct Joining: Sendable {
        var joiner: Joiner
        var resume: ResumePoint?
        var admitted: Bool
    }

    public private(set) var log: MeetingLog
    private let limits: ConnectionLimits
    /// Ops refused as poison: they crashed the processes that applied them.
    private let poisoned: Set<OpOutcomes.Key>
    /// Whether joins ask the license service first.
    private let asksAdmission: Bool
    private let snapshotEveryEntries: Int

    /// Who each attached connection speaks for.
    private var attached = AttachedClients<Connection>()
    /// The copies on other servers each participant is attached to (one, unless a
    /// replacement is on its way), in the order they attached.
    private var remote: [ParticipantID: [CopyID]] = [:]
    /// Acks owed once the entry at that seq is committed.
    private var owedAcks: [Seq: [(Connection, OpID)]] = [:]
    /// Joins waiting for the license service's answer.
    private var awaitingAdmission = OrderedTable<Connection, Joining>()
    /// Welcomes waiting for a commit: a welcome describes committed state only.
    private var awaitingCommit: [(Connection, Joining)] = []
    /// The last seq of the commit in flight.
    private var committing: Seq?
    private var lastSnapshotSeq: Seq
    /// A checkpoint is due as soon as nothing is uncommitted, whatever the count.
    private var checkpointOwed: Bool
    private var shuttingDown = false
    public private(set) var stopped = false

    /// - Parameter checkpointAtOnce: checkpoint as soon as nothing is uncommitted. A host
    ///   that took the meeting over does: its predecessor may have been demoted for a state
    ///   that went wrong, and a copy rebuilt from the store must not start from a checkpoint
    ///   written from that state.
    public init(log: MeetingLog, limits: ConnectionLimits, poisoned: Set<OpOutcomes.Key> = [], asksAdmission: Bool,
         snapshotEveryEntries: Int, checkpointAtOnce: Bool = false) {
        checkpointOwed = checkpointAtOnce && log.committedSeq > 0
        self.log = log
        self.limits = limits
        self.poisoned = poisoned
        self.asksAdmission = asksAdmission
        self.snapshotEveryEntries = snapshotEveryEntries
        lastSnapshotSeq = log.committedSeq
    }

    public var meeting: MeetingID { log.meeting.id }
    public var hasUncommitted: Bool { log.hasUncommitted }
    /// Participants connected to the meeting, here or to a copy on another server (one being
    /// replaced by a new connection counts twice, briefly). O(1): read after every batch.
    public var connectedParticipants: Int { attached.count + remote.count }

    /// The participant an attached connection speaks for.
    public func participant(of connection: Connection) -> ParticipantID? { attached[connection] }

    // MARK: Clients

    /// A client's hello was verified for this meeting.
    public mutating func attach(_ connection: Connection, _ joiner: Joiner, resume: ResumePoint?, at now: Millis) -> [Action] {
        guard !stopped else { return [] }
        return attach(connection, Joining(joiner: joiner, resume: resume, admitted: false), at: now)
    }

    private mutating func attach(_ connection: Connection, _ joining: Joining, at now: Millis) -> [Action] {
        if let refusal = log.refusal(resuming: joining.resume) { return [.fail(connection, refusal)] }
        // A participant resumes from a seq that this meeting committed, or not at all.
        if let resume = joining.resume, resume.seq > log.committedSeq {
            return [.fail(connection, ProtocolError(.seqFromFuture, "seq \(resume.seq) is ahead of this meeting's last committed seq \(log.committedSeq)", fatal: true))]
        }
        if let arrival = log.arrival(of: joining.joiner) {
            // Dry run first, so a refused join never sees a welcome.
            if let refusal = log.refusal(of: arrival, at: now) { return [.fail(connection, .refusing(refusal))] }
            // The zone's participant limit spans every server: the license service decides,
            // while the meeting goes on.
            if case .join = arrival, asksAdmission, !joining.admitted {
                awaitingAdmission[connection] = joining
                return [.askAdmission(connection, joining.joiner.participant)]
            }
        }
        awaitingCommit.append((connection, joining))
        return welcomeIfCommitted(at: now)
    }

    /// The license service answered for a join.
    public mutating func admission(_ connection: Connection, _ decision: Admission, at now: Millis) -> [Action] {
        // Gone meanwhile (detached, or the host stopped): nothing to do.
        guard !stopped, var joining = awaitingAdmission.removeValue(forKey: connection) else { return [] }
        if case .refuse(let why) = decision {
            return [
                .log(.licenseRefused(joining.joiner.participant, why)),
                .fail(connection, .licenseRefused(why)),
            ]
        }
        joining.admitted = true
        // The meeting may have changed while the answer was on its way: check again.
        return attach(connection, joining, at: now)
    }

    /// Welcomes those waiting, once nothing sequenced is uncommitted; otherwise commits first.
    private mutating func welcomeIfCommitted(at now: Millis) -> [Action] {
        var actions: [Action] = []
        // One at a time: a welcome's own arrival is sequenced, and the next welcome must
        // wait until that is committed too (found by the first simulator; unit test
        // `twoWelcomesWaitingForOneCommit`).
        while let (connection, joining) = awaitingCommit.first {
            guard !log.hasUncommitted else { return actions + commitIfIdle() }
            awaitingCommit.removeFirst()
            actions += welcome(connection, joining, at: now)
        }
        return actions
    }

    private mutating func welcome(_ connection: Connection, _ joining: Joining, at now: Millis) -> [Action] {
        let participant = joining.joiner.participant
        // The meeting may have changed since the checks (a commit, another connection of
        // the same participant): the arrival is decided, and a join tried, again now.
        let arrival = log.arrival(of: joining.joiner)
        if let arrival, let refusal = log.refusal(of: arrival, at: now) { return [.fail(connection, .refusing(refusal))] }
        let welcome: Welcome
        let replay: ArraySlice<LogEntry>
        do throws(ProtocolError) {
            (welcome, replay) = try log.welcome(participant, resume: joining.resume, limits: limits)
        } catch {
            return [.fail(connection, error)]
        }
        // A newer connection of the same participant replaces the old one, here or on a copy.
        var actions = attached.attach(connection, as: participant, replay: replay).map { Action.fail($0, .replaced(participant)) }
        actions += replaceRemote(participant)
        actions.append(.welcome(connection, participant, welcome, replay: replay))
        if let arrival {
            actions += submit(arrival, by: .system, opID: nil, replyTo: nil, at: now)
        }
        return actions
    }

    /// The participant attached here or on another copy: the copies that had it close theirs.
    private mutating func replaceRemote(_ participant: ParticipantID, keeping copy: CopyID? = nil) -> [Action] {
        let others = (remote[participant] ?? []).filter { $0 != copy }
        remote[participant] = copy.map { [$0] }
        return others.map { .notify($0, .replaced(participant: participant)) }
    }

    /// Whether the participant is attached anywhere: here, or on a copy.
    private func isAttached(_ participant: ParticipantID) -> Bool {
        attached.contains(participant) || remote[participant] != nil
    }

    /// An op from a client.
    public mutating func op(_ connection: Connection, _ opID: OpID, _ operation: MeetingOp, at now: Millis) -> [Action] {
        guard !stopped else { return [] }
        guard let participant = attached[connection] else {
            return [.send(connection, .error(ProtocolError(.notJoined, "send hello and wait for welcome first")))]
        }
        if isPoison(participant, opID) {
            return [
                .log(.init(.error, "poison op refused", ["participant": "\(participant)", "op": "\(opID)"])),
                .send(connection, .reject(id: opID, Rejection(.poisonOp, "this op crashed the servers that applied it; it is refused and recorded"))),
            ]
        }
        if let earlier = attached.replayed(opID, on: connection) {
            return [.send(connection, .ack(id: opID, epoch: earlier.epoch, seq: earlier.seq))]
        }
        return submit(operation, by: .participant(participant), opID: opID, replyTo: .connection(connection), at: now)
    }

    /// Whether this op crashed the processes that applied it, and is refused.
    public func isPoison(_ participant: ParticipantID, _ opID: OpID) -> Bool {
        poisoned.contains(OpOutcomes.Key(participant: participant, opID: opID))
    }

    /// A signal from a client: relayed to the others, never logged.
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
        return relay(signal, from: participant, except: connection, exceptCopy: nil)
    }

    /// A connection is gone (or could not keep up). Its participant is `reconnecting` until
    /// it comes back or leaves.
    public mutating func detach(_ connection: Connection, at now: Millis) -> [Action] {
        awaitingAdmission[connection] = nil
        awaitingCommit.removeAll { $0.0 == connection }
        guard !stopped, let participant = attached.detach(connection) else { return [] }
        return markReconnectingIfGone(participant, at: now)
    }

    /// A participant no longer attached anywhere is `reconnecting` until it comes back or leaves.
    private mutating func markReconnectingIfGone(_ participant: ParticipantID, at now: Millis) -> [Action] {
        guard !isAttached(participant), log.meeting.participant(participant)?.presence == .connected else { return [] }
        return submit(.presence(participant: participant, presence: .reconnecting), by: .system, opID: nil,
                      replyTo: nil, at: now)
    }

    /// The client said goodbye.
    public mutating func leave(_ connection: Connection, at now: Millis) -> [Action] {
        awaitingAdmission[connection] = nil
        awaitingCommit.removeAll { $0.0 == connection }
        guard !stopped, let participant = attached.detach(connection) else { return [] }
        return submit(.leave(participant: participant), by: .system, opID: nil, replyTo: nil, at: now)
            + [.close(connection)]
    }

    /// Who hears the outcome of an op.
    private enum Reply {
        case connection(Connection)
        /// A participant on a copy elsewhere: the copy acknowledges from the committed
        /// stream, so only what the stream will not show is told.
        case copy(CopyID, ParticipantID)
    }

    private mutating func submit(_ operation: MeetingOp, by issuer: Issuer, opID: OpID?, replyTo reply: Reply?,
                                 at now: Millis) -> [Action] {
        switch log.submit(operation, by: issuer, opID: opID, at: now) {
        case .sequenced(let entry):
            if case .connection(let connection)? = reply, let opID { owedAcks[entry.seq, default: []].append((connection, opID)) }
            return []
        case .duplicate(let seq, let committed):
            guard let reply, let opID else { return [] }
            switch reply {
            case .connection(let connection):
                if committed {
                    let epoch = log.tail.first { $0.seq == seq }?.epoch ?? log.epoch
                    return [.send(connection, .ack(id: opID, epoch: epoch, seq: seq))]
                }
                owedAcks[seq, default: []].append((connection, opID))
                return []
            case .copy(let copy, let participant):
                // Not committed yet: its entry reaches the copy in the stream, with its id.
                guard committed else { return [] }
                let epoch = log.tail.first { $0.seq == seq }?.epoch ?? log.epoch
                return [.notify(copy, .acked(participant: participant, id: opID, epoch: epoch, seq: seq))]
            }
        case .rejected(let rejection):
            switch (reply, opID) {
            case (.connection(let connection)?, let opID?):
                return [.send(connection, .reject(id: opID, rejection))]
            case (.copy(let copy, let participant)?, let opID?):
                return [.notify(copy, .rejected(participant: participant, id: opID, rejection))]
            default:
                return [.log(.init(.debug, "system operation refused", ["op": "\(operation.kind)", "reason": "\(rejection)"]))]
            }
        }
    }

    /// A signal, to everyone here and on every copy but where it came from.
    private func relay(_ signal: Signal, from participant: ParticipantID, except connection: Connection?,
                       exceptCopy: CopyID?) -> [Action] {
        var copies: [CopyID] = []
        for (_, held) in remote.sorted(by: { $0.key < $1.key }) {
            for copy in held where copy != exceptCopy && !copies.contains(copy) { copies.append(copy) }
        }
        return [.relay(signal, from: participant, to: attached.connections.filter { $0 != connection })]
            + copies.map { .notify($0, .signal(from: participant, signal)) }
    }

    // MARK: Participants on copies elsewhere

    /// A copy on another server passed up what one of its participants did.
    public mutating func copyRequest(_ copy: CopyID, _ request: CopyRequest, at now: Millis) -> [Action] {
        guard !stopped else { return [] }
        switch request {
        case .arrive(let participant, let name, let role):
            let joiner = Joiner(participant: participant, name: name, role: role)
            let arrival = log.arrival(of: joiner)
            if let arrival, let refusal = log.refusal(of: arrival, at: now) {
                return [.notify(copy, .refused(participant: participant, refusal))]
            }
            var actions = attached.connections(of: participant).map { old in
                attached.detach(old)
                return Action.fail(old, .replaced(participant))
            }
            actions += replaceRemote(participant, keeping: copy)
            if let arrival { actions += submit(arrival, by: .system, opID: nil, replyTo: nil, at: now) }
            return actions
        case .op(let participant, let id, let operation):
            // The copy vouches for its participant; the meeting's rules decide the rest, as
            // for an op from a connection here (a participant that left is refused).
            if isPoison(participant, id) {
                return [
                    .log(.init(.error, "poison op refused", ["participant": "\(participant)", "op": "\(id)"])),
                    .notify(copy, .rejected(participant: participant, id: id, Rejection(.poisonOp, "this op crashed the servers that applied it; it is refused and recorded"))),
                ]
            }
            return submit(operation, by: .participant(participant), opID: id, replyTo: .copy(copy, participant), at: now)
        case .signal(let participant, let signal):
            do throws(Rejection) {
                try log.meeting.checkSignal(signal, from: participant)
            } catch {
                return []  // the copy checked it against a state this one has moved on from
            }
            return relay(signal, from: participant, except: nil, exceptCopy: copy)
        case .depart(let participant, let leaving):
            let wasHere = remote[participant]?.contains(copy) == true
            remote[participant]?.removeAll { $0 == copy }
            if remote[participant]?.isEmpty == true { remote[participant] = nil }
            if leaving { return submit(.leave(participant: participant), by: .system, opID: nil, replyTo: nil, at: now) }
            return wasHere ? markReconnectingIfGone(participant, at: now) : []
        }
    }

    /// The link to a copy is gone: its participants are `reconnecting` unless they are
    /// attached elsewhere. The copy says again who is attached to it when it is back.
    public mutating func copyGone(_ copy: CopyID, at now: Millis) -> [Action] {
        guard !stopped else { return [] }
        var actions: [Action] = []
        for participant in remote.keys.sorted() where remote[participant]?.contains(copy) == true {
            remote[participant]?.removeAll { $0 == copy }
            if remote[participant]?.isEmpty == true { remote[participant] = nil }
            actions += markReconnectingIfGone(participant, at: now)
        }
        return actions
    }

    // MARK: Commit and fan-out

    /// Commits what is sequenced, unless a commit is in flight (then it goes in the next).
    public mutating func flush() -> [Action] {
        guard !stopped else { return [] }
        return commitIfIdle()
    }

    private mutating func commitIfIdle() -> [Action] {
        guard committing == nil, log.hasUncommitted else { return [] }
        let pending = Array(log.tail.suffix(Int(log.lastSeq - log.committedSeq)))
        committing = log.lastSeq
        return [.commit(pending)]
    }

    /// The commit in flight is stored: deliver it, answer its ops, welcome who waited.
    public mutating func committed(at now: Millis) -> [Action] {
        guard !stopped, let through = committing else { return [] }
        committing = nil
        let delivered = log.committed(through: through)
        var actions: [Action] = []
        for entry in delivered {
            switch entry.operation {
            case .join(let participant, let name, _):
                actions.append(.attendance(Attendance(meeting: log.meeting.id, participant: participant, name: name,
                                                      event: .joined, server: "", at: entry.at)))
            case .leave(let participant):
                actions.append(.attendance(Attendance(meeting: log.meeting.id, participant: participant,
                                                      name: log.meeting.participant(participant)?.name ?? "",
                                                      event: .left, server: "", at: entry.at)))
            default:
                break
            }
        }
        actions.append(.replicate(Array(delivered)))
        var acks: [Seq: [(Connection, OpID)]] = [:]
        for entry in delivered {
            if let owed = owedAcks.removeValue(forKey: entry.seq) { acks[entry.seq] = owed }
        }
        actions.append(.deliver(delivered, to: attached.entries, acks: acks))
        if log.meeting.ended {
            actions.append(.log(.init(.info, "meeting ended; closing its connections", [:])))
            actions += failAll(ProtocolError(.meetingEnded, "the meeting has ended", fatal: true))
        }
        if shuttingDown {
            return actions + shutdown()
        }
        return actions + welcomeIfCommitted(at: now)
    }

    /// Another server took the meeting over (this one was presumed dead or paused). Nothing
    /// in the commit was acknowledged; the clients resume on the new host.
    public mutating func fenced(current: Epoch) -> [Action] {
        guard !stopped else { return [] }
        let dropped = Int(log.lastSeq - log.committedSeq)
        return [.log(.init(.warning, "fenced: another server hosts this meeting now; releasing it", [
            "epoch": "\(log.epoch)", "current": "\(current)", "dropped_uncommitted": "\(dropped)",
        ]))] + stop(failing: ProtocolError(.moved, "meeting \(log.meeting.id) moved to another server (\(current)); ask the locator again", fatal: true))
    }

    /// The store refused the commit.
    public mutating func commitFailed(_ error: String) -> [Action] {
        guard !stopped else { return [] }
        let first = log.committedSeq + 1
        // Fatal, so the connection closes: the clients reconnect at once and resume from
        // what the store holds. Left open, they would wait out their op answer timeout.
        return [.log(.init(.error, "commit failed; closing the meeting's connections so clients resume from the store",
                           ["error": error, "first_seq": "\(first)"]))]
            + stop(failing: ProtocolError(.internalError, "the server could not store the meeting; reconnect to resume", fatal: true))
    }

    /// The zone moved the meeting away: stop at once and send every client to the locator.
    /// Whatever is not committed was never acknowledged; the new host has the rest.
    public mutating func release(reason: String) -> [Action] {
        guard !stopped else { return [] }
        return [.log(.init(.info, "meeting released", ["reason": reason, "last_seq": "\(log.committedSeq)"]))]
            + stop(failing: ProtocolError(.moved, "meeting \(log.meeting.id) moved (\(reason)); ask the locator again", fatal: true))
    }

    /// Graceful shutdown: commit what is sequenced, checkpoint, then stop.
    public mutating func shutdown() -> [Action] {
        guard !stopped else { return [] }
        shuttingDown = true
        if committing != nil { return [] }              // `committed` comes back here
        if log.hasUncommitted { return commitIfIdle() }
        var actions: [Action] = []
        if log.committedSeq > lastSnapshotSeq {
            actions.append(.finalCheckpoint(log.snapshot()))
            lastSnapshotSeq = log.committedSeq
        }
        stopped = true
        // Closed without an error: the server is stopping, and the clients resume elsewhere.
        return actions + [.stop(closing: forgetConnections())]
    }

    private mutating func stop(failing error: ProtocolError) -> [Action] {
        let actions = failAll(error)
        stopped = true
        return actions + [.stop(closing: [])]
    }

    /// Every attached or joining connection gets `error`.
    private mutating func failAll(_ error: ProtocolError) -> [Action] {
        forgetConnections().map { .fail($0, error) }
    }

    /// Every attached or joining connection, in order, forgotten.
    private mutating func forgetConnections() -> [Connection] {
        defer {
            awaitingAdmission.removeAll()
            awaitingCommit.removeAll()
            remote.removeAll()
        }
        return attached.removeAll() + awaitingAdmission.keys + awaitingCommit.map(\.0)
    }

    /// Test fault injection only: see ``MeetingLog/corruptStateForTesting(_:)``.
    public mutating func corruptStateForTesting(_ change: (inout Meeting) -> Void) {
        log.corruptStateForTesting(change)
    }

    // MARK: Checkpoints and standbys

    /// A snapshot to write, when enough entries were committed since the last one.
    public func checkpointDue() -> Snapshot? {
        guard !stopped, !log.hasUncommitted,
              checkpointOwed || log.committedSeq - lastSnapshotSeq >= Seq(snapshotEveryEntries) else { return nil }
        return log.snapshot()
    }

    /// The snapshot at `seq` went to the writer (if the writer was busy, it is due again next turn).
    public mutating func checkpointQueued(_ seq: Seq) {
        lastSnapshotSeq = max(lastSnapshotSeq, seq)
        checkpointOwed = false
    }

    /// How a standby that holds everything through `after` catches up.
    public func subscription(after: Seq) -> ReplicaStart {
        let committed = log.tail.prefix { $0.seq <= log.committedSeq }
        if after < log.committedSeq {
            guard let first = committed.first, first.seq <= after + 1 else { return .reload }
            return .entries(Array(committed.drop { $0.seq <= after }))
        }
        // Ahead of what this host committed: it is not our copy. Start over.
        return after > log.committedSeq ? .reload : .entries([])
    }
}

/// How a standby starts following: the committed entries it lacks (then the live stream),
/// or a reload from the store because the host no longer holds them.
public enum ReplicaStart: Equatable, Sendable {
    case entries([LogEntry])
    case reload
}

/// A line for the host's log, decided by the rules and written by the shell.
public struct HostLogLine: Equatable, Sendable {
    public var level: Logger.Level
    public var message: String
    public var metadata: [String: String]

    public init(_ level: Logger.Level, _ message: String, _ metadata: [String: String]) {
        self.level = level
        self.message = message
        self.metadata = metadata
    }
}

/// A dictionary that hands its entries out in the order they were added. The host's
/// fan-out, closes and failures go out in that order: a dictionary's own order differs
/// between instances and processes, and a simulated run must replay exactly.
struct OrderedTable<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private var order: [Key] = []
    private var storage: [Key: Value] = [:]

    subscript(key: Key) -> Value? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { order.append(key) }
            } else {
                removeValue(forKey: key)
            }
        }
    }

    @discardableResult
    mutating func removeValue(forKey key: Key) -> Value? {
        guard let value = storage.removeValue(forKey: key) else { return nil }
        order.removeAll { $0 == key }
        return value
    }

    var count: Int { storage.count }

    mutating func removeAll() {
        order.removeAll()
        storage.removeAll()
    }

    var keys: [Key] { order }
    var values: [Value] { order.map { storage[$0]! } }
    var entries: [(Key, Value)] { order.map { ($0, storage[$0]!) } }
}
