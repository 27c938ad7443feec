/// A typed string identifier. The tag keeps a `PageID` from being passed where a `PollID`
/// is expected; on the wire every identifier is a plain JSON string.
public struct Identifier<Tag>: RawRepresentable, Hashable, Comparable, Sendable, Codable,
    ExpressibleByStringLiteral, CustomStringConvertible
{
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }
    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(String.self)
    }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
    public var description: String { rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

public enum MeetingTag {}
public enum ParticipantTag {}
public enum DocumentTag {}
public enum PageTag {}
public enum PollTag {}
public enum StrokeTag {}
public enum OpTag {}

public typealias MeetingID = Identifier<MeetingTag>
public typealias ParticipantID = Identifier<ParticipantTag>
public typealias DocumentID = Identifier<DocumentTag>
public typealias PageID = Identifier<PageTag>
public typealias PollID = Identifier<PollTag>
public typealias StrokeID = Identifier<StrokeTag>
/// Chosen by the client; unique per participant. A retried op keeps its id.
public typealias OpID = Identifier<OpTag>

/// The term of the host that sequenced an entry. Epochs never decrease; a new host
/// (after a restart or a failover) always commits under a strictly greater epoch.
public struct Epoch: RawRepresentable, Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(UInt64.self)
    }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
    public var next: Epoch { Epoch(rawValue + 1) }
    public var description: String { "e\(rawValue)" }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Position in a meeting's log. Sequence numbers start at 1 and have no gaps; they keep
/// counting across epochs, so a client resumes by seq alone.
public typealias Seq = UInt64

/// Milliseconds since the Unix epoch. The model never reads a clock: time arrives as input.
public typealias Millis = Int64
