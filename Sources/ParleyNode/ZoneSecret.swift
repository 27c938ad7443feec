import Crypto
import FoundationEssentials
import ParleyZone

/// The shared secret that authenticates links between a zone's processes.
///
/// The connecting process proves it knows the secret without sending it: its
/// `X-Parley-Zone` header is `name.timestampMs.hmac`, where `hmac` is HMAC-SHA256 over
/// `name.timestampMs`. A header older (or newer) than ``maxSkewMs`` is refused, which bounds
/// how long a captured header could be replayed.
public struct ZoneSecret: Sendable {
    public static let headerName = "X-Parley-Zone"
    public static let maxSkewMs: Int64 = 30_000

    private let key: SymmetricKey

    public init(hex: String) throws(ZoneSecretError) {
        let text = hex.trimmingCharacters(in: .whitespacesAndNewlines)
        guard text.count >= 32 else { throw .malformed("the zone secret must be at least 32 hex digits") }
        guard let bytes = Self.bytes(hex: text) else { throw .malformed("the zone secret must be an even number of hex digits") }
        key = SymmetricKey(data: bytes)
    }

    /// Reads the secret the supervisor wrote (`ZonePaths.zoneSecret`).
    public init(contentsOf path: String) throws(ZoneSecretError) {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw .unreadable("cannot read the zone secret at \(path): \(error)")
        }
        try self.init(hex: String(decoding: data, as: UTF8.self))
    }

    /// The header value that authenticates `name` at `nowMs`.
    public func header(for name: NodeName, nowMs: Int64) -> String {
        let claim = "\(name.rawValue).\(nowMs)"
        let code = HMAC<SHA256>.authenticationCode(for: Array(claim.utf8), using: key)
        let digits = Array("0123456789abcdef")
        var hex = ""
        for byte in code { hex.append(digits[Int(byte >> 4)]); hex.append(digits[Int(byte & 15)]) }
        return claim + "." + hex
    }

    /// The process a header proves, or why it proves nothing.
    public func verify(_ header: String, nowMs: Int64) -> Result<NodeName, ZoneSecretError> {
        let parts = header.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let sentAt = Int64(parts[1]), parts[2].count == 64 else {
            return .failure(.refused("malformed \(Self.headerName) header"))
        }
        guard abs(nowMs - sentAt) <= Self.maxSkewMs else {
            return .failure(.refused("\(Self.headerName) header is \(abs(nowMs - sentAt)) ms away from this clock"))
        }
        guard let mac = Self.bytes(hex: parts[2]) else { return .failure(.refused("malformed \(Self.headerName) header")) }
        let claim = Array("\(parts[0]).\(parts[1])".utf8)
        guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: claim, using: key) else {
            return .failure(.refused("\(Self.headerName) header is not signed with this zone's secret"))
        }
        return .success(NodeName(String(parts[0])))
    }

    private static func bytes(hex: some StringProtocol) -> [UInt8]? {
        guard hex.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            guard let byte = UInt8(hex[index..<next], radix: 16) else { return nil }
            bytes.append(byte)
            index = next
        }
        return bytes
    }
}

public enum ZoneSecretError: Error, Equatable, Sendable, CustomStringConvertible {
    case unreadable(String)
    case malformed(String)
    case refused(String)

    public var description: String {
        switch self {
        case .unreadable(let why), .malformed(let why), .refused(let why): why
        }
    }
}
