import Logging
import Tracing
import ParleyCore
import ParleyProtocol
import Synchronization

/// Where a client connection's inputs go once its hello is accepted: the meeting's host on
/// this server, or this server's copy of a meeting hosted elsewhere.
protocol MeetingEntrance: AnyObject, Sendable {
    var id: MeetingID { get }
    func submit(_ input: HostInput) -> InboxSendResult
}

extension MeetingHost: MeetingEntrance {}

/// What reaches a copy besides its clients' inputs.
enum CopyInput: Sendable {
    case client(HostInput)
    /// Committed entries from the host; answers whether the copy took them (false: it must
    /// be rebuilt from the store).
    case entries([LogEntry], took: CheckedContinuation<Bool, Never>)
    case notice(CopyNotice)
    /// The host's digest at checkpoint `seq`; answers whether the copy stands (false: it
    /// must be rebuilt from the store).
    case digest(MeetingDigest, seq: Seq, took: CheckedContinuation<Bool, Never>)
    /// A link to the host is up: pass requests up into this. Numbered, so that the end of
    /// an older link (its follower was replaced) does not end a newer one.
    case linkStarted(AsyncStream<CopyRequest>.Continuation, link: UInt64)
    case linkEnded(link: UInt64)
    /// The copy, rebuilt from the store.
    case rebuilt(MeetingLog)
    /// What the copy holds now (a promotion here starts from it); nil while the copy was
    /// outvoted and waits to be rebuilt.
    case currentLog(CheckedContinuation<MeetingLog?, Never>)
    /// Drop the copy: its clients get `error`, or are closed quietly when it is nil.
    case stop(ProtocolError?)
    /// Drop the copy if it is an edge no participant uses.
    case stopIfUnused
}

/// The adapter around ``MeetingCopyState``: one loop owns the copy, its clients and its
/// requests to the host, as ``MeetingHost``'s loop owns a hosted meeting.
///
/// The copy is followed from outside (the zone node's follower subscribes to the host and
/// hands over what arrives); this class serves the clients attached here.
final class MeetingCopy: MeetingEntrance {
    let id: MeetingID
    private let inbox: Inbox<CopyInput>
    private let initialLog: Mutex<MeetingLog?>
    private let configuration: ServerConfiguration
    private let clock: @Sendable () -> Millis
    private let logger: Logger
    /// Clients attached or joining, as the loop last counted them.
    private let clients = Atomic<Int>(0)
    /// Since when (clock ms) the loop last counted no client; -1 while it counts some.
    private let unusedSince: Atomic<Int64>
    private let lastLink = Atomic<UInt64>(0)
    /// The newest epoch in what the copy holds, as the loop last saw it.
    private let heldEpoch: Mutex<Epoch>
    /// Whether the manager keeps this copy as the meeting's standby (its promotion candidate).
    let standby: Atomic<Bool>
    /// Where a vote that outvoted the host goes (the zone demotes it).
    fileprivate let outvoted: AsyncStream<HostOutvoted>.Continuation

    init(log: MeetingLog, standby: Bool, configuration: ServerConfiguration, clock: @escaping @Sendable () -> Millis, logger: Logger,
         outvoted: AsyncStream<HostOutvoted>.Continuation) {
        self.outvoted = outvoted
        id = log.meeting.id
        inbox = Inbox(capacity: configuration.meetingQueueDepth)
        initialLog = Mutex(log)
        self.standby = Atomic(standby)
        heldEpoch = Mutex(log.epoch)
        unusedSince = Atomic(clock())
        self.configuration = configuration
        self.clock = clock
        var logger = logger
        logger[metadataKey: "meeting"] = "\(log.meeting.id)"
        logger[metadataKey: "served_from"] = "copy"
        self.logger = logger
    }

    var clientCount: Int { clients.load(ordering: .relaxed) }
    var epoch: Epoch { heldEpoch.withLock { $0 } }
    var isStandby: Bool { standby.load(ordering: .relaxed) }
    /// How long no participant has been attached or joining (ms); nil while one is.
    func unusedFor(now: Millis) -> Int64? {
        let since = unusedSince.load(ordering: .relaxed)
        return since < 0 ? nil : now - since
    }

    func submit(_ input: HostInput) -> InboxSendResult {
        switch input {
        case .attach, .op, .signal:
            inbox.send(.client(input))
        default:
            // Bookkeeping must never be dropped, or presence would go stale.
            inbox.send(.client(input), force: true)
        }
    }

    /// Hands entries from the host's stream to the loop; false when the copy could not take
    /// them (or is gone), and must be rebuilt.
    func replicate(_ entries: [LogEntry]) async -> Bool {
        await withCheckedContinuation { took in
            if case .finished = inbox.send(.entries(entries, took: took), force: true) { took.resume(returning: false) }
        }
    }

    func notice(_ notice: CopyNotice) { _ = inbox.send(.notice(notice), force: true) }

    /// Hands the host's digest at `seq` to the loop; false when the copy must be rebuilt.
    func hostDigest(_ digest: MeetingDigest, at seq: Seq) async -> Bool {
        await withCheckedContinuation { took in
            if case .finished = inbox.send(.digest(digest, seq: seq, took: took), force: true) { took.resume(returning: false) }
        }
    }

    /// A link to the host is up: returns what to pass up on it, until ``linkEnded(_:)`` with
    /// the number returned.
    func linkStarted() -> (AsyncStream<CopyRequest>, link: UInt64) {
        // A link that falls this far behind is cut off (the stream ends), and the follower
        // links again; the copy says everything again then.
        let (requests, uplink) = AsyncStream<CopyRequest>.makeStream(bufferingPolicy: .bufferingOldest(configuration.meetingQueueDepth * 4))
        let link = lastLink.add(1, ordering: .relaxed).newValue
        if case .finished = inbox.send(.linkStarted(uplink, link: link), force: true) { uplink.finish() }
        return (requests, link)
    }

    func linkEnded(_ link: UInt64) { _ = inbox.send(.linkEnded(link: link), force: true) }
    func rebuilt(_ log: MeetingLog) { _ = inbox.send(.rebuilt(log), force: true) }
    func stop(failing error: ProtocolError?) { _ = inbox.send(.stop(error), force: true) }
    /// Drops the copy unless it is the standby, or a participant is attached or joining.
    func stopIfUnused() { _ = inbox.send(.stopIfUnused, force: true) }

    /// What the copy holds now; nil if it is gone.
    func currentLog() async -> MeetingLog? {
        await withCheckedContinuation { reply in
            if case .finished = inbox.send(.currentLog(reply), force: true) { reply.resume(returning: nil) }
        }
    }

    /// Runs until the copy is stopped.
    func run() async {
        guard let log = initialLog.withLock({ state in defer { state = nil }; return state }) else { return }
        let (admissions, askAdmission) = AsyncStream<(ClientConnection, ParticipantID)>.makeStream()
        await withTaskGroup(of: Void.self) { group in
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
            var loop = CopyLoop(state: MeetingCopyState(log: log, limits: configuration.limits, asksAdmission: configuration.admission != nil),
                                copy: self, fanOut: ClientFanOut(encoder: FrameEncoder(), logger: logger, metrics: configuration.metrics), askAdmission: askAdmission)
            await loop.run()
            askAdmission.finish()
            group.cancelAll()
        }
    }

    fileprivate func next() async -> [CopyInput]? { await inbox.next() }
    /// Takes no more inputs; returns those still queued.
    fileprivate func finishInbox() async -> [CopyInput] {
        inbox.finish()
        var left: [CopyInput] = []
        while let batch = await inbox.next() { left += batch }
        return left
    }
    fileprivate var now: Millis { clock() }
    fileprivate var corruptChatText: String? { configuration.corruptChatText }
    fileprivate var loggerRef: Logger { logger }
    fileprivate func counted(_ n: Int, epoch: Epoch) {
        clients.store(n, ordering: .relaxed)
        // Only the loop writes these.
        if n > 0 {
            unusedSince.store(-1, ordering: .relaxed)
        } else if unusedSince.load(ordering: .relaxed) < 0 {
            unusedSince.store(clock(), ordering: .relaxed)
        }
        heldEpoch.withLock { $0 = epoch }
    }
}

/// The shell around ``MeetingCopyState``.
private struct CopyLoop {
    typealias State = MeetingCopyState<ClientConnection>

    var state: State
    let copy: MeetingCopy
    let fanOut: ClientFanOut
    let askAdmission: AsyncStream<(ClientConnection, ParticipantID)>.Continuation
    var uplink: AsyncStream<CopyRequest>.Continuation?
    var uplinkNumber: UInt64 = 0

    mutating func run() async {
        while !state.stopped, let batch = await copy.next() {
            for input in batch {
                if state.stopped { answerGone(input) } else { handle(input) }
            }
            copy.counted(state.clientCount, epoch: state.log.epoch)
        }
        uplink?.finish()
        for input in await copy.finishInbox() { answerGone(input) }
    }

    /// An input for a copy that has stopped: answered, so that nobody waits on a copy that
    /// is gone (a follower for its `took`, a promotion for the log, a hello for its welcome).
    private func answerGone(_ input: CopyInput) {
        switch input {
        case .entries(_, let took), .digest(_, _, let took): took.resume(returning: false)
        case .currentLog(let reply): reply.resume(returning: nil)
        case .linkStarted(let link, _): link.finish()
        case .client(.attach(let connection, _, _)):
            connection.fail(ProtocolError(.moved, "this server no longer keeps a copy of the meeting; ask the locator again", fatal: true),
                            fanOut.encoder)
        default: break
        }
    }

    mutating func handle(_ input: CopyInput) {
        let now = copy.now
        switch input {
        case .client(let input):
            switch input {
            case .attach(let connection, let claims, let resume):
                let joiner = MeetingJoiner(participant: claims.participant, name: claims.name, role: claims.role)
                perform(state.attach(connection, joiner, resume: resume, at: now))
            case .admission(let connection, let decision): perform(state.admission(connection, decision, at: now))
            case .op(let connection, let id, let operation, let span):
                // Traced as far as here: the host this copy forwards it to does not see the span.
                span?.addEvent("forwarded to the host")
                span?.end()
                perform(state.op(connection, id, operation, at: now))
            case .signal(let connection, let signal): perform(state.signal(connection, signal))
            case .detach(let connection): perform(state.detach(connection, at: now))
            case .leave(let connection): perform(state.leave(connection, at: now))
            default: break  // the host's own inputs; never sent to a copy
            }
        case .entries(let entries, let took):
            let actions = state.entries(entries, at: now)
            perform(actions)
            if let change = TestCorruption.change(copy.corruptChatText, in: entries, logger: copy.loggerRef) {
                state.corruptStateForTesting(change)
            }
            took.resume(returning: !Self.asksRebuild(actions))
        case .digest(let digest, let seq, let took):
            let actions = state.hostDigest(digest, at: seq)
            perform(actions)
            took.resume(returning: !Self.asksRebuild(actions))
        case .notice(let notice):
            perform(state.notice(notice))
        case .linkStarted(let link, let number):
            uplink?.finish()
            uplink = link
            uplinkNumber = number
            perform(state.linkStarted())
        case .linkEnded(let number):
            guard number == uplinkNumber else { return }  // an older link's end; a newer one is up
            uplink?.finish()
            uplink = nil
            state.linkEnded()
        case .rebuilt(let log):
            perform(state.rebuilt(log, at: now))
        case .currentLog(let reply):
            reply.resume(returning: state.awaitsRebuild ? nil : state.log)
        case .stop(let error):
            perform(state.stop(failing: error))
        case .stopIfUnused:
            // The standby stays whether or not anyone uses it: it is the failover.
            if !copy.isStandby, state.stopIfUnused() {
                copy.loggerRef.info("edge copy dropped: no participant used it for a while")
            }
        }
    }

    /// Whether the state asked for the copy to be rebuilt: the follower learns it from the
    /// answer to `replicate` or `hostDigest`, and rebuilds it.
    static func asksRebuild(_ actions: [State.Action]) -> Bool {
        actions.contains { if case .rebuild = $0 { true } else { false } }
    }

    mutating func perform(_ actions: [State.Action]) {
        for action in actions {
            switch action {
            case .send(let connection, let frame): connection.send(frame, fanOut.encoder)
            case .fail(let connection, let error): connection.fail(error, fanOut.encoder)
            case .welcome(let connection, let participant, let welcome, let replay):
                fanOut.welcome(connection, participant, welcome, replay: replay)
            case .close(let connection): connection.outbox.close()
            case .askAdmission(let connection, let participant): askAdmission.yield((connection, participant))
            case .deliver(let entries, let recipients, let acks):
                for connection in fanOut.deliver(entries, to: recipients, acks: acks) {
                    perform(state.detach(connection, at: copy.now))
                }
            case .relay(let signal, let from, let recipients):
                for connection in fanOut.relay(signal, from: from, to: recipients) {
                    perform(state.detach(connection, at: copy.now))
                }
            case .forward(let request):
                if let uplink, case .enqueued = uplink.yield(request) { continue }
                // No link, or it fell behind: end it; the follower links again and the state
                // says everything again then.
                uplink?.finish()
                uplink = nil
                state.linkEnded()
            case .rebuild:
                break  // the follower rebuilds the copy when `replicate` or `hostDigest` answers false
            case .hostOutvoted(let seq, let host, let mine):
                copy.outvoted.yield(HostOutvoted(meeting: copy.id, seq: seq, host: host, copy: mine))
            case .log(let line):
                copy.loggerRef.log(level: line.level, "\(line.message)", metadata: line.metadata.mapValues { .string($0) })
            }
        }
    }
}

/// Test fault injection (`testFaults.corruptChatText`): the chat with that text is kept in
/// the state under another, as a bug would, so that the copies' digests disagree.
enum TestCorruption {
    /// The change to make when `entries` hold the chat with `text`; nil otherwise.
    static func change(_ text: String?, in entries: some Collection<LogEntry>, logger: Logger) -> ((inout Meeting) -> Void)? {
        guard let text, entries.contains(where: { if case .chat(text) = $0.operation { true } else { false } }) else { return nil }
        logger.critical("TEST FAULT: corrupting this server's state of the meeting", metadata: ["chat": "\(text)"])
        return { meeting in
            for index in meeting.chat.indices where meeting.chat[index].text == text { meeting.chat[index].text += " (corrupted)" }
        }
    }
}
