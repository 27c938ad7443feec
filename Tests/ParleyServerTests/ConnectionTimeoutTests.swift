import Foundation
import Logging
import ParleyServer
import ParleyTelemetry
import ParleyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Slow or idle HTTP clients cannot hold connections open: a raw TCP client, byte for byte.
@Suite("Connections: header-read and idle timeouts")
struct ConnectionTimeoutTests {
    @Test("a first request head that never completes is closed at headerTimeoutSeconds; a served connection left idle is closed at httpIdleTimeoutSeconds")
    func slowAndIdleConnectionsAreClosed() async throws {
        try await withServer({ $0.headerTimeoutSeconds = 1; $0.httpIdleTimeoutSeconds = 2 }) { server in
            // Slowloris: a head without its blank line, then nothing.
            let slow = try RawConnection(port: server.port)
            try slow.send("GET /health HTTP/1.1\r\nHost: parley\r\nX-Slow: 1\r\n")
            let slowStarted = ContinuousClock.now
            #expect(await slow.readUntilClosed().isEmpty, "closed without an answer")
            let slowTook = ContinuousClock.now - slowStarted
            #expect(slowTook >= .milliseconds(900) && slowTook < .seconds(5), "closed after \(slowTook)")

            // Blank lines first (the parser skips them) do not count as a finished head.
            let sly = try RawConnection(port: server.port)
            try sly.send("\r\n\r\nGET /health HTTP/1.1\r\nHost: parley\r\n")
            let slyStarted = ContinuousClock.now
            #expect(await sly.readUntilClosed().isEmpty)
            #expect(ContinuousClock.now - slyStarted < .seconds(5), "blank lines first bought more time")

            // A complete request is answered, and the connection kept alive until idle.
            let idle = try RawConnection(port: server.port)
            try idle.send("GET /health HTTP/1.1\r\nHost: parley\r\n\r\n")
            let idleStarted = ContinuousClock.now
            let answer = String(decoding: await idle.readUntilClosed(), as: UTF8.self)
            let idleTook = ContinuousClock.now - idleStarted
            #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer.prefix(80))")
            #expect(idleTook >= .milliseconds(1_900) && idleTook < .seconds(6), "closed after \(idleTook), the idle timeout is 2 s")
        }
    }

    @Test("a metrics listener closes a connection that stalls before its request head is complete")
    func metricsListenerHeadDeadline() async throws {
        let (ports, sink) = AsyncStream<Int>.makeStream()
        let app = MetricsEndpoint.application(host: "127.0.0.1", bind: 0, path: "/metrics", metrics: .prometheus(),
                                              port: { sink.yield($0) }, headTimeout: .seconds(1),
                                              logger: Logger(label: "test"), collect: {})
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.run() }
            defer { group.cancelAll() }
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            let slow = try RawConnection(port: port)
            try slow.send("GET /metrics HTTP/1.1\r\nHost: parley\r\n")
            let started = ContinuousClock.now
            #expect(await slow.readUntilClosed().isEmpty)
            let took = ContinuousClock.now - started
            #expect(took >= .milliseconds(900) && took < .seconds(5), "closed after \(took)")
        }
    }
}
