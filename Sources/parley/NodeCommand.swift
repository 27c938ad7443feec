import ArgumentParser
import Logging
import Metrics
import ParleyNode
import ParleyTelemetry
import ParleyZone
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `parley node`: one logical server of a zone. The supervisor starts these; people rarely do.
struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Run one logical server of a zone (the zone's supervisor starts these).",
        discussion: """
            The process registers with the supervisor on DATA/zone/control.sock and sends it
            heartbeats. SIGTERM, SIGINT or the supervisor's stop shut it down gracefully. If the
            supervisor stays unreachable, the process stops too.
            """)

    @Option(help: "The process's name in the zone configuration, e.g. collab-1.")
    var name: String

    @Option(help: "manager, collab, web or services.")
    var role: String

    @Option(name: .customLong("data"), help: "The zone's data directory.")
    var dataDirectory: String

    @Option(help: "The zone configuration the supervisor resolved (DATA/zone/zone.json).")
    var config: String

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    /// Set by a supervisor that was itself started with it.
    @Flag(help: .hidden) var enableTestFaults = false

    func validate() throws {
        guard NodeRole(rawValue: role) != nil else {
            throw ValidationError("unknown --role '\(role)'; one of \(NodeRole.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level '\(logLevel)'") }
    }

    func run() async throws {
        // The supervisor resolved the configuration (its flags and environment over its file)
        // and checked it: read the file alone, so that nothing here overrides what it chose.
        let configuration = try ZoneConfiguration.load(from: config, environment: [:], testFaultsEnabled: enableTestFaults)
        bootstrapLogging(level: logLevel, format: LogFormat(rawValue: configuration.logs.format) ?? .text)
        let name = NodeName(name)
        let role = NodeRole(rawValue: role)!
        var logger = Logger(label: "parley.node")
        logger[metadataKey: "node"] = "\(name)"
        let paths = ZonePaths(data: dataDirectory)
        let link = SupervisorLink(name: name, socketPath: paths.controlSocket,
                                  options: .init(heartbeatIntervalMs: configuration.heartbeat.intervalMs), logger: logger)
        let metrics = configuration.metrics.enabled ? ProcessMetrics.prometheus() : .off
        // Libraries record through the process-wide factory (Hummingbird's HTTP metrics).
        if metrics.isOn { MetricsSystem.bootstrap(metrics.factory) }
        let context = NodeContext(name: name, role: role, configuration: configuration, paths: paths, link: link,
                                  metrics: metrics, tracing: configuration.tracing.make(process: name.rawValue, logger: logger),
                                  logger: logger)
        await link.reportReadiness { context.lastReadiness.value }
        // The link starts first and stops last, so the supervisor hears from the process
        // until its role has shut down.
        let services: [any Service] = [link] + NodeRoles.services(for: context)
        let group = ServiceGroup(configuration: .init(
            services: services.map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        logger.notice("node \(name) (\(role.rawValue)) up", metadata: ["pid": "\(getpid())"])
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            // The supervisor's `stop` is a SIGTERM by other means. This task only ends when
            // cancelled, so the first task to finish is always the group.
            tasks.addTask {
                for await _ in link.stops { await group.triggerGracefulShutdown() }
            }
            try await tasks.next()
            tasks.cancelAll()
        }
        logger.notice("node \(name) (\(role.rawValue)) stopped")
    }
}
