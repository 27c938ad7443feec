import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import ParleyCore
import ParleyProtocol

/// A participant's connection to a Parley meeting: the I/O shell around ``ClientSession``.
///
/// It connects, reconnects with backoff and resumes from its last seq on its own, and
/// retries every op under its id until the server answers, so an op is applied at most
/// once however often the connection drops. A failure shows only as
/// `.connection(.reconnecting)` followed by `.connection(.resumed)`.
///
/// The client owns its background tasks: they start in ``connect()`` and are cancelled by
/// ``close()`` or ``leave()`` (or when the server refuses the session for good).
public actor ParleyClient {
    public struct Options: Sendable {
        public var policy: ConnectionPolicy
        public var longPollWaitMs: Int
        /// ``events`` keeps at most this many unread events, dropping the oldest; ``meeting``
        /// is always complete whatever is dropped.
        public var eventBufferLimit: Int
        public var logger: Logger

        public init(policy: ConnectionPolicy = ConnectionPolicy(), longPollWaitMs: Int = 25_000,
                    eventBufferLimit: Int = 65_536, logger: Logger = Logger(label: "parley.client")) {
            self.policy = policy
            self.longPollWaitMs = longPollWaitMs
            self.eventBufferLimit = eventBufferLimit
            self.logger = logger
        }
    }

    /// Everything that happens, in order. One consumer only; it ends when the session does.
    public nonisolated let events: AsyncStream<ClientEvent>

    public let server: URL
    /// The token's meeting, when the token says; the locator is asked for it before every
    /// connection.
    private let locatable: MeetingID?
    private let options: Options
    private var logger: Logger
    private var session: ClientSession
    private let eventSink: AsyncStream<ClientEvent>.Continuation
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
    private var heartbeatTask: Task<Void, Never>?
    private var reconnectTask: Task<Void, Never>?
    private var pending: [OpID: CheckedContinuation<Ack, any Error>] = [:]
    private var welcomeWaiters: [CheckedContinuation<Void, any Error>] = []

    /// - Parameters:
    ///   - server: the server's HTTP base URL, e.g. `http://127.0.0.1:8080`.
    ///   - token: a meeting token from ``ParleyHTTP`` or the web zone.
    public init(server: URL, token: String, options: Options = Options()) {
        self.server = server
        self.options = options
        locatable = ParleyHTTP.meeting(inToken: token)
        // Unique per client instance, so two sessions of one participant never share op ids.
        let prefix = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        session = ClientSession(configuration: .init(
            token: token, opIDPrefix: prefix, policy: options.policy, jitterSeed: UInt64.random(in: 0...UInt64.max)))
        var logger = options.logger
        logger[metadataKey: "client"] = "\(prefix)"
        self.logger = logger
        (events, eventSink) = AsyncStream.makeStream(of: ClientEvent.self,
                                                     bufferingPolicy: .bufferingNewest(options.eventBufferLimit))
        urlSession = HTTP.makeSession(timeoutSeconds: Double(options.longPollWaitMs) / 1000 + 10)
        origin = clock.now
    }

    deinit {
        heartbeatTask?.cancel()
        reconnectTask?.cancel()
        connection?.task.cancel()
        for task in draining.values { task.cancel() }
        eventSink.finish()
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

    // MARK: - API

    /// Connects and returns once the server has welcomed this participant the first time.
    /// Throws ``ClientError/closed(_:)`` if the server refuses the session (bad token,
    /// ended meeting…) or cannot be reached at all.
    public func connect() async throws {
        switch session.phase {
        case .closed(let reason):
            throw ClientError.closed(reason)
        case .idle:
            startHeartbeat()
            perform(session.start())
        default:
            break
        }
        if session.hasBeenWelcomed { return }
        try await withCheckedThrowingContinuation { welcomeWaiters.append($0) }
    }

    /// Sends an op and waits until it is committed. Survives reconnects: the op is retried
    /// under its id until the server acks or rejects it.
    /// - Throws: ``Rejection`` when the server refuses the op; ``ProtocolError`` (with the
    ///   op's id) when the server could not read it, e.g. it is over the frame-size limit;
    ///   ``ClientError`` when the session ends first (the op may then have been committed or not).
    /// Cancelling the calling task does not withdraw the op.
    @discardableResult
    public func send(_ operation: ParleyCore.Operation) async throws -> Ack {
        let (id, actions) = try session.send(operation)
        return try await withCheckedThrowingContinuation { continuation in
            pending[id] = continuation
            perform(actions)
        }
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
        if let closing, await !waitUntilEnded([closing], withinMs: 2_000) { draining[closing]?.cancel() }
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
                eventSink.yield(event)
            case .complete(let id, let outcome):
                guard let continuation = pending.removeValue(forKey: id) else { continue }
                switch outcome {
                case .acked(let ack): continuation.resume(returning: ack)
                case .rejected(let rejection): continuation.resume(throwing: rejection)
                case .invalid(let error): continuation.resume(throwing: error)
                case .failed(let reason): continuation.resume(throwing: ClientError.closed(reason))
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
            case .finished(let reason):
                logger.info("session ended", metadata: ["reason": "\(reason)"])
                heartbeatTask?.cancel()
                reconnectTask?.cancel()
                eventSink.finish()
            }
        }
        resolveWelcomeWaiters()
    }

    private func resolveWelcomeWaiters() {
        guard !welcomeWaiters.isEmpty else { return }
        if session.hasBeenWelcomed {
            for waiter in welcomeWaiters { waiter.resume() }
            welcomeWaiters.removeAll()
        } else if case .closed(let reason) = session.phase {
            for waiter in welcomeWaiters { waiter.resume(throwing: ClientError.closed(reason)) }
            welcomeWaiters.removeAll()
        }
    }

    private func open(_ id: ConnectionID, _ transport: Transport) {
        logger.debug("connecting", metadata: ["connection": "\(id)", "transport": "\(transport)"])
        let (outbound, outbox) = AsyncStream.makeStream(of: ClientFrame.self)
        let link = TransportLink(
            outbound: outbound,
            onConnected: { [weak self] in await self?.transportConnected(id) },
            onFrame: { [weak self] frame in await self?.transportReceived(frame, id) })
        let server = server
        let logger = logger
        let waitMs = options.longPollWaitMs
        let urlSession = urlSession
        let meeting = locatable
        let task = Task { [weak self] in
            var failure: (any Error)?
            do {
                // Ask where the meeting lives now; after a failover that is another server.
                let host = if let meeting { try await ParleyHTTP.locate(server: server, meeting: meeting) } else { server }
                switch transport {
                case .webSocket:
                    try await WebSocketTransport.run(url: try ParleyHTTP.webSocketURL(host) + "?" + FrameLines.query, link: link,
                                                     logger: logger)
                case .longPolling:
                    try await LongPollTransport.run(server: host, link: link, waitMs: waitMs, session: urlSession,
                                                    logger: logger)
                }
            } catch {
                failure = error
            }
            await self?.transportEnded(id, failure)
        }
        connection = Connection(id: id, outbox: outbox, task: task)
    }

    private func drop(_ id: ConnectionID, _ cause: DisconnectCause) {
        guard let current = connection, current.id == id else { return }
        connection = nil
        switch cause {
        case .leaving:
            // Let the writer flush the leave frame, then close.
            current.outbox.finish()
        case .transportClosed:
            current.outbox.finish()
        default:
            logger.info("dropping connection", metadata: ["connection": "\(id)", "cause": "\(cause)"])
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
        draining[id] = nil
        guard connection?.id == id else { return }
        logger.debug("connection ended", metadata: ["connection": "\(id)", "error": "\(failure.map { "\($0)" } ?? "none")"])
        perform(session.disconnected(id))
    }

    private func backoffElapsed() {
        perform(session.backoffElapsed())
    }

    private func startHeartbeat() {
        let tickMs = max(10, options.policy.heartbeatIntervalMs / 4)
        heartbeatTask = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(tickMs))
                guard let self else { return }
                await self.tick()
            }
        }
    }

    private func tick() {
        perform(session.tick(nowMs: (clock.now - origin).wholeMilliseconds))
    }

    /// Waits until the connections' tasks have ended (each reports it through
    /// `transportEnded`), at most `withinMs`. Polls rather than awaiting the tasks, so a
    /// network call that ignores cancellation cannot hold `leave` or `close` forever.
    private func waitUntilEnded(_ ids: Set<ConnectionID>, withinMs: Int) async -> Bool {
        let deadline = clock.now + .milliseconds(withinMs)
        while !ids.isDisjoint(with: draining.keys) {
            guard clock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return true
    }

    private func closeRemaining() async {
        heartbeatTask?.cancel()
        reconnectTask?.cancel()
        for task in draining.values { task.cancel() }
        if await !waitUntilEnded(Set(draining.keys), withinMs: 1_000) {
            // They end on their own when their request times out; nothing waits for them.
            logger.notice("connections still ending after close", metadata: ["count": "\(draining.count)"])
        }
        urlSession.invalidateAndCancel()
    }
}
