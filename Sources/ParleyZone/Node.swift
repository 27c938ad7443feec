/// The name of one logical server in a zone, unique within it: `collab-1`, `manager-2`.
///
/// Names are stable across restarts: a restarted process keeps its name, so the manager and
/// the operator see one server that came back, not a new one.
public struct NodeName: RawRepresentable, Hashable, Comparable, Codable, Sendable, CustomStringConvertible,
    ExpressibleByStringLiteral
{
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public var description: String { rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(String.self)
    }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// What a logical server does in the zone.
public enum NodeRole: String, Codable, Sendable, CaseIterable {
    /// Places meetings, promotes standbys, answers the locator. One primary at a time,
    /// elected through a lease in the store; the others stand by.
    case manager
    /// Hosts meetings and their client connections, and standby copies of other meetings.
    case collab
    /// The public HTTP front: meeting and token API, the locator, later the web pages.
    case web
    /// The log, license and ping services, in one process or several.
    case services
}

/// The small services of a zone; a `services` process runs the ones its entry lists.
public enum ZoneService: String, Codable, Sendable, CaseIterable {
    /// Records joins and leaves (who, when, where) in the store.
    case log
    /// Enforces participant limits at join time across all collaboration servers.
    case license
    /// Answers clients that probe for the fastest server or zone.
    case ping
}
