import Logging
import Tracing
import NIOCore
import ParleyCore
import ParleyProtocol
import ServiceLifecycle
import Synchronization

/// One client connection, over a WebSocket or a long-poll virtual socket. Transport-neutral:
/// the transport feeds received frames to ``Gateway/receive(_:from:)`` and writes out what
/// the ``outbox`` yields.
final class ClientConnection: Sendable {
    enum Phase {
        case awaitingHello
        /// Hello received; its token is being checked and its meeting found.
        case verifying
        /// Hello accepted; waiting for the meeting host to welcome or refuse.
        case joining(any MeetingEntrance)
        case attached(any MeetingEntrance, ParticipantID)
        case closed
    }

    private struct State {
        var phase: Phase = .awaitingHello
        var bucket: TokenBucket
        /// The hello asked to resume from a seq (counted by how it is welcomed).
        var resuming = false
    }

    let id: UInt64
    let outbox: Outbox
    let transport: String
    private let metrics: ServerMetrics
    private let state: Mutex<State>
    /// Until the transport reports the connection gone (counted once).
    private let live = Atomic<Bool>(true)

    init(id: UInt64, transport: String, limits: ConnectionLimits, encoder: FrameEncoder, metrics: ServerMetrics = .off) {
        self.id = id
        self.transport = transport
        self.metrics = metrics
        let overflow = ByteBuffer(bytes: encoder.encode(.error(ProtocolError(
            .slowConsumer, "you fell more than \(limits.sendQueueFrames) frames behind; reconnect and resume", fatal: true))))
        outbox = Outbox(capacity: limits.sendQueueFrames, overflowFrame: overflow)
        state = Mutex(State(bucket: TokenBucket(ratePerSecond: limits.framesPerSecond, burst: limits.burst)))
    }

    var phase: Phase { state.withLock { $0.phase } }

    func send(_ frame: ServerFrame, _ encoder: FrameEncoder) {
        if case .reject(_, let rejection) = frame { metrics.refused(rejection.code.rawValue) }
        outbox.enqueue(ByteBuffer(bytes: encoder.encode(frame)))
    }

    /// Sends an error; a fatal one closes the connection after it.
    func fail(_ error: ProtocolError, _ encoder: FrameEncoder) {
        metrics.refused(error.code.rawValue)
        let frame = ByteBuffer(bytes: encoder.encode(.error(error)))
        if error.fatal {
            state.withLock { $0.phase = .closed }
            outbox.close(after: frame)
        } else {
            outbox.enqueue(frame)
        }
    }

    /// True the first time only.
    func markGone() -> Bool { live.exchange(false, ordering: .relaxed) }

    /// True for the first hello only.
    func markVerifying() -> Bool {
        state.withLock { state in
            guard case .awaitingHello = state.phase else { return false }
            state.phase = .verifying
            return true
        }
    }

    /// A hello that was refused without closing the connection: another may follow.
    func helloFailed() {
        state.withLock { state in
            if case .verifying = state.phase { state.phase = .awaitingHello }
        }
    }

    func markJoining(_ host: any MeetingEntrance, resuming: Bool) -> Bool {
        state.withLock { state in
            guard case .verifying = state.phase else { return false }
            state.phase = .joining(host)
            state.resuming = resuming
            return true
        }
    }

    /// The meeting welcomed this connection `mode`; a resume is counted by it.
    func welcomed(_ mode: ResumeMode) {
        if state.withLock({ $0.resuming }) { metrics.resumed(mode) }
    }

    func markAttached(participant: ParticipantID) {
        state.withLock { state in
            if case .joining(let host) = state.phase { state.phase = .attached(host, participant) }
        }
    }

    func markClosed() -> Phase {
        state.withLock { state in
            defer { state.phase = .closed }
            return state.phase
        }
    }

    func takeRateToken(nowMillis: Int64) -> Bool {
        state.withLock { $0.bucket.take(nowMillis: nowMillis) }
    }
}

/// Where frames from clients enter the server: decoding, limits, authentication, and
/// routing to the meeting's host. Shared by the WebSocket and long-poll transports, so both
/// behave the same.
///
/// Every frame but a hello is handled synchronously, on the caller's thread. A hello needs
/// its token checked and its meeting found, which waits: the long-poll transport awaits it
/// (``receive(_:from:)-async``), while a WebSocket hands it to this service's own tasks
/// (``receiveNow(_:from:)``), so a connection needs no task of its own.
final class Gateway: Service, Sendable {
    let directory: MeetingDirectory
    let tokens: TokenAuthority
    let configuration: ServerConfiguration
    let clock: @Sendable () -> Millis
    let logger: Logger
    private let ids = Atomic<UInt64>(0)
    private let openConnections = Atomic<Int>(0)
    /// Every connection not gone yet, for the send-queue figures.
    private let live = Mutex<[UInt64: ClientConnection]>([:])
    private let encoder = FrameEncoder()
    /// Hellos from WebSockets, waiting to be verified by ``run()``.
    private let hellos: Inbox<PendingHello>
    /// The client WebSockets open now, by connection id: no task holds them, so the server
    /// closes them itself when it stops. Nil once it has: a socket whose upgrade completes
    /// after that is closed at once.
    private let sockets = Mutex<[UInt64: any Channel]?>([:])

    struct PendingHello: Sendable {
        let token: String
        let resume: ResumePoint?
        let connection: ClientConnection
    }

    init(directory: MeetingDirectory, tokens: TokenAuthority, configuration: ServerConfiguration,
         clock: @escaping @Sendable () -> Millis, logger: Logger) {
        self.directory = directory
        self.tokens = tokens
        self.configuration = configuration
        self.clock = clock
        self.logger = logger
        hellos = Inbox(capacity: configuration.pendingHellos)
    }

    /// Verifies the hellos WebSockets hand over, each in a task of its own that ends with it
    /// (checking a token takes a deep stack, which a long-lived task would keep), until the
    /// server shuts down.
    func run() async {
        await withTaskCancellationOrGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                while let batch = await hellos.next() {
                    for pending in batch {
                        group.addTask { await self.hello(token: pending.token, resume: pending.resume, on: pending.connection) }
                    }
                }
            }
        } onCancelOrGracefulShutdown: {
            self.hellos.finish()
        }
        // The server is stopping: its clients reconnect (to it again, or elsewhere) and resume.
        let open = sockets.withLock { sockets in
            defer { sockets = nil }
            return sockets.map { Array($0.values) } ?? []
        }
        for channel in open { channel.close(promise: nil) }
    }

    /// A client WebSocket is open on `channel`; it is closed when the server stops, or now if
    /// the server has stopped already.
    func opened(_ connection: ClientConnection, on channel: any Channel) {
        let stopped = sockets.withLock { sockets in
            sockets?[connection.id] = channel
            return sockets == nil
        }
        if stopped { channel.close(promise: nil) }
    }

    /// Client connections open now (the load report's figure).
    var connectionCount: Int { openConnections.load(ordering: .relaxed) }

    func makeConnection(transport: String) -> ClientConnection {
        let id = ids.wrappingAdd(1, ordering: .relaxed).newValue
        openConnections.add(1, ordering: .relaxed)
        configuration.metrics.connectionOpened(transport)
        let connection = ClientConnection(id: id, transport: transport, limits: configuration.limits, encoder: encoder,
                                          metrics: configuration.metrics)
        live.withLock { $0[id] = connection }
        return connection
    }

    /// Frames queued to each client now.
    func sendQueueDepths() -> [Int] {
        live.withLock { $0.values.map(\.outbox.depth) }
    }

    /// Handles one frame's bytes without waiting; a hello is verified by ``run()``. Never
    /// throws: every problem becomes an error frame.
    func receiveNow(_ bytes: some Collection<UInt8>, from connection: ClientConnection) {
        let frame: ClientFrame
        do throws(ProtocolError) {
            frame = try ClientFrameDecoder(maxFrameBytes: configuration.limits.maxFrameBytes).decode(bytes)
        } catch {
            connection.fail(error, encoder)
            return
        }
        guard let hello = dispatch(frame, from: connection) else { return }
        switch hellos.send(PendingHello(token: hello.token, resume: hello.resume, connection: connection)) {
        case .queued:
            break
        case .full:
            connection.fail(ProtocolError(.serverBusy, "more than \(configuration.pendingHellos) joins are waiting; retry shortly",
                                          fatal: true), encoder)
        case .finished:
            connection.fail(ProtocolError(.serverBusy, "the server is stopping; reconnect", fatal: true), encoder)
        }
    }

    /// Handles one decoded frame, a hello included.
    func receive(_ frame: ClientFrame, from connection: ClientConnection) async {
        if let hello = dispatch(frame, from: connection) {
            await self.hello(token: hello.token, resume: hello.resume, on: connection)
        }
    }

    /// Handles one frame, except that a first hello is returned for the caller to verify.
    private func dispatch(_ frame: ClientFrame, from connection: ClientConnection) -> (token: String, resume: ResumePoint?)? {
        switch (frame, connection.phase) {
        case (.ping(let nonce), _):
            connection.send(.pong(nonce: nonce), encoder)
        case (.hello(let token, let resume), .awaitingHello):
            guard connection.markVerifying() else {
                connection.fail(ProtocolError(.alreadyJoined, "this connection has already sent hello"), encoder)
                return nil
            }
            return (token, resume)
        case (.hello, _):
            connection.fail(ProtocolError(.alreadyJoined, "this connection has already sent hello"), encoder)
        case (_, .awaitingHello), (_, .verifying), (_, .joining):
            connection.fail(ProtocolError(.notJoined, "send hello and wait for welcome first"), encoder)
        case (_, .closed):
            return nil
        case (let frame, .attached(let host, _)):
            let input: HostInput
            switch frame {
            case .op(let id, let operation):
                guard connection.takeRateToken(nowMillis: clock()) else {
                    connection.send(.reject(id: id, Rejection(.rateLimited, "more than \(configuration.limits.framesPerSecond) frames per second; not applied, retry later")), encoder)
                    return nil
                }
                input = .op(connection, id, operation, opSpan(operation, meeting: host.id))
            case .signal(let signal):
                guard connection.takeRateToken(nowMillis: clock()) else {
                    connection.fail(ProtocolError(.rateLimited, "more than \(configuration.limits.framesPerSecond) frames per second; signal dropped"), encoder)
                    return nil
                }
                input = .signal(connection, signal)
            case .leave:
                input = .leave(connection)
            case .hello, .ping:
                return nil
            }
            let submitted = host.submit(input)
            if case .op(_, _, _, let span?) = input, submitted != .queued {
                // Not taken: its trace ends here.
                span.addEvent(submitted == .full ? "refused: server_busy" : "refused: host stopping")
                span.end()
            }
            if case .full = submitted {
                if case .op(_, let id, _, _) = input {
                    connection.send(.reject(id: id, Rejection(.serverBusy, "the meeting is overloaded; not applied, retry later")), encoder)
                } else {
                    connection.fail(ProtocolError(.serverBusy, "the meeting is overloaded"), encoder)
                }
            }
        }
        return nil
    }

    /// The `parley.op` span of an op just received, when tracing is on.
    private func opSpan(_ operation: MeetingOp, meeting: MeetingID) -> (any Span)? {
        guard configuration.tracing.isOn else { return nil }
        let span = configuration.tracing.tracer.startSpan("parley.op", ofKind: .server)
        span.attributes["parley.meeting"] = meeting.rawValue
        span.attributes["parley.op.kind"] = operation.kind
        return span
    }

    private func hello(token: String, resume: ResumePoint?, on connection: ClientConnection) async {
        let claims: JoinClaims
        do {
            claims = try await tokens.verify(token)
        } catch {
            logger.notice("hello refused", metadata: ["connection": "\(connection.id)", "code": "\(error.code.rawValue)"])
            connection.helloFailed()
            connection.fail(error, encoder)
            return
        }
        let host: any MeetingEntrance
        do {
            host = try await directory.entrance(for: claims.meeting)
        } catch {
            connection.helloFailed()
            connection.fail(error, encoder)
            return
        }
        guard connection.markJoining(host, resuming: resume != nil) else { return }
        switch host.submit(.attach(connection, claims, resume)) {
        case .full:
            connection.fail(ProtocolError(.serverBusy, "the meeting is overloaded; retry shortly", fatal: true), encoder)
        case .finished:
            // The host or copy stopped between being found and taking the attach (an unused
            // edge copy dropped, a meeting released): nobody would ever welcome this client.
            connection.fail(ProtocolError(.moved, "the meeting is not served here any more; ask the locator again", fatal: true), encoder)
        case .queued:
            break
        }
    }

    /// The transport is gone. The participant stays in the meeting as `reconnecting`.
    func closed(_ connection: ClientConnection) {
        switch connection.markClosed() {
        case .joining(let host), .attached(let host, _):
            _ = host.submit(.detach(connection))
        case .awaitingHello, .verifying, .closed:
            break
        }
        if connection.markGone() {
            openConnections.subtract(1, ordering: .relaxed)
            configuration.metrics.connectionClosed(connection.transport)
            live.withLock { _ = $0.removeValue(forKey: connection.id) }
        }
        sockets.withLock { _ = $0?.removeValue(forKey: connection.id) }
        connection.outbox.close()
    }
}
