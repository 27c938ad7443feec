import FoundationEssentials
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
    /// With `readiness`, it also answers `/health` (200) and `/ready` (200, or 503 with the
    /// reasons): for processes with no HTTP port of their own (managers, services).
    public static func application(host: String, bind: Int, path: String, metrics: ProcessMetrics, port: @escaping @Sendable (Int) async -> Void,
                                   logger: Logger, readiness: (@Sendable () async -> [String])? = nil,
                                   collect: @escaping @Sendable () async -> Void) -> some ApplicationProtocol {
        let router = Router()
        route(on: router, path: path, metrics: metrics, collect: collect)
        if let readiness {
            router.get("/health") { _, _ in try json(ReadyBody(status: "ok", reasons: nil), .ok) }
            router.get("/ready") { _, _ in
                let problems = await readiness()
                return try problems.isEmpty ? json(ReadyBody(status: "ready", reasons: nil), .ok)
                    : json(ReadyBody(status: "not_ready", reasons: problems), .serviceUnavailable)
            }
        }
        // A scraper's connection left idle is closed after a minute.
        return Application(router: router, server: .http1(configuration: .init(idleTimeout: .seconds(60))),
                           configuration: .init(address: .hostname(host, port: bind), serverName: "parley-metrics"),
                           onServerRunning: { channel in await port(channel.localAddress?.port ?? 0) }, logger: logger)
    }

    /// The same body as the client port's `/ready` (`ReadyAnswer`).
    private struct ReadyBody: Encodable {
        var status: String
        var reasons: [String]?
    }

    private static func json(_ body: ReadyBody, _ status: HTTPResponse.Status) throws -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(bytes: try JSONEncoder().encode(body))))
    }
}
