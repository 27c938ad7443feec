import ParleyCore
import ParleyProtocol

/// How a client connects, reconnects and bounds its work: shared by the pure
/// ``ClientSession`` and the ``MeetingClient`` that drives it.
///
/// Every field has a sane default; ``validate()`` says which one is out of range
/// (``MeetingClient`` calls it and throws ``ParleyError/invalidOptions(_:)``).
public struct ConnectionPolicy: Equatable, Sendable {
    public var transport: TransportPreference
    /// Under `.automatic`, failed attempts in a row on WebSocket before trying long-polling.
    public var attemptsBeforeFallback: Int
    /// The first reconnect waits up to this long; each failure in a row doubles it.
    public var backoffInitial: Duration
    public var backoffMax: Duration
    /// A live connection that has been quiet this long gets a ping.
    public var heartbeatInterval: Duration
    /// A live connection that has been silent this long is dropped and resumed; keeps a
    /// hung server from holding the participant.
    public var heartbeatTimeout: Duration
    /// A connection that has not been welcomed this long after it was opened is dropped.
    public var connectTimeout: Duration
    /// A live connection with ops waiting on which no op has been answered (acked or
    /// rejected) for this long is dropped and resumed. Pongs alone do not prove progress:
    /// the server answers them even when the meeting's host is stuck.
    public var opAnswerTimeout: Duration
    /// Under `.automatic`, a session live on long-polling probes WebSocket this long after
    /// its welcome, and moves back to WebSocket when the probe gets through. Each failed
    /// probe doubles the wait, up to 32 times this.
    public var webSocketProbeInterval: Duration
    /// Before the first welcome, give up after this many failed attempts.
    public var maxAttemptsBeforeFirstWelcome: Int
    /// Bound on ops waiting for an answer.
    public var maxPendingOps: Int

    public init(transport: TransportPreference = .automatic, attemptsBeforeFallback: Int = 3,
                backoffInitial: Duration = .milliseconds(100), backoffMax: Duration = .seconds(5),
                heartbeatInterval: Duration = .milliseconds(500), heartbeatTimeout: Duration = .milliseconds(1_500),
                connectTimeout: Duration = .seconds(3), opAnswerTimeout: Duration = .seconds(10),
                webSocketProbeInterval: Duration = .seconds(15),
                maxAttemptsBeforeFirstWelcome: Int = 8, maxPendingOps: Int = 1_024) {
        self.transport = transport
        self.attemptsBeforeFallback = attemptsBeforeFallback
        self.backoffInitial = backoffInitial
        self.backoffMax = backoffMax
        self.heartbeatInterval = heartbeatInterval
        self.heartbeatTimeout = heartbeatTimeout
        self.connectTimeout = connectTimeout
        self.opAnswerTimeout = opAnswerTimeout
        self.webSocketProbeInterval = webSocketProbeInterval
        self.maxAttemptsBeforeFirstWelcome = maxAttemptsBeforeFirstWelcome
        self.maxPendingOps = maxPendingOps
    }

    /// Throws ``ParleyError/invalidOptions(_:)`` naming the first field out of range.
    public func validate() throws(ParleyError) {
        func check(_ ok: Bool, _ message: String) throws(ParleyError) {
            if !ok { throw .invalidOptions(message) }
        }
        try check(backoffInitial >= .milliseconds(1), "backoffInitial must be at least 1 ms (it is \(backoffInitial))")
        try check(backoffMax >= backoffInitial, "backoffMax (\(backoffMax)) must be at least backoffInitial (\(backoffInitial))")
        try check(heartbeatInterval >= .milliseconds(10), "heartbeatInterval must be at least 10 ms (it is \(heartbeatInterval))")
        try check(heartbeatTimeout > heartbeatInterval,
                  "heartbeatTimeout (\(heartbeatTimeout)) must be longer than heartbeatInterval (\(heartbeatInterval))")
        try check(connectTimeout >= .milliseconds(1), "connectTimeout must be at least 1 ms (it is \(connectTimeout))")
        try check(opAnswerTimeout >= .milliseconds(1), "opAnswerTimeout must be at least 1 ms (it is \(opAnswerTimeout))")
        try check(webSocketProbeInterval >= .milliseconds(1),
                  "webSocketProbeInterval must be at least 1 ms (it is \(webSocketProbeInterval))")
        try check(attemptsBeforeFallback > 0, "attemptsBeforeFallback must be 1 or more (it is \(attemptsBeforeFallback))")
        try check(maxAttemptsBeforeFirstWelcome > 0,
                  "maxAttemptsBeforeFirstWelcome must be 1 or more (it is \(maxAttemptsBeforeFirstWelcome))")
        try check(maxPendingOps > 0, "maxPendingOps must be 1 or more (it is \(maxPendingOps))")
    }
}

/// The client side of the protocol as a pure state machine: resume, retry under op ids,
/// gap detection, heartbeats, backoff and transport fallback.
///
/// No I/O, no clock, no hidden randomness: every input is a `mutating func` that returns
/// the ``Action``s for the shell (``MeetingClient``) to perform, in order. Time arrives as
/// `nowMs` in ``tick(nowMs:)``; backoff jitter comes from a generator seeded by the caller.
///
/// Guarantees to its user:
/// - `.entry` events come in seq order, each exactly once, with no gaps; a gap or a
///   duplicate beyond what can be dropped makes the session reconnect and resume.
/// - An op is sent under one id for its whole life and is resent after every welcome
///   until the server acks or rejects it, or its own event arrives; each op is completed
///   exactly once. It is applied at most once: after a welcome with a snapshot (we were
///   behind the resume window, or our copy broke), ops already sent are withdrawn as
///   ``OpWithdrawal/Reason/outsideResumeWindow`` rather than resent.
public struct ClientSession: Sendable {
    public struct Configuration: Equatable, Sendable {
        public var token: String
        /// Op ids are `"\(opIDPrefix)-\(n)"`; the prefix must be unique per participant
        /// among sessions that can overlap in time, because the server deduplicates by
        /// (participant, op id).
        public var opIDPrefix: String
        public var policy: ConnectionPolicy
        public var jitterSeed: UInt64
        /// The shell can fetch fresh tokens (``MeetingClient/Options/tokenProvider``): a
        /// refused token is then renewed and retried instead of ending the session.
        public var canRenewToken: Bool

        public init(token: String, opIDPrefix: String, policy: ConnectionPolicy = ConnectionPolicy(), jitterSeed: UInt64 = 0,
                    canRenewToken: Bool = false) {
            self.token = token
            self.opIDPrefix = opIDPrefix
            self.policy = policy
            self.jitterSeed = jitterSeed
            self.canRenewToken = canRenewToken
        }
    }

    public enum Phase: Equatable, Sendable {
        case idle
        /// A fresh token is being fetched for this connection (``Action/renewToken(for:)``).
        case renewingToken(ConnectionID)
        /// A transport is being opened.
        case connecting(ConnectionID)
        /// `hello` is sent; waiting for `welcome`.
        case awaitingWelcome(ConnectionID)
        case live(ConnectionID)
        /// A ``Action/scheduleReconnect(afterMs:)`` is pending.
        case waitingToReconnect
        case closed(CloseReason)
    }

    public enum Action: Equatable, Sendable {
        /// Open a transport; report back with ``connected(_:)``, ``received(_:on:)`` and
        /// ``disconnected(_:)`` under this id.
        case connect(ConnectionID, Transport)
        /// Write this frame on that connection, after every frame sent before it.
        case send(ClientFrame, on: ConnectionID)
        case emit(ClientEvent)
        /// Answer the caller waiting on this op. Each op id is completed exactly once.
        case complete(OpID, OpOutcome)
        /// Drop this connection. For `.leaving`, first flush what was sent.
        case disconnect(ConnectionID, DisconnectCause)
        /// Call ``backoffElapsed()`` after this long.
        case scheduleReconnect(afterMs: Int)
        /// Fetch a fresh token and report it with ``tokenRenewed(_:)`` (or
        /// ``tokenRenewalFailed(for:refusal:)``); the connection opens after that.
        case renewToken(for: ConnectionID)
        /// Check whether a WebSocket can be opened now, without disturbing the live
        /// long-polling connection; report with ``webSocketProbed(succeeded:)``.
        case probeWebSocket
        /// The session is over: stop timers, end the event stream.
        case finished(CloseReason)
    }

    public struct PendingOp: Equatable, Sendable {
        public var id: OpID
        public var operation: MeetingOp
        /// Handed to a transport at least once: the server may have it.
        public var sent = false
        /// In the caller's milliseconds (``tick(nowMs:)``): withdrawn as `.timedOut` then.
        public var deadlineMs: Int64?
    }

    public let configuration: Configuration
    public private(set) var phase: Phase = .idle
    /// Known after the first welcome; never changes after that.
    public private(set) var meetingID: MeetingID?
    public private(set) var participantID: ParticipantID?
    public private(set) var epoch: Epoch?
    /// The last seq applied (or skipped as redacted) to ``meeting``.
    public private(set) var lastSeq: Seq = 0
    /// The local copy, as this participant may see it. `nil` before the first welcome, and
    /// after a fault that makes it untrustworthy (the next welcome brings a snapshot).
    public private(set) var meeting: Meeting?
    /// Sent or waiting to be sent, oldest first; resent in this order after a welcome.
    public private(set) var unacked: [PendingOp] = []
    /// The transport the next (or current) connection uses.
    public private(set) var transport: Transport
    public private(set) var hasBeenWelcomed = false
    /// What the next `hello` presents; replaced by ``tokenRenewed(_:)``.
    public private(set) var token: String

    /// Attempts in a row that ended without a welcome; drives backoff.
    private var failuresInARow = 0
    /// Like `failuresInARow`, but reset when the transport changes; drives fallback.
    private var transportFailuresInARow = 0
    private var nextConnection: UInt64 = 1
    private var nextOp: UInt64 = 1
    private var rng: SplitMix64
    // Heartbeat bookkeeping, in the caller's milliseconds.
    private var heardSinceTick = false
    private var lastHeardMs: Int64?
    private var lastPingMs: Int64?
    /// Since when ops have been waiting with none answered, on the live connection.
    private var unansweredSinceMs: Int64?
    /// The server refused the token on the last attempt: renew it before the next.
    private var tokenRefused = false
    private var tokenRefusalsInARow = 0
    /// Live on long-polling under `.automatic`: when the next WebSocket probe is due.
    private var probeDueMs: Int64?
    private var probeInFlight = false
    private var failedProbes = 0

    /// Token refusals in a row, each after a renewal, before the session ends as refused.
    public static let maxTokenRefusalsInARow = 3

    public init(configuration: Configuration) {
        self.configuration = configuration
        token = configuration.token
        rng = SplitMix64(seed: configuration.jitterSeed)
        transport = configuration.policy.transport == .longPolling ? .longPolling : .webSocket
    }

    /// The connection the session is using or opening, if any.
    public var currentConnection: ConnectionID? {
        switch phase {
        case .renewingToken(let id), .connecting(let id), .awaitingWelcome(let id), .live(let id): id
        case .idle, .waitingToReconnect, .closed: nil
        }
    }

    /// A transport was opened for the current connection: not while its token is renewed.
    private var transportOpened: Bool {
        if case .renewingToken = phase { return false }
        return currentConnection != nil
    }

    /// What the next `hello` carries: nil until there is state to resume.
    public var resumePoint: ResumePoint? {
        guard let meetingID, meeting != nil else { return nil }
        return ResumePoint(meeting: meetingID, seq: lastSeq)
    }

    // MARK: - Inputs from the user

    public mutating func start() -> [Action] {
        guard phase == .idle else { return [] }
        return [.emit(.connection(.connecting))] + openConnection()
    }

    /// Queues an op under a fresh id. It is sent now if the session is live, otherwise
    /// after the next welcome.
    /// - Parameters:
    ///   - operation: the op to commit.
    ///   - deadlineMs: in ``tick(nowMs:)``'s milliseconds; the op is withdrawn as `.timedOut`
    ///     by the first tick at or after it.
    public mutating func send(_ operation: MeetingOp, deadlineMs: Int64? = nil) throws(ParleyError) -> (OpID, [Action]) {
        if case .closed(let reason) = phase { throw .closed(reason) }
        guard unacked.count < configuration.policy.maxPendingOps else {
            throw .tooManyPendingOps(limit: configuration.policy.maxPendingOps)
        }
        let id = OpID("\(configuration.opIDPrefix)-\(nextOp)")
        nextOp += 1
        unacked.append(PendingOp(id: id, operation: operation, deadlineMs: deadlineMs))
        guard case .live(let connection) = phase else { return (id, []) }
        unacked[unacked.count - 1].sent = true
        return (id, [.send(.op(id: id, operation: operation), on: connection)])
    }

    /// Gives up on an op that has not been answered: it is completed as `.withdrawn` and
    /// never resent. Nothing happens if it was answered already.
    public mutating func withdraw(_ id: OpID, _ reason: OpWithdrawal.Reason) -> [Action] {
        guard let index = unacked.firstIndex(where: { $0.id == id }) else { return [] }
        let op = unacked.remove(at: index)
        if unacked.isEmpty { unansweredSinceMs = nil }
        return [.complete(id, .withdrawn(OpWithdrawal(opID: id, reason: reason, mayHaveCommitted: op.sent)))]
    }

    /// Signals are ephemeral: when the session is not live they are dropped, not queued.
    public mutating func signal(_ signal: Signal) -> [Action] {
        guard case .live(let connection) = phase else { return [] }
        return [.send(.signal(signal), on: connection)]
    }

    /// Leaves the meeting for good. The `leave` frame can only be delivered while live;
    /// otherwise the server keeps the participant `reconnecting` until its window passes.
    public mutating func leave() -> [Action] {
        switch phase {
        case .closed:
            return []
        case .live(let connection):
            return [.send(.leave, on: connection)] + finish(.left, cause: .leaving)
        default:
            return finish(.left, cause: .closing)
        }
    }

    public mutating func close() -> [Action] {
        if case .closed = phase { return [] }
        return finish(.closed, cause: .closing)
    }

    // MARK: - Inputs from the shell

    public mutating func connected(_ connection: ConnectionID) -> [Action] {
        guard phase == .connecting(connection) else { return [] }
        phase = .awaitingWelcome(connection)
        heardSinceTick = true
        return [.send(.hello(token: token, resume: resumePoint), on: connection)]
    }

    /// A fresh token. It is kept even when it comes late (the attempt it was fetched for
    /// timed out): the next hello uses it. A connection waiting for a token opens with it.
    public mutating func tokenRenewed(_ token: String) -> [Action] {
        if case .closed = phase { return [] }
        self.token = token
        tokenRefused = false
        guard case .renewingToken(let waiting) = phase else { return [] }
        phase = .connecting(waiting)
        return [.connect(waiting, transport)]
    }

    /// The token could not be fetched: this attempt failed, and the next one tries again.
    /// - Parameters:
    ///   - connection: the attempt the token was fetched for.
    ///   - refusal: set when the provider said no for good (the token cannot be renewed);
    ///     the session then ends as refused, with it.
    public mutating func tokenRenewalFailed(for connection: ConnectionID, refusal: ProtocolError? = nil) -> [Action] {
        guard phase == .renewingToken(connection) else { return [] }
        if let refusal { return finish(.refused(refusal), cause: .closing) }
        return retry(dropping: connection, .transportClosed)
    }

    /// The answer to ``Action/probeWebSocket``.
    public mutating func webSocketProbed(succeeded: Bool) -> [Action] {
        guard probeInFlight else { return [] }
        probeInFlight = false
        guard case .live(let connection) = phase, transport == .longPolling else { return [] }
        guard succeeded else {
            failedProbes += 1
            probeDueMs = nil  // the next tick schedules it, further out
            return []
        }
        // Move back: a planned drop, resumed over WebSocket at once, without backoff.
        transport = .webSocket
        transportFailuresInARow = 0
        failedProbes = 0
        probeDueMs = nil
        unansweredSinceMs = nil
        return [.disconnect(connection, .upgrading), .emit(.connection(.reconnecting))] + openConnection()
    }

    public mutating func received(_ frame: ServerFrame, on connection: ConnectionID) -> [Action] {
        guard currentConnection == connection else { return [] }
        heardSinceTick = true
        switch frame {
        case .welcome(let welcome):
            return welcomed(welcome, on: connection)
        case .event(let delivered):
            return event(delivered, on: connection)
        case .ack(let id, let epoch, let seq):
            return complete(id, .acked(Ack(id: id, epoch: epoch, seq: seq)))
        case .reject(let id, let rejection):
            return complete(id, .rejected(rejection))
        case .signal(let from, let signal):
            return [.emit(.signal(from: from, signal))]
        case .error(let error):
            return serverError(error, on: connection)
        case .pong:
            return []
        }
    }

    /// The transport ended by itself (or failed to open).
    public mutating func disconnected(_ connection: ConnectionID) -> [Action] {
        guard currentConnection == connection else { return [] }
        return retry(dropping: connection, .transportClosed)
    }

    public mutating func backoffElapsed() -> [Action] {
        guard phase == .waitingToReconnect else { return [] }
        return openConnection()
    }

    /// Call periodically (a few times per heartbeat interval) with a monotonic time.
    public mutating func tick(nowMs: Int64) -> [Action] {
        // Deadlines pass whether or not there is a connection.
        var expired: [Action] = []
        for op in unacked where op.deadlineMs.map({ nowMs >= $0 }) ?? false {
            expired += withdraw(op.id, .timedOut)
        }
        return expired + watchConnection(nowMs: nowMs)
    }

    private mutating func watchConnection(nowMs: Int64) -> [Action] {
        guard let connection = currentConnection else { return [] }
        if heardSinceTick || lastHeardMs == nil {
            lastHeardMs = nowMs
            heardSinceTick = false
        }
        let silentMs = nowMs - (lastHeardMs ?? nowMs)
        guard case .live = phase else {
            return silentMs >= policy.connectTimeout.wholeMilliseconds ? retry(dropping: connection, .timedOut) : []
        }
        if silentMs >= policy.heartbeatTimeout.wholeMilliseconds { return retry(dropping: connection, .timedOut) }
        if unacked.isEmpty {
            unansweredSinceMs = nil
        } else if let since = unansweredSinceMs {
            if nowMs - since >= policy.opAnswerTimeout.wholeMilliseconds { return retry(dropping: connection, .timedOut) }
        } else {
            unansweredSinceMs = nowMs
        }
        var actions: [Action] = []
        if policy.transport == .automatic, transport == .longPolling, !probeInFlight {
            if let due = probeDueMs {
                if nowMs >= due {
                    probeInFlight = true
                    actions.append(.probeWebSocket)
                }
            } else {
                probeDueMs = nowMs + policy.webSocketProbeInterval.wholeMilliseconds << min(failedProbes, 5)
            }
        }
        // Ping only a quiet connection, and at most once per interval.
        if silentMs >= policy.heartbeatInterval.wholeMilliseconds,
           nowMs - (lastPingMs ?? .min / 2) >= policy.heartbeatInterval.wholeMilliseconds {
            lastPingMs = nowMs
            actions.append(.send(.ping(nonce: nil), on: connection))
        }
        return actions
    }

    private var policy: ConnectionPolicy { configuration.policy }

    // MARK: - Frames

    private mutating func welcomed(_ welcome: Welcome, on connection: ConnectionID) -> [Action] {
        guard phase == .awaitingWelcome(connection) else {
            return retry(dropping: connection, .protocolFault(.unexpectedWelcome))
        }
        if let meetingID, welcome.meeting != meetingID {
            return finish(.refused(ProtocolError(
                .meetingMismatch, "the server welcomed us into \(welcome.meeting), but this session is in \(meetingID)",
                fatal: true)), cause: .closing)
        }
        switch welcome.mode {
        case .snapshot:
            guard let state = welcome.state else { return retry(dropping: connection, .protocolFault(.snapshotWithoutState)) }
            meeting = state
            lastSeq = welcome.seq
        case .replay:
            guard meeting != nil else { return retry(dropping: connection, .protocolFault(.replayWithoutState)) }
            // Behind us is harmless (the overlap is dropped as duplicates); ahead is a gap.
            guard welcome.seq <= lastSeq else {
                return retry(dropping: connection, .protocolFault(.replayAhead(welcomeSeq: welcome.seq, lastSeq: lastSeq)))
            }
        }
        meetingID = welcome.meeting
        participantID = welcome.participant
        epoch = welcome.epoch
        phase = .live(connection)
        failuresInARow = 0
        transportFailuresInARow = 0
        tokenRefusalsInARow = 0
        probeDueMs = nil
        let state: ConnectionState = hasBeenWelcomed ? .resumed : .connected
        // Behind the resume window, the server may have forgotten whether it committed what
        // we sent: resending could apply it twice, so those ops end here (at most once).
        let withdrawn = hasBeenWelcomed && welcome.mode == .snapshot
            ? unacked.filter(\.sent).flatMap { op in
                complete(op.id, .withdrawn(OpWithdrawal(opID: op.id, reason: .outsideResumeWindow, mayHaveCommitted: true)))
            }
            : []
        hasBeenWelcomed = true
        for index in unacked.indices { unacked[index].sent = true }
        return [.emit(.connection(state)), .emit(.welcome(welcome.mode))] + withdrawn
            + unacked.map { .send(.op(id: $0.id, operation: $0.operation), on: connection) }
    }

    private mutating func event(_ delivered: DeliveredEntry, on connection: ConnectionID) -> [Action] {
        guard case .live = phase, meeting != nil else {
            return retry(dropping: connection, .protocolFault(.eventBeforeWelcome(seq: delivered.seq)))
        }
        let seq = delivered.seq
        // Already applied: a replay overlapping what we saw, or a resent frame.
        if seq <= lastSeq { return [] }
        guard seq == lastSeq + 1 else {
            return retry(dropping: connection, .protocolFault(.gap(expected: lastSeq + 1, received: seq)))
        }
        epoch = max(epoch ?? delivered.epoch, delivered.epoch)
        guard case .visible(let entry) = delivered else {
            // Someone else's private message: only its position is ours.
            lastSeq = seq
            return []
        }
        do throws(Rejection) {
            try meeting?.apply(entry.operation, by: entry.issuer, at: entry.at, seq: entry.seq)
        } catch {
            // Our copy no longer matches the server's; only a snapshot can repair it.
            meeting = nil
            return retry(dropping: connection, .protocolFault(.inapplicable(seq: seq, error)))
        }
        lastSeq = seq
        // Our own op, committed: done, even if its ack never comes (the connection may drop
        // first). Resent after a resume from beyond this seq, the server could no longer
        // tell it from a new op: it only promises to know the ops after a resume point.
        if let participantID, entry.issuer == .participant(participantID), let id = entry.opID {
            return [.emit(.entry(entry))] + complete(id, .acked(Ack(id: id, epoch: entry.epoch, seq: entry.seq)))
        }
        return [.emit(.entry(entry))]
    }

    private mutating func complete(_ id: OpID, _ outcome: OpOutcome) -> [Action] {
        // An answer for an op already completed (a retry's second answer) is dropped.
        guard let index = unacked.firstIndex(where: { $0.id == id }) else { return [] }
        unacked.remove(at: index)
        unansweredSinceMs = nil  // progress: the clock starts again for the ops still waiting
        return [.complete(id, outcome)]
    }

    private mutating func serverError(_ error: ProtocolError, on connection: ConnectionID) -> [Action] {
        // The server could not read this op: it was dropped, so it is completed, not resent.
        let invalidOp = error.opID.map { complete($0, .invalid(error)) } ?? []
        guard error.fatal else { return invalidOp + [.emit(.error(error))] }
        switch error.code {
        case .invalidToken, .tokenExpired:
            guard configuration.canRenewToken, tokenRefusalsInARow < ClientSession.maxTokenRefusalsInARow else {
                return finish(.refused(error), cause: .serverError(error))
            }
            // A provider can mint a fresh one: try again with it.
            tokenRefused = true
            tokenRefusalsInARow += 1
            return [.emit(.error(error))] + retry(dropping: connection, .serverError(error))
        case .unknownMeeting, .joinRefused, .meetingEnded, .meetingMismatch, .replaced:
            return finish(.refused(error), cause: .serverError(error))
        case .seqFromFuture:
            // The server has less than we saw (a store rolled back); start over from a snapshot.
            meeting = nil
            return [.emit(.error(error))] + retry(dropping: connection, .serverError(error))
        default:
            return [.emit(.error(error))] + retry(dropping: connection, .serverError(error))
        }
    }

    // MARK: - Connections

    private mutating func openConnection() -> [Action] {
        let connection = ConnectionID(nextConnection)
        nextConnection += 1
        heardSinceTick = true
        lastHeardMs = nil
        lastPingMs = nil
        if tokenRefused {
            phase = .renewingToken(connection)
            return [.renewToken(for: connection)]
        }
        phase = .connecting(connection)
        return [.connect(connection, transport)]
    }

    /// Drops the connection and schedules the next attempt.
    private mutating func retry(dropping connection: ConnectionID, _ cause: DisconnectCause) -> [Action] {
        var actions: [Action] = transportOpened ? [.disconnect(connection, cause)] : []
        unansweredSinceMs = nil
        probeInFlight = false
        probeDueMs = nil
        if case .live = phase {
            actions.append(.emit(.connection(.reconnecting)))
            // Fallback is per outage: every reconnect tries WebSocket first again.
            if policy.transport == .automatic {
                transport = .webSocket
                transportFailuresInARow = 0
            }
        } else {
            failuresInARow += 1
            transportFailuresInARow += 1
        }
        if !hasBeenWelcomed, failuresInARow >= configuration.policy.maxAttemptsBeforeFirstWelcome {
            phase = .waitingToReconnect  // so `finish` does not disconnect twice
            return actions + finish(.unreachable(attempts: failuresInARow), cause: .closing)
        }
        if policy.transport == .automatic, transportFailuresInARow >= policy.attemptsBeforeFallback {
            transport = transport == .webSocket ? .longPolling : .webSocket
            transportFailuresInARow = 0
        }
        phase = .waitingToReconnect
        actions.append(.scheduleReconnect(afterMs: backoffMs()))
        return actions
    }

    /// Exponential in the failures in a row, capped, with "equal jitter": a delay in
    /// [base/2, base], so clients dropped together do not come back together.
    private mutating func backoffMs() -> Int {
        let base = ClientSession.backoffBaseMs(failures: failuresInARow, configuration: configuration)
        let half = base / 2
        return half + Int(rng.next(upperBound: UInt64(base - half + 1)))
    }

    /// The upper bound of the delay after `failures` failed attempts in a row.
    public static func backoffBaseMs(failures: Int, configuration: Configuration) -> Int {
        let doublings = min(failures, 30)  // 2^30 exceeds any sane cap; avoids overflow
        let initial = Int(configuration.policy.backoffInitial.wholeMilliseconds)
        return min(Int(configuration.policy.backoffMax.wholeMilliseconds), initial << doublings)
    }

    private mutating func finish(_ reason: CloseReason, cause: DisconnectCause) -> [Action] {
        var actions: [Action] = []
        if transportOpened, let connection = currentConnection { actions.append(.disconnect(connection, cause)) }
        phase = .closed(reason)
        actions += unacked.map { .complete($0.id, .failed(reason)) }
        unacked.removeAll()
        actions.append(.emit(.connection(.closed(reason))))
        actions.append(.finished(reason))
        return actions
    }
}
