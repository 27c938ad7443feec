import Logging
import NIOCore
import ParleyCore
import ParleyProtocol
import ParleyStore
import Synchronization
import ParleyTelemetry
import Tracing

/// What a connection asks of the meeting it is in.
enum HostInput: Sendable {
    case attach(ClientConnection, JoinClaims, ResumePoint?)
    /// With its `parley.op` span when tracing is on, started when the frame arrived.
    case op(ClientConnection, OpID, MeetingOp, (any Span)?)
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
    /// The license service answered for a joining connection.
    case admission(ClientConnection, Admission)
    /// A copy following the meeting (over `feed`) passed up what one of its participants did.
    case copyRequest(ReplicaFeed, CopyRequest)
    /// The copy following over `feed` is gone (its link closed).
    case copyGone(ReplicaFeed)
}

/// What a host streams to one standby copy of its meeting.
public enum ReplicaUpdate: Sendable {
    /// Committed entries, in seq order, continuing what was sent before.
    case entries([LogEntry])
    /// The host no longer holds the entries asked for: reload from the store, then subscribe again.
    case reload
    /// About the participants attached to the copy.
    case notice(CopyNotice)
    /// The host's state digest at checkpoint `seq`, right after the entries through `seq`:
    /// the copy votes with its own (``DigestVerdict``).
    case digest(seq: Seq, MeetingDigest)
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

    /// Whether the host checkpoints as soon as it can (see ``MeetingHostState``).
    private let checkpointAtOnce: Bool
    /// What the operator's zone page shows, as of the loop's last batch (only the loop writes).
    private let participantCount = Atomic<Int>(0)
    private let lastSeq = Atomic<UInt64>(0)

    /// Participants connected (here or to copies) and the last sequenced entry.
    var observed: (participants: Int, seq: Seq) {
        (participantCount.load(ordering: .relaxed), lastSeq.load(ordering: .relaxed))
    }

    /// The promotion span that ends at this host's first ack (see ``MeetingDirectory/promote(_:span:)``).
    private let promotionSpan = Mutex<(any Span)?>(nil)
    private let awaitingFirstAck = Atomic<Bool>(false)

    func endAtFirstAck(_ span: any Span) {
        promotionSpan.withLock { $0 = span }
        awaitingFirstAck.store(true, ordering: .releasing)
    }

    /// Whether a promotion span waits for this host's first ack (cheap: read per delivery).
    fileprivate var isAwaitingFirstAck: Bool { awaitingFirstAck.load(ordering: .acquiring) }

    /// The promotion span, once: the loop ends it at the first ack, or when it stops.
    private func takePromotionSpan() -> (any Span)? {
        awaitingFirstAck.store(false, ordering: .relaxed)
        return promotionSpan.withLock { state in defer { state = nil }; return state }
    }

    /// The host stopped (released, fenced, shut down) before acknowledging anything: its
    /// promotion span ends so, rather than never.
    fileprivate func stoppedBeforeFirstAck() {
        guard let span = takePromotionSpan() else { return }
        span.setStatus(SpanStatus(code: .error, message: "the host stopped before its first ack"))
        span.end()
    }

    /// Called by the loop when it acknowledges `count` ops while ``isAwaitingFirstAck``.
    fileprivate func acknowledged(_ count: Int) {
        guard count > 0, let span = takePromotionSpan() else { return }
        span.addEvent(SpanEvent(name: "first ack", attributes: ["parley.acks": .int(Int64(count))]))
        span.end()
    }

    fileprivate func observed(participants: Int, seq: Seq) {
        participantCount.store(participants, ordering: .relaxed)
        lastSeq.store(seq, ordering: .relaxed)
    }

    init(log: MeetingLog, store: any Store, commitLog: GroupCommitLog, configuration: ServerConfiguration,
         poisoned: Set<OpOutcomes.Key> = [], checkpointAtOnce: Bool = false, clock: @escaping @Sendable () -> Millis, logger: Logger) {
        self.checkpointAtOnce = checkpointAtOnce
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
        case .detach, .shutdown, .leave, .release, .subscribe, .endReplicaFeeds, .admission, .copyGone, .copyRequest:
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
        let (admissions, askAdmission) = AsyncStream<(ClientConnection, ParticipantID)>.makeStream()
        await withTaskGroup(of: Void.self) { group in
            // Checkpoints are encoded and written beside the loop: a snapshot of a busy
            // meeting takes milliseconds to encode, which held up every delivery behind it.
            group.addTask { await self.writeCheckpoints(from: checkpoints) }
            // Joins wait for the license service beside the loop too: a service that hangs
            // delays those joins, not the meeting.
            if let admission = configuration.admission {
                group.addTask {
                    await withDiscardingTaskGroup { asks in
                        for await (connection, participant) in admissions {
                            asks.addTask {
                                let decision = await admission(self.id, participant)
                                _ = self.submit(.admission(connection, decision))
                            }
                        }
                    }
                }
            }
            let state = MeetingHostState<ClientConnection>(
                log: log, limits: configuration.limits, poisoned: poisoned, asksAdmission: configuration.admission != nil,
                snapshotEveryEntries: configuration.snapshotEveryEntries, checkpointAtOnce: checkpointAtOnce)
            var loop = HostLoop(state: state, host: self, checkpoints: checkpoints, askAdmission: askAdmission)
            await loop.run()
            checkpoints.finish()
            askAdmission.finish()
            // Answers still on their way are for a host that is gone.
            group.cancelAll()
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

/// The shell around ``MeetingHostState``: it feeds the state the inbox's inputs with the
/// time, and carries out its actions (sockets, the store, standby feeds, the log).
private struct HostLoop {
    typealias State = MeetingHostState<ClientConnection>

    var state: State
    let host: MeetingHost
    /// Where due checkpoints go to be written without holding up the loop.
    let checkpoints: Inbox<Snapshot>
    let askAdmission: AsyncStream<(ClientConnection, ParticipantID)>.Continuation
    /// Copies (standbys and edges) following the committed stream.
    var replicas: [ReplicaFeed] = []
    /// How the rules name each copy that follows, by its feed.
    var copies: [ObjectIdentifier: CopyID] = [:]
    var copyFeeds: [CopyID: ReplicaFeed] = [:]
    var lastCopy: UInt64 = 0
    /// The spans of this batch's ops, ended once it is committed and fanned out.
    var opSpans = OpSpans()

    mutating func run() async {
        while !state.stopped, let batch = await host.inbox.next() {
            for (index, input) in batch.enumerated() {
                await handle(input)
                if case .op(_, _, _, let span?) = input { opSpans.applied(span) }
                if state.stopped {
                    OpSpans.abandon(batch[(index + 1)...], because: "host stopped")
                    break
                }
            }
            // One commit for the whole batch. Fan-out can drop slow consumers, which
            // sequences presence changes: those are committed too.
            while !state.stopped, state.hasUncommitted {
                let actions = state.flush()
                if actions.isEmpty { break }
                await perform(actions)
            }
            opSpans.endBatch()
            host.observed(participants: state.connectedParticipants, seq: state.log.lastSeq)
            if !state.stopped, let snapshot = state.checkpointDue(), case .queued = checkpoints.send(snapshot) {
                state.checkpointQueued(snapshot.seq)
                // On the loop, so that it goes out between the entries through its seq and
                // the next: each copy compares it with its state at exactly that seq.
                if !replicas.isEmpty {
                    let update = ReplicaUpdate.digest(seq: snapshot.seq, MeetingDigest(of: snapshot.meeting))
                    replicas.removeAll { !$0.push(update) }
                }
            }
        }
        opSpans.endBatch()
        host.inbox.finish()
        // What was queued but never read: its ops' traces end here.
        while let left = await host.inbox.next() { OpSpans.abandon(left[...], because: "host stopped") }
        host.stoppedBeforeFirstAck()
        for feed in replicas { feed.finish() }
        replicas.removeAll()
        copyFeeds.removeAll()
    }

    mutating func handle(_ input: HostInput) async {
        let now = host.now
        switch input {
        case .attach(let connection, let claims, let resume):
            let joiner = State.Joiner(participant: claims.participant, name: claims.name, role: claims.role)
            await perform(state.attach(connection, joiner, resume: resume, at: now))
        case .admission(let connection, let decision):
            await perform(state.admission(connection, decision, at: now))
        case .op(let connection, let opID, let operation, _):
            guard let participant = state.participant(of: connection) else {
                await perform(state.op(connection, opID, operation, at: now))
                return
            }
            await perform(applying(operation, opID: opID, by: participant, at: now) { $0.op(connection, opID, operation, at: now) })
        case .signal(let connection, let signal):
            await perform(state.signal(connection, signal))
        case .detach(let connection):
            await perform(state.detach(connection, at: now))
        case .leave(let connection):
            await perform(state.leave(connection, at: now))
        case .shutdown:
            await perform(state.shutdown())
        case .subscribe(let feed, let after):
            switch state.subscription(after: after) {
            case .reload:
                _ = feed.push(.reload)
                feed.finish()
            case .entries(let entries):
                if entries.isEmpty || feed.push(.entries(entries)) {
                    replicas.append(feed)
                    lastCopy += 1
                    copies[ObjectIdentifier(feed)] = CopyID(lastCopy)
                    copyFeeds[CopyID(lastCopy)] = feed
                }
            }
        case .copyRequest(let feed, let request):
            guard let copy = copies[ObjectIdentifier(feed)] else { return }
            if case .op(let participant, let id, let operation) = request {
                await perform(applying(operation, opID: id, by: participant, at: now) { $0.copyRequest(copy, request, at: now) })
            } else {
                await perform(state.copyRequest(copy, request, at: now))
            }
        case .copyGone(let feed):
            guard let copy = copies.removeValue(forKey: ObjectIdentifier(feed)) else { return }
            copyFeeds[copy] = nil
            await perform(state.copyGone(copy, at: now))
        case .endReplicaFeeds:
            for feed in replicas { feed.finish() }
            replicas.removeAll()
        case .release(let reason):
            await perform(state.release(reason: reason))
        }
    }

    /// An op, applied with the process's applying note around it: a process that dies here
    /// leaves the note behind, and an op that keeps killing hosts is refused as poison.
    /// Wherever the op came from (a connection here, or a copy elsewhere).
    private mutating func applying(_ operation: MeetingOp, opID: OpID, by participant: ParticipantID, at now: Millis,
                                   _ apply: (inout State) -> [State.Action]) -> [State.Action] {
        // A refused poison op is not applied: no note, and no test crash.
        guard !state.isPoison(participant, opID) else { return apply(&state) }
        host.note?.applying(participant, opID)
        defer { host.note?.idle() }
        if let trigger = host.config.crashOnChatText, case .chat(let text) = operation, text == trigger {
            fatalError("test fault injection: testFaults.crashOnChatText matched op \(opID)")
        }
        return apply(&state)
    }

    mutating func perform(_ actions: [State.Action]) async {
        let encoder = host.encoder
        let fanOut = ClientFanOut(encoder: encoder, logger: host.loggerRef, metrics: host.config.metrics)
        for action in actions {
            switch action {
            case .send(let connection, let frame):
                connection.send(frame, encoder)
            case .fail(let connection, let error):
                connection.fail(error, encoder)
            case .welcome(let connection, let participant, let welcome, let replay):
                fanOut.welcome(connection, participant, welcome, replay: replay)
            case .close(let connection):
                connection.outbox.close()
            case .askAdmission(let connection, let participant):
                askAdmission.yield((connection, participant))
            case .commit(let entries):
                let metrics = host.config.metrics
                let started = ContinuousClock.now
                let commitSpan = opSpans.startCommit(entries, meeting: state.meeting, tracing: host.config.tracing)
                defer { commitSpan?.end() }
                do {
                    try await host.commits.commit(state.meeting, entries)
                    metrics.commitDuration.record(duration: ContinuousClock.now - started)
                    metrics.opsCommitted.increment(by: Int64(entries.count))
                    opSpans.committed()
                } catch .fenced(_, _, let current) {
                    metrics.fencedCommits.increment()
                    opSpans.commitFailed(commitSpan, "fenced by epoch \(current)")
                    await perform(state.fenced(current: current))
                    continue
                } catch {
                    opSpans.commitFailed(commitSpan, "\(error)")
                    await perform(state.commitFailed("\(error)"))
                    continue
                }
                await perform(state.committed(at: host.now))
                if let change = TestCorruption.change(host.config.corruptChatText, in: entries, logger: host.loggerRef) {
                    state.corruptStateForTesting(change)
                }
            case .deliver(let entries, let recipients, let acks):
                let slow = fanOut.deliver(entries, to: recipients, acks: acks)
                opSpans.delivered(to: recipients.count)
                if !acks.isEmpty, host.isAwaitingFirstAck { host.acknowledged(acks.values.reduce(0) { $0 + $1.count }) }
                for connection in slow { await perform(state.detach(connection, at: host.now)) }
            case .relay(let signal, let from, let recipients):
                let slow = fanOut.relay(signal, from: from, to: recipients)
                for connection in slow { await perform(state.detach(connection, at: host.now)) }
            case .attendance(let record):
                host.config.attendance?(record)
            case .replicate(let entries):
                if !replicas.isEmpty {
                    let update = ReplicaUpdate.entries(entries)
                    replicas.removeAll { !$0.push(update) }
                }
            case .notify(let copy, let notice):
                if let feed = copyFeeds[copy], !feed.push(.notice(notice)) {
                    // Cut off: the copy follows again, and says again who is attached to it.
                    copyFeeds[copy] = nil
                    replicas.removeAll { $0 === feed }
                }
            case .finalCheckpoint(let snapshot):
                _ = await host.writeCheckpoint(snapshot)
            case .log(let line):
                host.loggerRef.log(level: line.level, "\(line.message)", metadata: line.metadata.mapValues { .string($0) })
            case .stop(let closing):
                for connection in closing { connection.outbox.close() }
            }
        }
    }
}

/// A connection is the same connection only as the same object.
extension ClientConnection: Hashable {
    static func == (lhs: ClientConnection, rhs: ClientConnection) -> Bool { lhs === rhs }
    func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
}

/// The `parley.op` spans of the ops in one batch of a host's loop: each gets an event when it
/// is applied, when the batch is committed (the `parley.commit` span, which links to them)
/// and when its entries are fanned out, and ends with the batch.
struct OpSpans {
    private var spans: [any Span] = []
    private var committedYet = false
    private var deliveredYet = false

    mutating func applied(_ span: any Span) {
        span.addEvent("applied")
        spans.append(span)
    }

    func startCommit(_ entries: [LogEntry], meeting: MeetingID, tracing: ProcessTracing) -> (any Span)? {
        guard tracing.isOn else { return nil }
        let span = tracing.tracer.startSpan("parley.commit", ofKind: .internal)
        span.attributes["parley.meeting"] = meeting.rawValue
        span.attributes["parley.batch.entries"] = entries.count
        if let first = entries.first, let last = entries.last {
            span.attributes["parley.seq.first"] = Int(first.seq)
            span.attributes["parley.seq.last"] = Int(last.seq)
        }
        for op in spans { span.addLink(SpanLink(context: op.context, attributes: [:])) }
        return span
    }

    mutating func committed() {
        guard !committedYet else { return }
        committedYet = true
        for span in spans { span.addEvent("committed") }
    }

    func commitFailed(_ commit: (any Span)?, _ why: String) {
        commit?.setStatus(SpanStatus(code: .error, message: why))
        for span in spans { span.addEvent(SpanEvent(name: "commit failed", attributes: ["reason": .string(why)])) }
    }

    mutating func delivered(to recipients: Int) {
        guard committedYet, !deliveredYet else { return }
        deliveredYet = true
        for span in spans { span.addEvent(SpanEvent(name: "delivered", attributes: ["parley.recipients": .int(Int64(recipients))])) }
    }

    /// Ends the spans of ops that will not be handled.
    static func abandon(_ inputs: ArraySlice<HostInput>, because reason: String) {
        for case .op(_, _, _, let span?) in inputs {
            span.addEvent(SpanEvent(name: "not applied", attributes: ["reason": .string(reason)]))
            span.end()
        }
    }

    mutating func endBatch() {
        for span in spans { span.end() }
        spans.removeAll(keepingCapacity: true)
        committedYet = false
        deliveredYet = false
    }
}
