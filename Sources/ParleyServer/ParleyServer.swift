import FoundationEssentials
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket
import ParleyCore
import ParleyProtocol
import ParleyStore
import ParleyTelemetry
import ServiceLifecycle
import Synchronization

/// What a server is for: everything in one process, or one part of a zone.
public enum ServerMode: Sendable {
    /// One process: the API, the locator (answering with itself), and every meeting,
    /// loaded on its first hello.
    case single
    /// A zone's collaboration server: client transports and the meetings the zone places here.
    case zoneHost(ZoneHooks)
    /// A zone's web front: the API and the locator, which `locate` answers; no meetings.
    case zoneFront(ZoneHooks, locate: @Sendable (MeetingID) async -> Location)
}

/// How a zone process plugs its agent into a server.
public struct ZoneHooks: Sendable {
    /// Services that run with the server (the zone agent), started with what they need.
    public var services: @Sendable (ServerHandle) -> [any Service]

    public init(services: @escaping @Sendable (ServerHandle) -> [any Service]) {
        self.services = services
    }
}

/// What a zone agent may use of the server it runs in.
public struct ServerHandle: Sendable {
    /// The meetings hosted here (nil on a front).
    public let directory: MeetingDirectory?
    public let store: any Store
    private let gateway: Gateway?
    private let port: PortAnnouncement

    init(directory: MeetingDirectory?, store: any Store, gateway: Gateway?, port: PortAnnouncement) {
        self.directory = directory
        self.store = store
        self.gateway = gateway
        self.port = port
    }

    /// Client connections open now.
    public var connectionCount: Int { gateway?.connectionCount ?? 0 }

    /// The port the server listens on, once it does.
    public func boundPort() async throws -> Int { try await port.value() }

    /// Reads the figures that are a state (meetings held, send queues) into `metrics`, just
    /// before a scrape.
    public func sampleMetrics(_ metrics: ServerMetrics) async {
        let (hosted, standbys, edges) = await directory?.heldCounts() ?? (0, 0, 0)
        metrics.sample(hosted: hosted, standbys: standbys, edges: edges, sendQueues: gateway?.sendQueueDepths() ?? [])
    }
}

/// The bound port, announced once the HTTP server is up.
public final class PortAnnouncement: Sendable {
    private struct State {
        var port: Int?
        var waiters: [UInt64: CheckedContinuation<Int, any Error>] = [:]
        var nextWaiter: UInt64 = 0
    }
    private let state = Mutex(State())

    public init() {}

    public func announce(_ port: Int) {
        let waiters = state.withLock { state in
            state.port = port
            defer { state.waiters = [:] }
            return state.waiters.values
        }
        for waiter in waiters { waiter.resume(returning: port) }
    }

    /// The port, once announced. Throws `CancellationError` if cancelled first: a server that
    /// fails before it listens must not leave its waiters hanging.
    public func value() async throws -> Int {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let outcome = state.withLock { state -> Result<Int, any Error>? in
                    if let port = state.port { return .success(port) }
                    if Task.isCancelled { return .failure(CancellationError()) }
                    state.waiters[id] = continuation
                    return nil
                }
                if let outcome { continuation.resume(with: outcome) }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(throwing: CancellationError())
        }
    }
}

/// What a front gives the routes added to it (the web zone's pages, accounts and documents).
public struct FrontContext: Sendable {
    /// The server's own store: meetings, and the web zone's accounts in the same database.
    public let store: any ZoneStore
    /// Issues and verifies join tokens.
    public let tokens: TokenAuthority
    public let configuration: ServerConfiguration
    /// The server's wall clock, in milliseconds since 1970.
    public let clock: @Sendable () -> Millis
    public let logger: Logger
}

/// Adds routes to a front's router; run once, before the server starts.
public typealias FrontRoutes = @Sendable (Router<ParleyRequestContext>, FrontContext) async throws -> Void

/// One Parley server: HTTP API, WebSocket and long-poll transports, meeting hosts and the
/// durable store, run as a service group that shuts down in order (stop accepting, then
/// let every meeting commit and checkpoint).
public struct ParleyServer: Sendable {
    public let configuration: ServerConfiguration
    public let mode: ServerMode
    /// Routes a front adds beyond the API (the web zone); ignored on hosting-only servers.
    public let frontRoutes: FrontRoutes?
    /// A store the caller opened and owns, used instead of opening `configuration.store`.
    ///
    /// A parameter rather than a case of `ServerConfiguration.store`: the configuration is
    /// what an operator can set, plain values that can be logged, compared and passed to a
    /// child process; an open store is a live object with an owner, who alone may run and
    /// stop it.
    public let givenStore: (any ZoneStore)?
    let logger: Logger

    /// - Parameter store: an open store to use instead of opening `configuration.store`
    ///   (tests, the simulation). The caller owns it: the server neither runs nor stops what
    ///   it runs (a PostgreSQL store's pools), and leaves it open when it stops.
    public init(configuration: ServerConfiguration, mode: ServerMode = .single, frontRoutes: FrontRoutes? = nil,
                store: (any ZoneStore)? = nil, logger: Logger) {
        self.configuration = configuration
        self.mode = mode
        self.frontRoutes = frontRoutes
        self.givenStore = store
        self.logger = logger
    }

    /// Runs until SIGTERM/SIGINT (or cancellation). `onListening` receives the bound port.
    public func run(onListening: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let configuration = configuration
        let logger = logger
        let limits = configuration.limits
        if limits.sendQueueFrames < 2 * limits.burst {
            // Each op a client sends puts its event and its ack in the client's own queue.
            logger.warning("sendQueueFrames is under twice burst: a client sending a burst of ops it is allowed can be cut off as a slow consumer by their own events and acks", metadata: [
                "send_queue_frames": "\(limits.sendQueueFrames)", "burst": "\(limits.burst)",
            ])
        }
        let clock = configuration.clock
        // Read before anything opens: a server told to serve TLS never serves plain HTTP instead.
        let tls = try configuration.tls.map { try $0.configuration() }
        let store: any ZoneStore
        if let givenStore {
            store = givenStore
            logger.info("store given", metadata: ["store": "\(type(of: givenStore))"])
        } else {
            store = try await configuration.store.open(dataDirectory: configuration.dataDirectory,
                                                        synchronous: configuration.fsyncEveryCommit ? .full : .normal, logger: logger,
                                                        metrics: configuration.metrics.process)
            logger.info("store open", metadata: ["store": "\(configuration.store)"])
        }
        let hooks: ZoneHooks?
        let hosts: Bool
        let front: Bool
        var locate: (@Sendable (MeetingID) async -> Location)?
        switch mode {
        case .single: (hooks, hosts, front) = (nil, true, true)
        case .zoneHost(let zone): (hooks, hosts, front) = (zone, true, false)
        case .zoneFront(let zone, let locator): (hooks, hosts, front, locate) = (zone, false, true, locator)
        }
        // Only the front issues tokens; a zone's hosting servers get the public key alone.
        let tokens = front
            ? try await TokenAuthority(signingIn: configuration.dataDirectory, lifetimeSeconds: configuration.tokenLifetimeSeconds,
                                       clock: configuration.clock)
            : try await TokenAuthority(verifyingIn: configuration.dataDirectory, clock: configuration.clock)

        var services: [any Service] = []
        var directory: MeetingDirectory?
        var gateway: Gateway?
        var transports: HTTPAPI.Transports?
        if hosts {
            let commitLog = GroupCommitLog(store: store, metrics: configuration.metrics.process)
            let meetings = MeetingDirectory(store: store, commitLog: commitLog, configuration: configuration,
                                            loadsOnDemand: hooks == nil, clock: clock, logger: logger)
            let clients = Gateway(directory: meetings, tokens: tokens, configuration: configuration, clock: clock, logger: logger)
            let polls = PollSessions(gateway: clients, timeoutMillis: configuration.pollSessionTimeoutMillis, clock: clock)
            services += [meetings, polls]
            (directory, gateway) = (meetings, clients)
            transports = HTTPAPI.Transports(polls: polls, gateway: clients)
        }
        let api = HTTPAPI(store: store, tokens: tokens, transports: transports, front: front, locate: locate,
                          configuration: configuration, clock: clock, logger: logger)
        let port = PortAnnouncement()
        let handle = ServerHandle(directory: directory, store: store, gateway: gateway, port: port)
        let zoneServices = hooks?.services(handle) ?? []

        let maxInbound = max(configuration.limits.maxFrameBytes * 2, 1 << 16)
        let router = api.router()
        if front, let frontRoutes {
            try await frontRoutes(router, FrontContext(store: store, tokens: tokens, configuration: configuration, clock: clock, logger: logger))
        }
        if let path = configuration.metricsPath {
            let metrics = configuration.metrics
            MetricsEndpoint.route(on: router, path: path, metrics: metrics.process) { await handle.sampleMetrics(metrics) }
        }
        let clientGateway = gateway
        let pingInterval = TimeAmount.seconds(Int64(max(1, configuration.webSocketPingSeconds)))
        let app = Application(
            router: router,
            server: HTTPServerBuilder { responder in
                let channel = ServerChannel(responder: responder, gateway: clientGateway, secure: tls != nil,
                                            maxMessageBytes: maxInbound, pingInterval: pingInterval,
                                            headTimeout: .seconds(Int64(configuration.headerTimeoutSeconds)),
                                            idleTimeout: .seconds(configuration.httpIdleTimeoutSeconds))
                guard let tls else { return channel }
                return try TLSChannel(channel, tlsConfiguration: tls)
            },
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "parley"),
            onServerRunning: { channel in
                let bound = channel.localAddress?.port ?? configuration.port
                logger.info("parley is listening", metadata: [
                    "address": "\(configuration.scheme)://\(configuration.host):\(bound)", "data": "\(configuration.dataDirectory)",
                ])
                port.announce(bound)
                await onListening(bound)
            },
            logger: logger
        )
        // Services stop in reverse order: the zone agent and the HTTP server first, then
        // long-poll sessions, then the meetings, which commit and checkpoint last.
        // The store's connection pools (PostgreSQL) stop last, after the meetings' last commits;
        // a given store's are its owner's to run.
        var pools: [any Service] = []
        if givenStore == nil, let postgres = store as? PostgresStore { pools = [StorePools(store: postgres)] }
        let group = ServiceGroup(configuration: .init(
            services: pools + services + (gateway.map { [$0] } ?? []) + [app] + zoneServices,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
        logger.info("parley stopped")
    }
}

/// Runs a PostgreSQL store's connection pools as a service of the server.
struct StorePools: Service {
    let store: PostgresStore

    func run() async throws {
        await cancelWhenGracefulShutdown { await store.run() }
    }
}
