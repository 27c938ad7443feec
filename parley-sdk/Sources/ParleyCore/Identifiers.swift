/// A typed string identifier. The tag keeps a `PageID` from being passed where a `PollID`
/// is expected; on the wire every identifier is a plain JSON string.
public struct Identifier<Tag>: RawRepresentable, Hashable, Comparable, Sendable, Codable,
    ExpressibleByStringLiteral, CustomStringConvertible
{
    /// The identifier as it is spelled on the wire.
    public let rawValue: String
    /// Wraps `rawValue` as it is: nothing is checked here (the meeting rules check the ids in ops).
    public init(rawValue: String) { self.rawValue = rawValue }
    /// The same as ``init(rawValue:)``, without the label.
    public init(_ rawValue: String) { self.rawValue = rawValue }
    /// Lets a literal stand for an identifier: `let meeting: MeetingID = "m-1"`.
    public init(stringLiteral value: String) { self.rawValue = value }
    /// Reads a plain JSON string.
    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(String.self)
    }
    /// Writes a plain JSON string, not an object.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
    /// The raw value, unchanged.
    public var description: String { rawValue }
    /// Orders by raw value, as strings compare.
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Tags ``MeetingID``; it has no values.
public enum MeetingTag {}
/// Tags ``ParticipantID``; it has no values.
public enum ParticipantTag {}
/// Tags ``DocumentID``; it has no values.
public enum DocumentTag {}
/// Tags ``PageID``; it has no values.
public enum PageTag {}
/// Tags ``PollID``; it has no values.
public enum PollTag {}
/// Tags ``StrokeID``; it has no values.
public enum StrokeTag {}
/// Tags ``OpID``; it has no values.
public enum OpTag {}

/// Names a meeting; the server chooses it when the meeting is created.
public typealias MeetingID = Identifier<MeetingTag>
/// Names a participant of one meeting; the server chooses it when it issues a join token, and
/// every renewal of that token keeps it.
public typealias ParticipantID = Identifier<ParticipantTag>
/// Names a document or whiteboard; chosen by whoever adds it, unique in the meeting.
public typealias DocumentID = Identifier<DocumentTag>
/// Names a page of a document or whiteboard; unique across the whole meeting, not just its document.
public typealias PageID = Identifier<PageTag>
/// Names a poll; chosen by its creator, unique in the meeting.
public typealias PollID = Identifier<PollTag>
/// Names a stroke; chosen by its author, unique on its page.
public typealias StrokeID = Identifier<StrokeTag>
/// Chosen by the client; unique per participant. A retried op keeps its id.
public typealias OpID = Identifier<OpTag>

/// The term of the host that sequenced an entry. Epochs never decrease; a new host
/// (after a restart or a failover) always commits under a strictly greater epoch.
public struct Epoch: RawRepresentable, Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    /// The term as a number.
    public let rawValue: UInt64
    /// Wraps a term number.
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    /// The same as ``init(rawValue:)``, without the label.
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    /// Reads a plain JSON number.
    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(UInt64.self)
    }
    /// Writes a plain JSON number.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
    /// The epoch the next host claims: one more than this.
    public var next: Epoch { Epoch(rawValue + 1) }
    /// `e7` for epoch 7, as logs print it.
    public var description: String { "e\(rawValue)" }
    /// A later term is greater.
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Position in a meeting's log. Sequence numbers start at 1 and have no gaps; they keep
/// counting across epochs, so a client resumes by seq alone.
public typealias Seq = UInt64

/// Milliseconds since the Unix epoch. The model never reads a clock: time arrives as input.
public typealias Millis = Int64
