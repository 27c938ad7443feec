import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A blocking loopback TCP client: what a misbehaving client does, without an HTTP library.
///
/// Reads block, so they run on a thread of their own: on the concurrency pool (as many
/// threads as cores) two blocked reads would starve the servers under test.
public struct RawConnection: Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    let fd: Int32

    public init(port: Int) throws {
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
        guard connected == 0 else { throw Failure(description: "connect failed: errno \(errno)") }
    }

    public func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        guard Glibc.send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else { throw Failure(description: "send failed") }
    }

    /// One HTTP response: its head and as much body as its `Content-Length` says (or what
    /// came before the server closed, or the 10 s read bound ran out). The connection stays open.
    public func readResponse() async -> String {
        await Self.offPool { blockingReadResponse() }
    }

    private func blockingReadResponse() -> String {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4_096)
        let blankLine = Array("\r\n\r\n".utf8)
        while true {
            if let headEnd = received.indices.first(where: { received[$0...].starts(with: blankLine) }) {
                let head = String(decoding: received[..<headEnd], as: UTF8.self).lowercased()
                let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                    .flatMap { Int($0.dropFirst("content-length:".count).filter { $0 != " " }) } ?? 0
                if received.count - (headEnd + blankLine.count) >= length { return String(decoding: received, as: UTF8.self) }
            }
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { return String(decoding: received, as: UTF8.self) }
            received += buffer[0..<count]
        }
    }

    public func close() { Glibc.close(fd) }

    /// Everything the server sends until it closes (or the 10 s read bound runs out); then closed here too.
    public func readUntilClosed() async -> [UInt8] {
        await Self.offPool { blockingReadUntilClosed() }
    }

    private func blockingReadUntilClosed() -> [UInt8] {
        defer { Glibc.close(fd) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4_096)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { return received }
            received += buffer[0..<count]
        }
    }

    private static func offPool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: body()) }.start()
        }
    }
}
