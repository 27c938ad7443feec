import Logging
import NIOCore
import NIOPosix
import ParleyZone
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A zone process's link to its supervisor, over the control socket: it registers, sends a
/// heartbeat every `heartbeat.intervalMs` (with the load the process chooses to report), asks
/// for more collaboration servers, and hears `stop`.
///
/// ``run()`` owns the connection and reconnects when it drops, a bounded number of times:
/// a process whose supervisor is gone for good ends (``SupervisorLinkError/supervisorGone(socketPath:attempts:)``)
/// rather than run unwatched. Graceful shutdown ends `run()`.
public actor SupervisorLink: Service {
    public struct Options: Sendable {
        public var heartbeatIntervalMs: Int
        /// Consecutive failed connection attempts before the supervisor counts as gone.
        public var reconnectAttempts: Int
        public var reconnectDelayMs: Int
        public var requestTimeoutMs: Int

        public init(heartbeatIntervalMs: Int, reconnectAttempts: Int = 50, reconnectDelayMs: Int = 200,
                    requestTimeoutMs: Int = 10_000) {
            precondition(heartbeatIntervalMs > 0 && reconnectAttempts > 0 && reconnectDelayMs > 0 && requestTimeoutMs > 0)
            self.heartbeatIntervalMs = heartbeatIntervalMs
            self.reconnectAttempts = reconnectAttempts
            self.reconnectDelayMs = reconnectDelayMs
            self.requestTimeoutMs = requestTimeoutMs
        }
    }

    public nonisolated let name: NodeName
    public nonisolated let socketPath: String
    /// One element per `stop` the supervisor sends: shut the process down gracefully.
    public nonisolated let stops: AsyncStream<Void>
    private nonisolated let stopSink: AsyncStream<Void>.Continuation
    private nonisolated let options: Options
    private nonisolated let pid: Int
    private let logger: Logger
    private var load: (@Sendable () async -> JSONValue?)?
    private var metricsURL: String?
    private var readiness: (@Sendable () async -> [String]?)?
    /// Asks the current session for a heartbeat now (see ``reportNow()``).
    private nonisolated let nudge = Mutex<AsyncStream<Void>.Continuation?>(nil)
    private var outbox: AsyncStream<ControlMessage>.Continuation?
    private var pending: [Int: Pending] = [:]
    private var nextRequestID = 0
    private let origin = ContinuousClock.now

    private struct Pending {
        var deadline: ContinuousClock.Instant
        var continuation: CheckedContinuation<NodeName, any Error>
    }

    public init(name: NodeName, socketPath: String, options: Options, logger: Logger) {
        self.name = name
        self.socketPath = socketPath
        self.options = options
        self.pid = Int(getpid())
        self.logger = logger
        (stops, stopSink) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// What each heartbeat carries as `load`; called once per heartbeat, so keep it cheap.
    public func reportLoad(_ load: @escaping @Sendable () async -> JSONValue?) {
        self.load = load
    }

    /// Why the process cannot do its job now (empty: it can; nil: not known yet): shown with
    /// its load (`ready`, and `notReady` with the reasons).
    public func reportReadiness(_ readiness: @escaping @Sendable () async -> [String]?) {
        self.readiness = readiness
    }

    /// Where this process serves its metrics: shown with its load (`metrics`).
    public func metricsServed(at url: String) {
        metricsURL = url
        reportNow()
    }

    /// Sends a heartbeat with the load now rather than at the next interval: what the load
    /// says changed (a meeting is hosted here now, a manager leads), and an operator's
    /// `ctl status` should not show the old state for up to an interval.
    public nonisolated func reportNow() {
        _ = nudge.withLock { $0?.yield() }
    }

    /// Asks the supervisor for one more process of `role` and returns its name once the
    /// supervisor has decided to spawn it (not once it runs).
    public func requestSpawn(role: NodeRole) async throws -> NodeName {
        guard let outbox else { throw SupervisorLinkError.notConnected(socketPath: socketPath) }
        nextRequestID += 1
        let id = nextRequestID
        let deadline = ContinuousClock.now + .milliseconds(options.requestTimeoutMs)
        return try await withCheckedThrowingContinuation { continuation in
            pending[id] = Pending(deadline: deadline, continuation: continuation)
            outbox.yield(.request(id: id, .spawn(role: role)))
        }
    }

    public func run() async throws {
        try await cancelWhenGracefulShutdown { try await self.connectLoop() }
    }

    // MARK: - Private

    private func connectLoop() async throws {
        var failures = 0
        while true {
            do {
                try await ControlClient.withConnection(socketPath: socketPath) { messages, sender in
                    try await self.session(messages: messages, sender: sender)
                }
            } catch SupervisorLinkError.refused(let error) {
                throw SupervisorLinkError.refused(error)
            } catch {
                if !Task.isCancelled {
                    logger.warning("supervisor link down; reconnecting", metadata: [
                        "attempt": "\(connected ? 1 : failures + 1)", "of": "\(options.reconnectAttempts)", "error": "\(error)",
                    ])
                }
            }
            // A link that was up starts counting afresh.
            failures = connected ? 1 : failures + 1
            connected = false
            failAll(SupervisorLinkError.notConnected(socketPath: socketPath))
            if Task.isCancelled { return }
            guard failures < options.reconnectAttempts else {
                throw SupervisorLinkError.supervisorGone(socketPath: socketPath, attempts: failures)
            }
            try? await Task.sleep(for: .milliseconds(options.reconnectDelayMs))
        }
    }

    private var connected = false

    /// One connection's life: register, then heartbeats out and messages in until either ends.
    private func session(messages: ControlMessages, sender: ControlSender) async throws {
        let (outbound, sink) = AsyncStream<ControlMessage>.makeStream(bufferingPolicy: .bufferingNewest(64))
        let (nudges, nudgeSink) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        try await sender.send(.register(name: name, pid: pid))
        outbox = sink
        nudge.withLock { $0 = nudgeSink }
        connected = true
        logger.info("registered with the supervisor", metadata: ["socket": "\(socketPath)"])
        defer {
            sink.finish()
            outbox = nil
            nudge.withLock { $0 = nil }
            nudgeSink.finish()
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await message in outbound { try await sender.send(message) }
            }
            group.addTask {
                while true {
                    let load = await self.currentLoad()
                    await self.heartbeat(load: load)
                    try await Task.sleep(for: .milliseconds(self.options.heartbeatIntervalMs))
                }
            }
            group.addTask {
                for await _ in nudges { await self.heartbeat(load: await self.currentLoad()) }
            }
            group.addTask {
                for try await message in messages { try await self.received(message) }
                throw SupervisorLinkError.closedBySupervisor
            }
            try await group.next()
            group.cancelAll()
        }
    }

    private func currentLoad() async -> JSONValue? {
        let load = await load?()
        let problems = await readiness?()
        guard metricsURL != nil || problems != nil, case .object(var fields) = load ?? .object([:]) else { return load }
        if let metricsURL { fields["metrics"] = .string(metricsURL) }
        if let problems {
            fields["ready"] = .bool(problems.isEmpty)
            if !problems.isEmpty { fields["notReady"] = .array(problems.map(JSONValue.string)) }
        }
        return .object(fields)
    }

    private func heartbeat(load: JSONValue?) {
        outbox?.yield(.heartbeat(load: load))
        let now = ContinuousClock.now
        for (id, request) in pending where request.deadline <= now {
            pending[id] = nil
            request.continuation.resume(throwing: SupervisorLinkError.timedOut(afterMs: options.requestTimeoutMs))
        }
    }

    private func received(_ message: ControlMessage) throws {
        switch message {
        case .stop:
            logger.notice("the supervisor asks this process to stop")
            stopSink.yield()
        case .reply(let reply):
            guard let request = pending.removeValue(forKey: reply.id) else { return }
            if reply.ok, let name = reply.name {
                request.continuation.resume(returning: name)
            } else {
                let error = reply.error ?? ControlError(code: "bad_reply", message: "the supervisor's reply named no process")
                request.continuation.resume(throwing: error)
            }
        case .refused(let error):
            throw SupervisorLinkError.refused(error)
        case .register, .heartbeat, .request, .ctl:
            logger.debug("ignored a message only zone processes send", metadata: ["message": "\(message)"])
        }
    }

    private func failAll(_ error: any Error) {
        let failed = pending
        pending = [:]
        for request in failed.values { request.continuation.resume(throwing: error) }
    }
}

public enum SupervisorLinkError: Error, CustomStringConvertible {
    case notConnected(socketPath: String)
    case supervisorGone(socketPath: String, attempts: Int)
    case refused(ControlError)
    case timedOut(afterMs: Int)
    case closedBySupervisor

    public var description: String {
        switch self {
        case .notConnected(let path): "not connected to the supervisor at \(path)"
        case .supervisorGone(let path, let attempts):
            "the supervisor is gone: \(attempts) attempts to reach \(path) failed; stopping this process"
        case .refused(let error): "the supervisor refused this process: \(error.message)"
        case .timedOut(let ms): "the supervisor did not answer within \(ms) ms"
        case .closedBySupervisor: "the supervisor closed the control connection"
        }
    }
}

// MARK: - Control socket client

/// A client connection to a zone's control socket, for zone processes and `parley ctl`.
public enum ControlClient {
    /// Connects to `socketPath` and runs `body` with the arriving messages and a sender; the
    /// connection closes when `body` returns or throws.
    public static func withConnection<Result: Sendable>(
        socketPath: String,
        _ body: @Sendable (ControlMessages, ControlSender) async throws -> Result
    ) async throws -> Result {
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(unixDomainSocketPath: socketPath) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw ControlClientError.cannotConnect(socketPath: socketPath, reason: "\(error)")
        }
        return try await channel.executeThenClose { inbound, outbound in
            try await body(ControlMessages(inbound: inbound), ControlSender(outbound: outbound))
        }
    }

    /// Sends one operator command and waits for its reply: what `parley ctl` does.
    public static func command(_ command: ControlCommand, socketPath: String,
                               timeout: Duration = .seconds(10)) async throws -> ControlReply {
        try await withConnection(socketPath: socketPath) { messages, sender in
            try await withThrowingTaskGroup(of: ControlReply.self) { group in
                group.addTask {
                    try await sender.send(.ctl(id: 1, command))
                    for try await message in messages {
                        if case .reply(let reply) = message, reply.id == 1 { return reply }
                    }
                    throw ControlClientError.noReply(socketPath: socketPath)
                }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    throw ControlClientError.timedOut(socketPath: socketPath, after: timeout)
                }
                defer { group.cancelAll() }
                return try await group.next()!
            }
        }
    }
}

public enum ControlClientError: Error, CustomStringConvertible {
    case cannotConnect(socketPath: String, reason: String)
    case noReply(socketPath: String)
    case timedOut(socketPath: String, after: Duration)

    public var description: String {
        switch self {
        case .cannotConnect(let path, let reason): "cannot connect to \(path) (\(reason))"
        case .noReply(let path): "the supervisor at \(path) closed the connection without replying"
        case .timedOut(let path, let after): "the supervisor at \(path) did not reply within \(after)"
        }
    }
}

/// Sends control messages, one line each.
public struct ControlSender: Sendable {
    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    public func send(_ message: ControlMessage) async throws {
        try await outbound.write(ByteBuffer(bytes: try message.line()))
    }
}

/// The control messages arriving on a connection, parsed line by line.
public struct ControlMessages: AsyncSequence, Sendable {
    public typealias Element = ControlMessage
    let inbound: NIOAsyncChannelInboundStream<ByteBuffer>

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: inbound.makeAsyncIterator()) }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
        var framer = ControlLineFramer()
        var ready: [[UInt8]] = []

        public mutating func next() async throws -> ControlMessage? {
            while ready.isEmpty {
                guard let buffer = try await base.next() else { return nil }
                ready = try framer.append(buffer.readableBytesView)
            }
            return try ControlMessage(line: ready.removeFirst())
        }
    }
}
