import FoundationEssentials
import Logging
import ParleyServer
import ParleyStore
import ParleyTelemetry
import ParleyZone
import ServiceLifecycle
import Synchronization

// This file is where the logical servers' roles plug in. `parley node` (NodeCommand) builds a
// ``NodeContext`` and runs, in one service group: the supervisor link first, then the
// services ``NodeRoles/services(for:)`` returns. SIGTERM, SIGINT or the supervisor's `stop`
// shut the group down gracefully, in reverse order: the role's services first, the link last.
//
// The contract NodeCommand relies on: `NodeContext`'s initializer and
// `NodeRoles.services(for:) -> [any Service]`. Everything else here is the roles' to change.

/// What a node process knows when its role starts.
public struct NodeContext: Sendable {
    public var name: NodeName
    public var role: NodeRole
    public var configuration: ZoneConfiguration
    public var paths: ZonePaths
    /// Heartbeats, load reports (``SupervisorLink/reportLoad(_:)``) and ``SupervisorLink/requestSpawn(role:)``.
    public var link: SupervisorLink
    public var logger: Logger
    /// What this process records, and its `/metrics` listener serves.
    public var metrics: ProcessMetrics
    /// Where its spans go (`tracing` in the configuration); off by default.
    public var tracing: ProcessTracing
    /// What the role reads just before each scrape (figures that are a state, not a count).
    public let beforeScrape = RoleHook<Void>()
    /// Why the role cannot do its job now (empty: it can): `/ready`, and `ready` in its load.
    public let readiness = RoleHook<[String]>()
    /// The last answer of ``readiness``, kept by ``ReadinessMonitor``: what the heartbeat
    /// reports. A heartbeat must never wait on the store: a store that hangs would make the
    /// supervisor kill the process as hung (found by the PostgreSQL failover cluster test).
    public let lastReadiness = Latest<[String]>()

    public init(name: NodeName, role: NodeRole, configuration: ZoneConfiguration, paths: ZonePaths,
                link: SupervisorLink, metrics: ProcessMetrics = .off, tracing: ProcessTracing = .off, logger: Logger) {
        self.metrics = metrics
        self.tracing = tracing
        self.name = name
        self.role = role
        self.configuration = configuration
        self.paths = paths
        self.link = link
        self.logger = logger
    }

    /// This process's entry in the configuration (nil for collab servers added at run time).
    public var spec: ZoneConfiguration.ProcessSpec? { configuration.process(named: name) }
}

public enum NodeRoles {
    /// The services that make up a node of `context.role`.
    public static func services(for context: NodeContext) -> [any Service] {
        let role: any Service = switch context.role {
        case .manager: ManagerService(context: context)
        case .collab: CollabService(context: context)
        case .web: WebService(context: context)
        case .services: ServicesNode(context: context)
        }
        // The span exporter stops after the role, so that the role's last spans go out.
        return (context.tracing.exporter.map { [$0] } ?? []) + [MetricsListener(context: context), ReadinessMonitor(context: context), role]
    }
}

extension ServerConfiguration {
    /// A zone server's configuration: the zone's address and client limits, the shared data
    /// directory, and `port` (0 for servers the locator points to; the public port for web).
    public init(zone: ZoneConfiguration, paths: ZonePaths, port: Int) throws(StoreError) {
        self.init(host: zone.host, port: port, dataDirectory: paths.data)
        store = try zone.storeLocation()
        tls = zone.tls.map(ServerTLS.init)
        servesEdges = zone.scaling.edges
        let clients = zone.clients
        if let value = clients.maxFrameBytes { limits.maxFrameBytes = value }
        if let value = clients.framesPerSecond { limits.framesPerSecond = value }
        if let value = clients.burst { limits.burst = value }
        if let value = clients.sendQueueFrames { limits.sendQueueFrames = value }
        if let value = clients.meetingQueueDepth { meetingQueueDepth = value }
        if let value = clients.pendingHellos { pendingHellos = value }
        if let value = clients.webSocketPingSeconds { webSocketPingSeconds = value }
        if let value = clients.snapshotEveryEntries { snapshotEveryEntries = value }
        if let value = clients.tokenLifetimeSeconds { tokenLifetimeSeconds = value }
        if let value = clients.fsyncEveryCommit { fsyncEveryCommit = value }
        if let value = clients.headerTimeoutSeconds { headerTimeoutSeconds = value }
        if let value = clients.httpIdleTimeoutSeconds { httpIdleTimeoutSeconds = value }
        apiKey = clients.apiKey
    }
}

extension ZoneConfiguration {
    /// The zone's store, from `store.url` (SQLite in the data directory without one).
    /// - Throws: ``StoreError/misconfigured(_:)`` for a URL that does not parse: a process
    ///   never falls back to another store.
    public func storeLocation() throws(StoreError) -> StoreLocation {
        guard let url = store.url, !url.isEmpty else { return .sqlite(directory: nil) }
        return try StoreLocation(url: url)
    }
}

extension ServerTLS {
    /// The files a zone configuration's `tls` section names.
    public init(_ zone: ZoneConfiguration.ClientTLS) {
        self.init(certificatePath: zone.certificate, keyPath: zone.key)
    }
}

/// Something the role answers for the process's own listeners (the metrics to read before
/// a scrape, its readiness), set once the role is up; nil until then.
public final class RoleHook<Value: Sendable>: Sendable {
    private let hook = Mutex<(@Sendable () async -> Value)?>(nil)
    public init() {}
    public func set(_ hook: @escaping @Sendable () async -> Value) { self.hook.withLock { $0 = hook } }
    public func call() async -> Value? { await hook.withLock { $0 }?() }
}

extension NodeContext {
    /// Readiness for a role that needs its store and a manager link: the store answers, and
    /// the zone agent is registered with the leading manager.
    func readyWith(store: any Store, agent: @escaping @Sendable () -> ZoneAgent?) {
        let probe = StoreProbe(store: store)
        readiness.set {
            var problems: [String] = []
            if let problem = await probe.problem() { problems.append(problem) }
            if await agent()?.isRegistered != true { problems.append("not registered with a manager: no zone link") }
            return problems
        }
    }
}

/// Asks the role whether it is ready about once a second (or once per heartbeat interval,
/// if longer), in a task of its own, and keeps the answer for the heartbeat
/// (``NodeContext/lastReadiness``).
struct ReadinessMonitor: Service {
    let context: NodeContext

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                let problems = await context.readiness.call()
                context.lastReadiness.set(problems)
                // Once a second at most: each look is a store query, from every process.
                try? await Task.sleep(for: .milliseconds(max(1_000, context.configuration.heartbeat.intervalMs)))
            }
        }
    }
}

/// The latest value something reported, read without waiting on whatever produces it.
public final class Latest<Value: Sendable>: Sendable {
    private let latest = Mutex<Value?>(nil)
    public init() {}
    public func set(_ value: Value?) { latest.withLock { $0 = value } }
    public var value: Value? { latest.withLock { $0 } }
}
