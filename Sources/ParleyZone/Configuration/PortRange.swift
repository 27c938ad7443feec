/// A range of TCP ports a zone's processes listen on (besides the public port): each process
/// takes the first free one in its own order of the range.
public struct PortRange: Codable, Equatable, Sendable {
    public var first: Int
    public var last: Int

    public init(first: Int, last: Int) {
        self.first = first
        self.last = last
    }

    /// Every port of the range, in the order `process` tries them: starting at a place its
    /// name fixes, so that processes starting together on one machine mostly try different
    /// ports first, and a process gets the same port again after a restart when it is free.
    public func order(for process: String) -> [Int] {
        let count = last - first + 1
        guard count > 0 else { return [] }
        let start = Int(Self.fnv1a(process) % UInt64(count))
        return (0..<count).map { first + (start + $0) % count }
    }

    /// FNV-1a: stable across runs and machines, unlike `Hasher`.
    static func fnv1a(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return hash
    }
}
