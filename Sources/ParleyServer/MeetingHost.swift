import Logging
import NIOCore
import ParleyCore
import ParleyProtocol
import ParleyStore
import Synchronization

/// What a connection asks of the meeting it is in.
enum HostInput: Sendable {
    case attach(ClientConnection, JoinClaims, ResumePoint?)
    case op(ClientConnection, OpID, MeetingOp)
    case signal(ClientConnection, Signal)
    case detach(ClientConnection)
    case leave(ClientConnection)
    /// Graceful shutdown: commit what is pending, checkpoint, close every connection.
    case shutdown
    /// A standby copy wants every committed entry after `after`, then the live stream.
    case subscribe(ReplicaFeed, after: Seq)
    /// The zone moved the meeting away: stop at once and send every client to the locator.
    case release(reason: String)
    /// The server is stopping: end every standby's stream (they reconnect to the next host).
    case endReplicaFeeds
}

/// What a host streams to one standby copy of its meeting.
public enum ReplicaUpdate: Sendable {
    /// Committed entries, in seq order, continuing what was sent before.
    case entries([LogEntry])
    /// The host no longer holds the entries asked for: reload from the store, then subscribe again.
    case reload
}

/// The committed stream of one meeting to one standby. Bounded: a standby that falls this
/// far behind is cut off (the stream ends) and subscribes again from its last seq.
public final class ReplicaFeed: Sendable {
    public let updates: AsyncStream<ReplicaUpdate>
    private let continuation: AsyncStream<ReplicaUpdate>.Continuation

    public init(limit: Int = 1_024) {
        (updates, continuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingOldest(limit))
    }

    /// False once the feed is cut off or finished.
    func push(_ update: ReplicaUpdate) -> Bool {
        switch continuation.yield(update) {
        case .enqueued: return true
        case .dropped, .terminated:
            continuation.finish()
            return false
        @unknown default: return false
        }
    }

    public func finish() { continuation.finish() }
}

/// The adapter that hosts one meeting: it feeds inputs to the pure ``MeetingLog``, commits
/// what it sequences through the group-commit log, and only then delivers and acknowledges.
///
/// One loop (``run()``) owns all of the meeting's state, so inputs are handled strictly in
/// arrival order and nothing needs a lock. Each turn of the loop takes every queued input,
/// sequences them, commits them in one write, then fans the entries out (each encoded once).
final class MeetingHost: Sendable {
    let id: MeetingID
    /// The epoch this host commits under; fixed for the host's life.
    let epoch: Epoch
    let inbox: Inbox<HostInput>
    private let initialLog: Mutex<MeetingLog?>
    /// Ops refused as poison: they crashed the processes that applied them.
    fileprivate let poisoned: Set<OpOutcomes.Key>
    fileprivate let note: ApplyingNote?
    private let commitLog: GroupCommitLog
    private let store: any Store
    private let configuration: ServerConfiguration
    private let clock: @Sendable () -> Millis
    private let logger: Logger

    init(log: MeetingLog, store: any Store, commitLog: GroupCommitLog, configuration: ServerConfiguration,
         poisoned: Set<OpOutcomes.Key> = [], clock: @escaping @Sendable () -> Millis, logger: Logger) {
        id = log.meeting.id
        self.poisoned = poisoned
        note = configuration.poison.flatMap { ApplyingNote(guard: $0, meeting: log.meeting.id) }
        epoch = log.epoch
        inbox = Inbox(capacity: configuration.meetingQueueDepth)
        initialLog = Mutex(log)
        self.store = store
        self.commitLog = commitLog
        self.configuration = configuration
        self.clock = clock
        var logger = logger
        logger[metadataKey: "meeting"] = "\(log.meeting.id)"
        self.logger = logger
    }

    /// Hands an input to the host; refuses (rather than queueing without bound) when the
    /// meeting is too far behind.
    func submit(_ input: HostInput) -> Inbox<HostInput>.SendResult {
        switch input {
        case .detach, .shutdown, .leave, .release, .subscribe, .endReplicaFeeds:
            // Bookkeeping must never be dropped, or presence would go stale.
            inbox.send(input, force: true)
        default:
            inbox.send(input)
        }
    }

    /// Runs until shutdown or until the store fails; then every connection is closed and
    /// the directory forgets this host, so the next client reloads it from the store.
    func run() async {
        guard let log = initialLog.withLock({ state in defer { state = nil }; return state }) else { return }
        let checkpoints = Inbox<Snapshot>(capacity: 1)
        await withTaskGroup(of: Void.self) { group in
            // Checkpoints are encoded and written beside the loop: a snapshot of a busy
            // meeting takes milliseconds to encode, which held up every delivery behind it.
            group.addTask { await self.writeCheckpoints(from: checkpoints) }
            var loop = HostLoop(log: log, host: self, checkpoints: checkpoints)
            await loop.run()
            checkpoints.finish()
        }
    }

    /// Writes the snapshots the loop hands over (one waits at most).
    private func writeCheckpoints(from checkpoints: Inbox<Snapshot>) async {
        while let waiting = await checkpoints.next() {
            for snapshot in waiting { _ = await writeCheckpoint(snapshot) }
        }
    }

    /// Stores one snapshot; false if that failed. Snapshots are kept by seq, so one written
    /// after a newer one changes nothing about which is used.
    fileprivate func writeCheckpoint(_ snapshot: Snapshot) async -> Bool {
        do {
            try await store.writeSnapshot(id, snapshot)
            logger.debug("checkpoint written", metadata: ["seq": "\(snapshot.seq)"])
            return true
        } catch {
            // The log still has everything; a missed checkpoint only makes recovery longer.
            logger.warning("checkpoint failed", metadata: ["error": "\(error)"])
            return false
        }
    }

    fileprivate var encoder: FrameEncoder { FrameEncoder() }
    fileprivate var loggerRef: Logger { logger }
    fileprivate var now: Millis { clock() }
    fileprivate var config: ServerConfiguration { configuration }
    fileprivate var commits: GroupCommitLog { commitLog }
}

/// The loop's private state. A struct with mutating methods keeps the bookkeeping in one
/// place without sharing it with anyone.
private struct HostLoop {
    struct Attachment {
        let connection: ClientConnection
        let participant: ParticipantID
    }

    var log: MeetingLog
    let host: MeetingHost
    var attached: [UInt64: Attachment] = [:]
    /// Acks owed once the entry at that seq is committed: (connection, op id).
    var owedAcks: [Seq: [(ClientConnection, OpID)]] = [:]
    var lastSnapshotSeq: Seq
    /// Where due checkpoints go to be written without holding up the loop.
    let checkpoints: Inbox<Snapshot>
    var running = true
    /// Connections dropped as slow consumers during fan-out, handled as detached afterwards.
    var dropped: [ClientConnection] = []
    /// Standby copies following the committed stream.
    var replicas: [ReplicaFeed] = []

    init(log: MeetingLog, host: MeetingHost, checkpoints: Inbox<Snapshot>) {
        self.log = log
        self.host = host
        self.checkpoints = checkpoints
        lastSnapshotSeq = log.committedSeq
    }

    mutating func run() async {
        while running, let batch = await host.inbox.next() {
            for input in batch {
                await handle(input)
                if !running { break }
            }
            // Fan-out can drop slow consumers, which sequences presence changes: commit those too.
            while running, log.hasUncommitted { await flush() }
            if running { checkpointIfDue() }
        }
        host.inbox.finish()
        for attachment in attached.values { attachment.connection.outbox.close() }
        attached.removeAll()
        for feed in replicas { feed.finish() }
        replicas.removeAll()
    }

    // MARK: Inputs

    mutating func handle(_ input: HostInput) async {
        switch input {
        case .attach(let connection, let claims, let resume):
            await attach(connection, claims, resume)
        case .op(let connection, let opID, let operation):
            guard let attachment = attached[connection.id] else {
                connection.send(.error(ProtocolError(.notJoined, "send hello and wait for welcome first")), host.encoder)
                return
            }
            submit(operation, by: .participant(attachment.participant), opID: opID, replyTo: connection)
        case .signal(let connection, let signal):
            guard let attachment = attached[connection.id] else {
                connection.send(.error(ProtocolError(.notJoined, "send hello and wait for welcome first")), host.encoder)
                return
            }
            do throws(Rejection) {
                try log.meeting.checkSignal(signal, from: attachment.participant)
            } catch {
                connection.send(.error(ProtocolError(.signalRefused, error.message)), host.encoder)
                return
            }
            let frame = ByteBuffer(bytes: host.encoder.encode(.signal(from: attachment.participant, signal)))
            for other in attached.values where other.connection.id != connection.id {
                enqueue(frame, to: other.connection)
            }
        case .detach(let connection):
            detach(connection)
        case .leave(let connection):
            guard let attachment = attached.removeValue(forKey: connection.id) else { return }
            submit(.leave(participant: attachment.participant), by: .system, opID: nil, replyTo: nil)
            connection.outbox.close()
        case .shutdown:
            await flush()
            await checkpoint()
            running = false
        case .subscribe(let feed, let after):
            subscribe(feed, after: after)
        case .endReplicaFeeds:
            for feed in replicas { feed.finish() }
            replicas.removeAll()
        case .release(let reason):
            // Whatever is not committed was never acknowledged; the new host has the rest.
            host.loggerRef.info("meeting released", metadata: ["reason": "\(reason)", "last_seq": "\(log.committedSeq)"])
            moveClients("meeting \(log.meeting.id) moved (\(reason)); ask the locator again")
            running = false
        }
    }

    /// Sends every client to the locator with a `moved` error.
    mutating func moveClients(_ message: String) {
        for attachment in attached.values {
            attachment.connection.fail(ProtocolError(.moved, message, fatal: true), host.encoder)
        }
        attached.removeAll()
    }

    /// A standby gets the committed entries after `after` from the tail, then the live stream.
    mutating func subscribe(_ feed: ReplicaFeed, after: Seq) {
        let committed = log.tail.prefix { $0.seq <= log.committedSeq }
        if after < log.committedSeq {
            guard let first = committed.first, first.seq <= after + 1 else {
                _ = feed.push(.reload)
                feed.finish()
                return
            }
            guard feed.push(.entries(Array(committed.drop { $0.seq <= after }))) else { return }
        } else if after > log.committedSeq {
            // The standby holds more than this host committed: it is not our copy. Start over.
            _ = feed.push(.reload)
            feed.finish()
            return
        }
        replicas.append(feed)
    }

    /// A connection is gone. Its participant is `reconnecting` until it comes back or leaves.
    mutating func detach(_ connection: ClientConnection) {
        guard let attachment = attached.removeValue(forKey: connection.id) else { return }
        let stillConnected = attached.values.contains { $0.participant == attachment.participant }
        if !stillConnected, log.meeting.participant(attachment.participant)?.presence == .connected {
            submit(.presence(participant: attachment.participant, presence: .reconnecting), by: .system, opID: nil, replyTo: nil)
        }
    }

    mutating func attach(_ connection: ClientConnection, _ claims: JoinClaims, _ resume: ResumePoint?) async {
        if let resume, resume.meeting != log.meeting.id {
            connection.fail(ProtocolError(.meetingMismatch, "resume point is for meeting \(resume.meeting), this token is for \(log.meeting.id)", fatal: true), host.encoder)
            return
        }
        // An ended meeting takes nobody back, not even a participant it still lists as connected.
        if log.meeting.ended {
            connection.fail(ProtocolError(.meetingEnded, "meeting \(log.meeting.id) has ended", fatal: true), host.encoder)
            return
        }
        // A participant resumes from a seq that this meeting committed, or not at all.
        if let resume, resume.seq > log.committedSeq {
            connection.fail(ProtocolError(.seqFromFuture, "seq \(resume.seq) is ahead of this meeting's last committed seq \(log.committedSeq)", fatal: true), host.encoder)
            return
        }
        let participant = claims.participant
        let arrival: MeetingOp?
        switch log.meeting.participant(participant)?.presence {
        // The token's role, not the one the participant ends up with (``Meeting/roleOnJoining(_:)``):
        // a host token is admitted into a locked or full meeting even when it joins as attendee.
        case nil, .left?: arrival = .join(participant: participant, name: claims.name, role: claims.role)
        case .reconnecting?: arrival = .presence(participant: participant, presence: .connected)
        case .connected?: arrival = nil
        }
        if let arrival {
            // Dry run first, so a refused join never sees a welcome.
            var probe = log.meeting
            do throws(Rejection) {
                try probe.apply(arrival, by: .system, at: host.now, seq: log.lastSeq + 1)
            } catch {
                let code: ProtocolErrorCode = error.code == .meetingEnded ? .meetingEnded : .joinRefused
                connection.fail(ProtocolError(code, error.message, fatal: true, reason: error.code.rawValue), host.encoder)
                return
            }
            // The zone's participant limit spans every server: the license service decides.
            if case .join = arrival, let admission = host.config.admission,
               case .refuse(let why) = await admission(log.meeting.id, participant) {
                host.loggerRef.notice("join refused by the license service", metadata: ["participant": "\(participant)", "reason": "\(why)"])
                connection.fail(ProtocolError(.joinRefused, why, fatal: true, reason: "zone_full"), host.encoder)
                return
            }
        }
        // Snapshots describe committed state only.
        if log.hasUncommitted { await flush() }
        guard running else { return }
        let welcome: Welcome
        var replay: ArraySlice<LogEntry> = []
        switch log.resume(after: resume?.seq) {
        case .replay(let entries):
            welcome = Welcome(meeting: log.meeting.id, participant: participant, epoch: log.epoch, mode: .replay,
                              seq: resume?.seq ?? 0, state: nil, limits: host.config.limits)
            replay = entries[...]
        case .snapshot(let snapshot):
            welcome = Welcome(meeting: log.meeting.id, participant: participant, epoch: log.epoch, mode: .snapshot,
                              seq: snapshot.seq, state: snapshot.meeting.visible(to: participant), limits: host.config.limits)
        case .fromFuture(let latest):
            connection.fail(ProtocolError(.seqFromFuture, "ahead of the last committed seq \(latest)", fatal: true), host.encoder)
            return
        }
        // A newer connection of the same participant replaces the old one.
        for (key, old) in attached where old.participant == participant {
            attached[key] = nil
            old.connection.fail(ProtocolError(.replaced, "another connection of \(participant) joined; this one is closed",
                                              fatal: true), host.encoder)
        }
        // Attached before the welcome goes out: a client may send an op the moment it reads
        // the welcome, and the gateway must route it here rather than answer not_joined.
        attached[connection.id] = Attachment(connection: connection, participant: participant)
        connection.markAttached(participant: participant)
        // The welcome and the replay are a backlog the client reads at its own pace; only
        // what is committed from now on is queued (and counted) behind it.
        let welcomeFrame = ByteBuffer(bytes: host.encoder.encode(.welcome(welcome)))
        connection.outbox.startBacklog(Backlog(lead: welcomeFrame, entries: replay, viewer: participant))
        host.loggerRef.info("participant attached", metadata: [
            "participant": "\(participant)", "mode": "\(welcome.mode.rawValue)", "from_seq": "\(welcome.seq)",
            "connection": "\(connection.id)",
        ])
        if let arrival {
            submit(arrival, by: .system, opID: nil, replyTo: nil)
        }
    }

    mutating func submit(_ operation: MeetingOp, by issuer: Issuer, opID: OpID?, replyTo connection: ClientConnection?) {
        var noted = false
        if case .participant(let participant) = issuer, let opID {
            if host.poisoned.contains(OpOutcomes.Key(participant: participant, opID: opID)) {
                host.loggerRef.error("poison op refused", metadata: ["participant": "\(participant)", "op": "\(opID)"])
                connection?.send(.reject(id: opID, Rejection(.poisonOp, "this op crashed the servers that applied it; it is refused and recorded")), host.encoder)
                return
            }
            host.note?.applying(participant, opID)
            noted = true
            if let trigger = host.config.crashOnChatText, case .chat(let text) = operation, text == trigger {
                fatalError("test fault injection: testFaults.crashOnChatText matched op \(opID)")
            }
        }
        defer { if noted { host.note?.idle() } }
        switch log.submit(operation, by: issuer, opID: opID, at: host.now) {
        case .sequenced(let entry):
            if let connection, let opID { owedAcks[entry.seq, default: []].append((connection, opID)) }
        case .duplicate(let seq, let committed):
            guard let connection, let opID else { return }
            if committed {
                let epoch = log.tail.first { $0.seq == seq }?.epoch ?? log.epoch
                connection.send(.ack(id: opID, epoch: epoch, seq: seq), host.encoder)
            } else {
                owedAcks[seq, default: []].append((connection, opID))
            }
        case .rejected(let rejection):
            if let connection, let opID {
                connection.send(.reject(id: opID, rejection), host.encoder)
            } else {
                host.loggerRef.debug("system operation refused", metadata: ["op": "\(operation.kind)", "reason": "\(rejection)"])
            }
        }
    }

    // MARK: Commit and fan-out

    /// Commits everything sequenced so far, then delivers it in seq order and sends the acks.
    mutating func flush() async {
        guard log.hasUncommitted else { return }
        let pending = Array(log.tail.suffix(Int(log.lastSeq - log.committedSeq)))
        do {
            try await host.commits.commit(log.meeting.id, pending)
        } catch .fenced(_, let epoch, let current) {
            // Another server took the meeting over (this one was presumed dead or paused).
            // Nothing here was acknowledged; the clients resume on the new host.
            host.loggerRef.warning("fenced: another server hosts this meeting now; releasing it", metadata: [
                "epoch": "\(epoch)", "current": "\(current)", "dropped_uncommitted": "\(pending.count)",
            ])
            moveClients("meeting \(log.meeting.id) moved to another server (\(current)); ask the locator again")
            running = false
            return
        } catch {
            host.loggerRef.error("commit failed; closing the meeting's connections so clients resume from the store",
                                 metadata: ["error": "\(error)", "first_seq": "\(pending.first?.seq ?? 0)"])
            // Fatal, so the connection closes: the clients reconnect at once and resume from
            // what the store holds. Left open, they would wait out their op answer timeout.
            let frame = ProtocolError(.internalError, "the server could not store the meeting; reconnect to resume", fatal: true)
            for attachment in attached.values { attachment.connection.fail(frame, host.encoder) }
            attached.removeAll()
            running = false
            return
        }
        let delivered = log.committed(through: log.lastSeq)
        if let attendance = host.config.attendance {
            for entry in delivered {
                switch entry.operation {
                case .join(let participant, let name, _):
                    attendance(Attendance(meeting: log.meeting.id, participant: participant, name: name, event: .joined,
                                          server: "", at: entry.at))
                case .leave(let participant):
                    attendance(Attendance(meeting: log.meeting.id, participant: participant,
                                          name: log.meeting.participant(participant)?.name ?? "", event: .left,
                                          server: "", at: entry.at))
                default:
                    break
                }
            }
        }
        if !replicas.isEmpty {
            let update = ReplicaUpdate.entries(Array(delivered))
            replicas.removeAll { !$0.push(update) }
        }
        for entry in delivered {
            let whole = ByteBuffer(bytes: host.encoder.encode(.event(.visible(entry))))
            let redacted: ByteBuffer? = entry.operation.privateRecipient == nil ? nil
                : ByteBuffer(bytes: host.encoder.encode(.event(.redacted(seq: entry.seq, epoch: entry.epoch, at: entry.at))))
            for attachment in attached.values {
                enqueue(redacted == nil || entry.isVisible(to: attachment.participant) ? whole : redacted!, to: attachment.connection)
            }
            if let acks = owedAcks.removeValue(forKey: entry.seq) {
                for (connection, opID) in acks {
                    connection.send(.ack(id: opID, epoch: entry.epoch, seq: entry.seq), host.encoder)
                }
            }
        }
        let slow = dropped
        dropped.removeAll()
        for connection in slow { detach(connection) }
        if log.meeting.ended {
            host.loggerRef.info("meeting ended; closing its connections")
            for attachment in attached.values {
                attachment.connection.fail(ProtocolError(.meetingEnded, "the meeting has ended", fatal: true), host.encoder)
            }
            attached.removeAll()
        }
    }

    /// Hands a snapshot to the checkpoint writer when enough entries were committed since the
    /// last one. If one is still waiting for the writer, this is tried again next turn.
    mutating func checkpointIfDue() {
        guard !log.hasUncommitted, log.committedSeq - lastSnapshotSeq >= Seq(host.config.snapshotEveryEntries) else { return }
        if case .queued = checkpoints.send(log.snapshot()) { lastSnapshotSeq = log.committedSeq }
    }

    mutating func checkpoint() async {
        guard !log.hasUncommitted, log.committedSeq > lastSnapshotSeq else { return }
        if await host.writeCheckpoint(log.snapshot()) { lastSnapshotSeq = log.committedSeq }
    }

    /// A client that cannot keep up is dropped, not allowed to grow memory.
    mutating func enqueue(_ frame: ByteBuffer, to connection: ClientConnection) {
        if !connection.outbox.enqueue(frame), attached[connection.id] != nil, !dropped.contains(where: { $0 === connection }) {
            host.loggerRef.notice("slow consumer disconnected", metadata: ["connection": "\(connection.id)"])
            dropped.append(connection)
        }
    }
}
