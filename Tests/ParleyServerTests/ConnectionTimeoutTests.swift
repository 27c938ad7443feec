import Foundation
import ParleyServer
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
            #expect(slow.readUntilClosed().isEmpty, "closed without an answer")
            let slowTook = ContinuousClock.now - slowStarted
            #expect(slowTook >= .milliseconds(900) && slowTook < .seconds(5), "closed after \(slowTook)")

            // Blank lines first (the parser skips them) do not count as a finished head.
            let sly = try RawConnection(port: server.port)
            try sly.send("\r\n\r\nGET /health HTTP/1.1\r\nHost: parley\r\n")
            let slyStarted = ContinuousClock.now
            #expect(sly.readUntilClosed().isEmpty)
            #expect(ContinuousClock.now - slyStarted < .seconds(5), "blank lines first bought more time")

            // A complete request is answered, and the connection kept alive until idle.
            let idle = try RawConnection(port: server.port)
            try idle.send("GET /health HTTP/1.1\r\nHost: parley\r\n\r\n")
            let idleStarted = ContinuousClock.now
            let answer = String(decoding: idle.readUntilClosed(), as: UTF8.self)
            let idleTook = ContinuousClock.now - idleStarted
            #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer.prefix(80))")
            #expect(idleTook >= .milliseconds(1_900) && idleTook < .seconds(6), "closed after \(idleTook), the idle timeout is 2 s")
        }
    }
}

/// A blocking loopback TCP client: what a misbehaving client does, without an HTTP library.
private struct RawConnection {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        // A bound on every read, so a server that never closes fails the test instead of hanging it.
        var limit = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw TestFailure("connect failed: errno \(errno)") }
    }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        guard Glibc.send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else { throw TestFailure("send failed") }
    }

    /// Everything the server sends until it closes (or the 10 s read bound runs out); then closed here too.
    func readUntilClosed() -> [UInt8] {
        defer { close(fd) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4_096)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { return received }
            received += buffer[0..<count]
        }
    }
}
