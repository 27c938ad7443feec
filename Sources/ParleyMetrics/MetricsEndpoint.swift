import Hummingbird
import Logging

/// `GET /metrics` (or the configured path): the process's metrics in the Prometheus text
/// format. Figures that are a state rather than a count (connections, meetings, queue
/// depths) are read by `collect` just before each scrape.
public enum MetricsEndpoint {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Adds the route to a router the process serves anyway (`parley serve --single`).
    public static func route<Context: RequestContext>(on router: Router<Context>, path: String, metrics: ProcessMetrics,
                                                      collect: @escaping @Sendable () async -> Void) {
        router.get(RouterPath(path)) { _, _ in
            await collect()
            return Response(status: .ok, headers: [.contentType: contentType],
                            body: .init(byteBuffer: ByteBuffer(string: metrics.exposition())))
        }
    }

    /// A listener of its own, for processes whose other ports are for clients or peers.
    /// - Parameter port: announced once listening.
    public static func application(host: String, bind: Int, path: String, metrics: ProcessMetrics, port: @escaping @Sendable (Int) async -> Void,
                                   logger: Logger, collect: @escaping @Sendable () async -> Void) -> some ApplicationProtocol {
        let router = Router()
        route(on: router, path: path, metrics: metrics, collect: collect)
        return Application(router: router, configuration: .init(address: .hostname(host, port: bind), serverName: "parley-metrics"),
                           onServerRunning: { channel in await port(channel.localAddress?.port ?? 0) }, logger: logger)
    }
}
