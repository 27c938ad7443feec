import FoundationEssentials
import Hummingbird
import Logging
import ParleyServer
import ParleyTelemetry
import ParleyZone
import ServiceLifecycle

/// A zone process's `/metrics` listener: a port of its own (from `ports`, or one the system
/// chooses), apart from the ports clients and peers use, so that only the operator's
/// scraper needs to reach it. The address goes to the supervisor with the load.
struct MetricsListener: Service {
    let context: NodeContext

    func run() async throws {
        let settings = context.configuration.metrics
        guard settings.enabled, context.metrics.isOn else {
            // A service that returns ends its group: wait for the process to stop instead.
            try? await gracefulShutdown()
            return
        }
        let host = context.configuration.host
        let bind: Int
        do {
            bind = try ListenPorts.pick(context.configuration.ports, host: host, process: NodeName(context.name.rawValue + "/metrics"))
        } catch {
            // Metrics are not worth stopping a meeting host for: say so, and go on without.
            context.logger.error("metrics not served: no free port", metadata: ["error": "\(error)"])
            try? await gracefulShutdown()
            return
        }
        let (link, path, sampling) = (context.link, settings.path, context.beforeScrape)
        let readiness = context.readiness
        let app = MetricsEndpoint.application(host: host, bind: bind, path: path, metrics: context.metrics, port: { port in
            await link.metricsServed(at: "http://\(host):\(port)\(path)")
        }, logger: context.logger, readiness: {
            await readiness.call() ?? ["the process is starting"]
        }) {
            _ = await sampling.call()
        }
        do {
            try await app.run()
        } catch {
            context.logger.error("metrics listener stopped", metadata: ["error": "\(error)"])
            try? await gracefulShutdown()
        }
    }
}

/// The supervisor's `/metrics` listener, run beside it by `parley zone`: the same kind of
/// listener as a zone process's. Its address goes to `DATA/zone/supervisor-metrics-url`,
/// where `parley ctl status` finds it.
public struct SupervisorMetricsListener: Service {
    let configuration: ZoneConfiguration
    let paths: ZonePaths
    let metrics: ProcessMetrics
    let logger: Logger

    public init(configuration: ZoneConfiguration, paths: ZonePaths, metrics: ProcessMetrics, logger: Logger) {
        self.configuration = configuration
        self.paths = paths
        self.metrics = metrics
        self.logger = logger
    }

    public func run() async throws {
        try? FileManager.default.removeItem(atPath: paths.supervisorMetricsURL)
        let settings = configuration.metrics
        guard settings.enabled, metrics.isOn,
              let bind = try? ListenPorts.pick(configuration.ports, host: configuration.host, process: "supervisor/metrics")
        else {
            try? await gracefulShutdown()
            return
        }
        let (host, path, file, logger) = (configuration.host, settings.path, paths.supervisorMetricsURL, logger)
        let app = MetricsEndpoint.application(host: host, bind: bind, path: path, metrics: metrics, port: { port in
            let url = "http://\(host):\(port)\(path)"
            logger.info("supervisor metrics served", metadata: ["url": "\(url)"])
            FileManager.default.createFile(atPath: file, contents: Data("\(url)\n".utf8))
        }, logger: logger) {}
        do {
            try await app.run()
        } catch {
            logger.error("supervisor metrics listener stopped", metadata: ["error": "\(error)"])
            try? await gracefulShutdown()
        }
    }
}
