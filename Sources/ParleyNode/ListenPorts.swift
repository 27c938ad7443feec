import ParleyZone
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The port a zone listener binds: 0 (the system chooses) without a configured range, or the
/// first port of the range, in the process's own order, that can be bound on `host` now.
///
/// Another process may take the port between this look and the listener's bind; the
/// listener then fails to start and the supervisor starts the process again, which looks
/// again. Each process starting at its own place in the range makes that rare.
enum ListenPorts {
    /// Ports this process picked already: its listeners pick before any of them binds (the
    /// metrics listener binds at once, the client port only once the store is open), so a
    /// port that is free now may be one another listener here is about to take.
    private static let picked = Mutex<Set<Int>>([])

    static func pick(_ range: PortRange?, host: String, process: NodeName) throws(PortRangeExhausted) -> Int {
        guard let range else { return 0 }
        for port in range.order(for: process.rawValue) where canBind(host: host, port: port) {
            if picked.withLock({ $0.insert(port).inserted }) { return port }
        }
        throw PortRangeExhausted(range: range, host: host)
    }

    /// Binds and closes a TCP socket, with SO_REUSEADDR as the listener will (so a port whose
    /// last connections linger in TIME_WAIT counts as free).
    static func canBind(host: String, port: Int) -> Bool {
        var v4 = in_addr(), v6 = in6_addr()
        let family: Int32
        if inet_pton(AF_INET, host, &v4) == 1 {
            family = AF_INET
        } else if inet_pton(AF_INET6, host, &v6) == 1 {
            family = AF_INET6
        } else {
            // A name: any address of this machine will do for the look.
            family = AF_INET
            v4.s_addr = INADDR_ANY
        }
        #if canImport(Glibc)
        let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(family, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if family == AF_INET {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr = v4
            return tryBind(fd, to: address)
        }
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_port = in_port_t(UInt16(port).bigEndian)
        address.sin6_addr = v6
        return tryBind(fd, to: address)
    }

    private static func tryBind<Address>(_ fd: Int32, to address: Address) -> Bool {
        withUnsafePointer(to: address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<Address>.size)) == 0 }
        }
    }
}

/// Every port of the configured range is taken on this machine.
struct PortRangeExhausted: Error, CustomStringConvertible {
    let range: PortRange
    let host: String
    var description: String {
        "every port of the configured range \(range.first)-\(range.last) is in use on \(host); widen \"ports\" in the configuration"
    }
}
