import Foundation
import Synchronization
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import ParleyCore
import ParleyProtocol

/// Returns a fresh join token for the participant whose token the server just refused
/// (passed in): from the app's own backend, or from Parley itself with
/// ``ParleyHTTP/renewToken(server:token:session:)``. See ``MeetingClient/Options/tokenProvider``.
public typealias TokenProvider = @Sendable (_ refused: String) async throws -> String

/// A participant in one Parley meeting: the I/O shell around the pure ``ClientSession``.
///
/// It connects, reconnects with backoff and resumes from its last seq on its own, and
/// retries every op under its id until the server answers, so an op is applied at most
/// once however often the connection drops. A failure shows only as
/// `.connection(.reconnecting)` followed by `.connection(.resumed)`.
///
/// The client owns its background tasks: they start in ``connect()`` and are cancelled by
/// ``close()`` or ``leave()`` (or when the server refuses the session for good).
public actor MeetingClient {
    public struct Options: Sendable {
        public var policy: ConnectionPolicy
        /// How long one long-polling receive waits on the server for news.
        public var longPollWait: Duration
        /// ``MeetingClient/events`` keeps at most this many unread events; see ``EventStream``.
        public var eventBufferLimit: Int
        /// Routine news (connecting, dropping, resuming) is logged at debug level.
        public var logger: Logger
        /// Called for a fresh token when the server refuses the current one (expired or
        /// invalid), with the refused token; the connection is retried with what it
        /// returns, and queued ops wait. `{ try await ParleyHTTP.renewToken(server: server, token: $0).token }`
        /// renews it with Parley itself. When the provider throws ``ParleyError/http(_:)``
        /// with a 4xx status (the token cannot be renewed), the session ends as `.refused`;
        /// any other error fails that attempt only.
        /// Without one, a refused token ends the session as `.refused`. If it throws, that
        /// attempt fails and the next one (after backoff) calls it again. After
        /// ``ClientSession/maxTokenRefusalsInARow`` refusals in a row the session ends.
        ///
        /// It is called only on a refusal, not before every reconnect, so a zone-wide
        /// failover does not send every client to the app's backend at once.
        public var tokenProvider: TokenProvider?
        /// How to reach the server; nil for the network. Tests of an app put a fake here
        /// (`ParleyTesting`'s `InMemoryParley.connector`).
        public var connector: Connector?
        /// Other web fronts of the same Parley cluster (each machine running one gives an
        /// address): when the server cannot tell where the meeting is now (its machine is lost),
        /// the next connection attempt asks the next of these, in turn.
        public var otherServers: [URL] = []
        /// With other servers, time `GET /v1/ping` on every front before the first connection
        /// (and again once each has failed in turn), and ask the fastest first; fronts that
        /// do not answer within ``ConnectionPolicy/connectTimeout`` come last. Off: the order given.
        public var probeFronts = true

        public init(policy: ConnectionPolicy = ConnectionPolicy(), longPollWait: Duration = .seconds(25),
                    eventBufferLimit: Int = 65_536, logger: Logger = Logger(label: "parley.client"),
                    tokenProvider: TokenProvider? = nil, connector: Connector? = nil) {
            self.policy = policy
            self.longPollWait = longPollWait
            self.eventBufferLimit = eventBufferLimit
            self.logger = logger
            self.tokenProvider = tokenProvider
            self.connector = connector
        }

        /// Throws ``ParleyError/invalidOptions(_:)`` naming the first option out of range.
        public func validate() throws(ParleyError) {
            try policy.validate()
            guard longPollWait >= .zero, longPollWait <= .seconds(120) else {
                throw .invalidOptions("longPollWait must be between 0 and 120 seconds (it is \(longPollWait))")
            }
            guard eventBufferLimit > 0 else {
                throw .invalidOptions("eventBufferLimit must be 1 or more (it is \(eventBufferLimit))")
            }
            for other in otherServers { _ = try ParleyHTTP.endpoint(other, "") }
        }
    }

    /// Everything that happens, in order, from the moment the client is made: this stream
    /// misses nothing. It ends when the session does. For more consumers, ``subscribe(bufferLimit:)``.
    public nonisolated let events: EventStream

    public let server: URL
    private let options: Options
    private var logger: Logger
    private var session: ClientSession
    private let hub = EventHub()
    private let states = StateHub()
    private let connector: Connector
    private let urlSession: URLSession
    private let clock = ContinuousClock()
    private let origin: ContinuousClock.Instant

    private struct Connection {
        var id: ConnectionID
        var outbox: AsyncStream<ClientFrame>.Continuation
        var task: Task<Void, Never>
    }
    private var connection: Connection?
    /// Dropped connections whose tasks have not ended yet.
    private var draining: [ConnectionID: Task<Void, Never>] = [:]
    private var renewal: (id: ConnectionID, task: Task<Void, Never>)?
    private var probeTask: Task<Void, Never>?
    private var heartbeatTask: Task<Void, Never>?
    private var reconnectTask: Task<Void, Never>?
    private var pending: [OpID: CheckedContinuation<Result<Ack, ParleyError>, Never>] = [:]
    private var welcomeWaiters: [Int: CheckedContinuation<Result<Void, ParleyError>, Never>] = [:]
    private var nextWaiter = 0

    /// - Parameters:
    ///   - server: the server's HTTP base URL, e.g. `http://127.0.0.1:8080`.
    ///   - token: a join token from ``ParleyHTTP`` or the web zone.
    ///   - options: transports, timeouts, buffers, logging, a token provider; the defaults suit most apps.
    /// - Throws: ``ParleyError/invalidServerURL(_:)`` or ``ParleyError/invalidOptions(_:)``.
    public init(server: URL, token: String, options: Options = Options()) throws(ParleyError) {
        try options.validate()
        if options.connector == nil { _ = try ParleyHTTP.endpoint(server, "") }
        self.server = server
        self.options = options
        // Unique per client instance, so two sessions of one participant never share op ids.
        let prefix = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        session = ClientSession(configuration: .init(
            token: token, opIDPrefix: prefix, policy: options.policy, jitterSeed: UInt64.random(in: 0...UInt64.max),
            canRenewToken: options.tokenProvider != nil))
        var logger = options.logger
        logger[metadataKey: "client"] = "\(prefix)"
        self.logger = logger
        events = hub.subscribe(limit: options.eventBufferLimit)
        let urlSession = HTTP.makeSession(timeoutSeconds: Double(options.longPollWait.wholeMilliseconds) / 1000 + 10)
        self.urlSession = urlSession
        connector = options.connector ?? .network(
            servers: [server] + options.otherServers, meeting: ParleyHTTP.meeting(inToken: token), longPollWait: options.longPollWait,
            probeTimeout: options.policy.connectTimeout, probeFronts: options.probeFronts, session: urlSession, logger: logger)
        origin = clock.now
    }

    deinit {
        heartbeatTask?.cancel()
        reconnectTask?.cancel()
        probeTask?.cancel()
        renewal?.task.cancel()
        connection?.task.cancel()
        for task in draining.values { task.cancel() }
        hub.finish()
        states.finish()
    }

    // MARK: - State

    /// The local copy of the meeting, as this participant may see it; nil before the first welcome.
    public var meeting: Meeting? { session.meeting }
    /// The last seq reflected in ``meeting``.
    public var lastSeq: Seq { session.lastSeq }
    /// Known after the first welcome.
    public var participantID: ParticipantID? { session.participantID }
    public var meetingID: MeetingID? { session.meetingID }
    /// The transport in use (or about to be tried).
    public var transport: Transport { session.transport }
    public var phase: ClientSession.Phase { session.phase }
    /// This client's ops are `"\(opIDPrefix)-1"`, `"-2"`…: how to find them in a history.
    public var opIDPrefix: String { session.configuration.opIDPrefix }
    /// The state last announced in ``events``.
    public private(set) var connectionState: ConnectionState = .connecting

    /// Another stream of events, from now on, for one more consumer (a view, a logger…).
    /// - Parameter bufferLimit: unread events it keeps; nil for the client's
    ///   ``Options/eventBufferLimit``.
    public nonisolated func subscribe(bufferLimit: Int? = nil) -> EventStream {
        hub.subscribe(limit: bufferLimit ?? options.eventBufferLimit)
    }

    /// The connection state now, then each change, until the session ends. A slow
    /// consumer sees the latest states (up to 16), not every one.
    public func connectionStates() -> AsyncStream<ConnectionState> {
        states.subscribe(current: connectionState)
    }

    // MARK: - API

    /// Connects and returns once the server has welcomed this participant the first time.
    /// - Throws: ``ParleyError/closed(_:)`` if the server refuses the session (bad token,
    ///   ended meeting…) or cannot be reached at all; ``ParleyError/cancelled`` when the
    ///   calling task is cancelled first, which also closes the client (it stops trying).
    public func connect() async throws(ParleyError) {
        switch session.phase {
        case .closed(let reason):
            throw .closed(reason)
        case .idle:
            if Task.isCancelled { throw .cancelled }
            startHeartbeat()
            perform(session.start())
        default:
            break
        }
        if session.hasBeenWelcomed { return }
        let waiter = nextWaiter
        nextWaiter += 1
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { welcomeWaiters[waiter] = $0 }
        } onCancel: {
            Task { await self.connectCancelled(waiter) }
        }
        try result.get()
    }

    /// Sends an op and waits until it is committed. Survives reconnects: the op is retried
    /// under its id until the server acks or rejects it.
    ///
    /// Cancelling the calling task, or passing `timeout`, lets the caller give up: the op is
    /// withdrawn (never resent) and ``ParleyError/withdrawn(_:)`` says whether it may still
    /// have been committed (it had been sent) or certainly was not.
    /// - Parameters:
    ///   - operation: what to do in the meeting.
    ///   - timeout: give up after this long without an answer; checked a few times per
    ///     heartbeat interval, so it is precise to about a quarter of that.
    /// - Throws: ``ParleyError/rejected(_:)`` when the server refuses the op,
    ///   ``ParleyError/invalidOp(_:)`` when it could not read it (e.g. over the frame-size
    ///   limit), ``ParleyError/withdrawn(_:)``, ``ParleyError/closed(_:)`` when the session
    ///   ends first (the op may then have been committed or not),
    ///   ``ParleyError/tooManyPendingOps(limit:)``, or ``ParleyError/cancelled`` when the
    ///   task was cancelled before the op was queued.
    @discardableResult
    public func send(_ operation: MeetingOp, timeout: Duration? = nil) async throws(ParleyError) -> Ack {
        if Task.isCancelled { throw .cancelled }
        let deadline = timeout.map { nowMs() + max(0, $0.wholeMilliseconds) }
        let (id, actions) = try session.send(operation, deadlineMs: deadline)
        // Deadlines pass on the heartbeat's ticks, which run from connect(); an op queued
        // before connecting needs them too.
        if deadline != nil, heartbeatTask == nil { startHeartbeat() }
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                pending[id] = continuation
                perform(actions)
            }
        } onCancel: {
            Task { await self.withdraw(id) }
        }
        return try result.get()
    }

    /// Sends an ephemeral signal; dropped if the connection is not live at the moment.
    public func signal(_ signal: Signal) {
        perform(session.signal(signal))
    }

    /// Leaves the meeting for good, then closes. Returns once the leave was delivered or
    /// after about two seconds.
    public func leave() async {
        let closing = connection?.id
        perform(session.leave())
        if let closing, await !waitUntilEnded([closing], within: .seconds(2)) { draining[closing]?.cancel() }
        await closeRemaining()
    }

    /// Stops the client without leaving: the server shows the participant as reconnecting
    /// until its resume window passes.
    public func close() async {
        perform(session.close())
        await closeRemaining()
    }

    // MARK: - Running the session

    private func perform(_ actions: [ClientSession.Action]) {
        for action in actions {
            switch action {
            case .connect(let id, let transport):
                open(id, transport)
            case .send(let frame, let id):
                if connection?.id == id { connection?.outbox.yield(frame) }
            case .emit(let event):
                if case .connection(let state) = event {
                    connectionState = state
                    states.yield(state)
                }
                hub.yield(event)
            case .complete(let id, let outcome):
                guard let continuation = pending.removeValue(forKey: id) else { continue }
                switch outcome {
                case .acked(let ack): continuation.resume(returning: .success(ack))
                case .rejected(let rejection): continuation.resume(returning: .failure(.rejected(rejection)))
                case .invalid(let error): continuation.resume(returning: .failure(.invalidOp(error)))
                case .withdrawn(let withdrawal): continuation.resume(returning: .failure(.withdrawn(withdrawal)))
                case .failed(let reason): continuation.resume(returning: .failure(.closed(reason)))
                }
            case .disconnect(let id, let cause):
                drop(id, cause)
            case .scheduleReconnect(let delayMs):
                logger.debug("reconnecting", metadata: ["after_ms": "\(delayMs)", "transport": "\(session.transport)"])
                reconnectTask?.cancel()
                reconnectTask = Task { [weak self] in
                    try? await Task.sleep(for: .milliseconds(delayMs))
                    guard !Task.isCancelled else { return }
                    await self?.backoffElapsed()
                }
            case .renewToken(let id):
                renewToken(for: id)
            case .probeWebSocket:
                let connector = connector
                probeTask = Task { [weak self] in
                    let succeeded = await connector.probeWebSocket()
                    guard !Task.isCancelled else { return }
                    await self?.probed(succeeded)
                }
            case .finished(let reason):
                logger.debug("session ended", metadata: ["reason": "\(reason)"])
                heartbeatTask?.cancel()
                reconnectTask?.cancel()
                probeTask?.cancel()
                renewal?.task.cancel()
                hub.finish()
                states.finish()
            }
        }
        resolveWelcomeWaiters()
    }

    private func resolveWelcomeWaiters() {
        guard !welcomeWaiters.isEmpty else { return }
        let result: Result<Void, ParleyError>
        if session.hasBeenWelcomed {
            result = .success(())
        } else if case .closed(let reason) = session.phase {
            result = .failure(.closed(reason))
        } else {
            return
        }
        let waiters = welcomeWaiters.values
        welcomeWaiters.removeAll()
        for waiter in waiters { waiter.resume(returning: result) }
    }

    /// The task awaiting ``connect()`` was cancelled before the first welcome: stop trying.
    private func connectCancelled(_ waiter: Int) {
        guard let continuation = welcomeWaiters.removeValue(forKey: waiter) else { return }
        continuation.resume(returning: .failure(.cancelled))
        guard !session.hasBeenWelcomed, welcomeWaiters.isEmpty else { return }
        logger.debug("connect cancelled: closing")
        perform(session.close())
        for task in draining.values { task.cancel() }
    }

    private func withdraw(_ id: OpID) {
        perform(session.withdraw(id, .cancelled))
    }

    private func open(_ id: ConnectionID, _ transport: Transport) {
        logger.debug("connecting", metadata: ["connection": "\(id)", "transport": "\(transport)"])
        let (outbound, outbox) = AsyncStream.makeStream(of: ClientFrame.self)
        let link = ConnectionLink(
            outbound: outbound,
            onConnected: { [weak self] in await self?.transportConnected(id) },
            onFrame: { [weak self] frame in await self?.transportReceived(frame, id) })
        let connector = connector
        let task = Task { [weak self] in
            var failure: (any Error)?
            do {
                try await connector.open(transport, link)
            } catch {
                failure = error
            }
            await self?.transportEnded(id, failure)
        }
        connection = Connection(id: id, outbox: outbox, task: task)
    }

    private func renewToken(for id: ConnectionID) {
        guard let provider = options.tokenProvider else {
            perform(session.tokenRenewalFailed(for: id))
            return
        }
        if let renewal {
            // Still fetching one for an earlier attempt that timed out: wait for that one.
            self.renewal = (id, renewal.task)
            return
        }
        logger.debug("fetching a fresh token", metadata: ["connection": "\(id)"])
        let refused = session.token
        let task = Task { [weak self] in
            do {
                let token = try await provider(refused)
                await self?.tokenArrived(token)
            } catch {
                await self?.tokenFailed(error)
            }
        }
        renewal = (id, task)
    }

    private func tokenArrived(_ token: String) {
        renewal = nil
        perform(session.tokenRenewed(token))
    }

    private func tokenFailed(_ error: any Error) {
        guard let id = renewal?.id else { return }
        renewal = nil
        logger.debug("the token provider failed", metadata: ["connection": "\(id)", "error": "\(error)"])
        perform(session.tokenRenewalFailed(for: id, refusal: Self.refusal(in: error)))
    }

    /// A provider's error that retrying cannot cure: an HTTP 4xx answer (as
    /// ``ParleyHTTP/renewToken(server:token:session:)`` gives for a token expired too long
    /// ago), or a ``ParleyError/closed(_:)`` the provider threw to end the session.
    static func refusal(in error: any Error) -> ProtocolError? {
        switch error {
        case ParleyError.http(let failure) where (400..<500).contains(failure.status):
            let code: ProtocolErrorCode = failure.code == .tokenExpired ? .tokenExpired : .invalidToken
            return ProtocolError(code, "the token could not be renewed: \(failure.message)", fatal: true)
        case ParleyError.closed(.refused(let error)):
            return error
        default:
            return nil
        }
    }

    private func probed(_ succeeded: Bool) {
        probeTask = nil
        logger.debug("websocket probe", metadata: ["succeeded": "\(succeeded)"])
        perform(session.webSocketProbed(succeeded: succeeded))
    }

    private func drop(_ id: ConnectionID, _ cause: DisconnectCause) {
        guard let current = connection, current.id == id else { return }
        connection = nil
        switch cause {
        case .leaving, .transportClosed, .upgrading:
            // Let the writer flush what was sent (the leave frame), then close.
            current.outbox.finish()
        default:
            logger.debug("dropping connection", metadata: ["connection": "\(id)", "cause": "\(cause)"])
            current.outbox.finish()
            current.task.cancel()
        }
        draining[id] = current.task
    }

    private func transportConnected(_ id: ConnectionID) {
        perform(session.connected(id))
    }

    private func transportReceived(_ frame: ServerFrame, _ id: ConnectionID) {
        perform(session.received(frame, on: id))
    }

    private func transportEnded(_ id: ConnectionID, _ failure: (any Error)?) {
        // Last: telling the session drops the connection, which files its task as draining.
        defer { draining[id] = nil }
        guard connection?.id == id else { return }
        logger.debug("connection ended", metadata: ["connection": "\(id)", "error": "\(failure.map { "\($0)" } ?? "none")"])
        perform(session.disconnected(id))
    }

    private func backoffElapsed() {
        perform(session.backoffElapsed())
    }

    private func nowMs() -> Int64 { (clock.now - origin).wholeMilliseconds }

    private func startHeartbeat() {
        guard heartbeatTask == nil else { return }
        let tick = max(.milliseconds(10), options.policy.heartbeatInterval / 4)
        heartbeatTask = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: tick)
                guard let self else { return }
                await self.tick()
            }
        }
    }

    private func tick() {
        perform(session.tick(nowMs: nowMs()))
    }

    /// Waits until the connections' tasks have ended (each reports it through
    /// `transportEnded`), at most `within`. Polls rather than awaiting the tasks, so a
    /// network call that ignores cancellation cannot hold `leave` or `close` forever.
    private func waitUntilEnded(_ ids: Set<ConnectionID>, within: Duration) async -> Bool {
        let deadline = clock.now + within
        while !ids.isDisjoint(with: draining.keys) {
            guard clock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return true
    }

    private func closeRemaining() async {
        heartbeatTask?.cancel()
        reconnectTask?.cancel()
        probeTask?.cancel()
        renewal?.task.cancel()
        for task in draining.values { task.cancel() }
        if await !waitUntilEnded(Set(draining.keys), within: .seconds(1)) {
            // They end on their own when their request times out; nothing waits for them.
            logger.notice("connections still ending after close", metadata: ["count": "\(draining.count)"])
        }
        urlSession.invalidateAndCancel()
    }
}

/// The connection state for every ``MeetingClient/connectionStates()`` consumer.
final class StateHub: Sendable {
    private let state = Mutex<(next: Int, continuations: [Int: AsyncStream<ConnectionState>.Continuation], finished: Bool,
                               last: ConnectionState?)>((0, [:], false, nil))

    func subscribe(current: ConnectionState) -> AsyncStream<ConnectionState> {
        let (stream, continuation) = AsyncStream.makeStream(of: ConnectionState.self, bufferingPolicy: .bufferingNewest(16))
        continuation.yield(current)
        state.withLock { $0.last = $0.last ?? current }
        let id: Int? = state.withLock { state in
            guard !state.finished else { return nil }
            defer { state.next += 1 }
            state.continuations[state.next] = continuation
            return state.next
        }
        guard let id else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.continuations.removeValue(forKey: id) }
        }
        return stream
    }

    /// Repeats of the same state (the first `connecting`) are not passed on.
    func yield(_ value: ConnectionState) {
        let continuations = state.withLock { state -> [AsyncStream<ConnectionState>.Continuation] in
            guard state.last != value else { return [] }
            state.last = value
            return Array(state.continuations.values)
        }
        for continuation in continuations { continuation.yield(value) }
    }

    func finish() {
        let continuations = state.withLock { state in
            state.finished = true
            defer { state.continuations.removeAll() }
            return Array(state.continuations.values)
        }
        for continuation in continuations { continuation.finish() }
    }
}
