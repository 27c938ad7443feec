import FoundationEssentials
import Hummingbird
import NIOCore
import HummingbirdCore
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
                                   headTimeout: TimeAmount = .seconds(10),
                                   logger: Logger, readiness: (@Sendable () async -> [String])? = nil,
                                   collect: @escaping @Sendable () async -> Void) -> some ApplicationProtocol {
        let router = Router()
        route(on: router, path: path, metrics: metrics, collect: collect)
        if let readiness {
            router.get("/health") { _, _ in try json(ReadyAnswer(status: "ok"), .ok) }
            router.get("/ready") { _, _ in
                let problems = await readiness()
                return try json(ReadyAnswer(problems), problems.isEmpty ? .ok : .serviceUnavailable)
            }
        }
        // A scraper's connection left idle is closed after a minute; one that stalls before its
        // request head is complete, after 10 s, as on every listener.
        let server = HTTPServerBuilder { responder in
            HeadDeadlineChannel(HTTP1Channel(responder: responder, configuration: .init(idleTimeout: .seconds(60))), timeout: headTimeout)
        }
        return Application(router: router, server: server,
                           configuration: .init(address: .hostname(host, port: bind), serverName: "parley-metrics"),
                           onServerRunning: { channel in await port(channel.localAddress?.port ?? 0) }, logger: logger)
    }

    private static func json(_ body: ReadyAnswer, _ status: HTTPResponse.Status) throws -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(bytes: try JSONEncoder().encode(body))))
    }
}

/// The body of `GET /ready` wherever it is served: `{"status": "ready"}`, or
/// `{"status": "not_ready", "reasons": [...]}` (and `{"status": "ok"}` for `/health`).
public struct ReadyAnswer: Codable, Equatable, Sendable {
    public var status: String
    public var reasons: [String]?

    public init(status: String, reasons: [String]? = nil) {
        self.status = status
        self.reasons = reasons
    }

    public init(_ problems: [String]) {
        self.init(status: problems.isEmpty ? "ready" : "not_ready", reasons: problems.isEmpty ? nil : problems)
    }
}
