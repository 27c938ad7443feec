/// The state of one meeting. A pure value: it changes only through ``apply(_:by:at:seq:)``,
/// which is deterministic, so replaying the same log always yields the same state.
public struct Meeting: Codable, Equatable, Sendable {
    public var id: MeetingID
    public var title: String
    public var settings: MeetingSettings
    /// In join order; a participant who left stays listed with presence `.left`.
    public var participants: [Participant]
    public var chat: [ChatMessage]
    public var privateMessages: [PrivateMessage]
    public var documents: [Document]
    /// The page everyone follows; only the presenter moves it.
    public var currentPage: PageID?
    public var annotations: [PageAnnotations]
    public var polls: [Poll]
    public var share: ShareSession?
    public var locked: Bool
    public var ended: Bool

    public init(id: MeetingID, title: String, settings: MeetingSettings = MeetingSettings()) {
        self.id = id
        self.title = title
        self.settings = settings
        participants = []
        chat = []
        privateMessages = []
        documents = []
        currentPage = nil
        annotations = []
        polls = []
        share = nil
        locked = false
        ended = false
    }

    public var host: Participant? { participants.first { $0.role == .host && $0.presence != .left } }
    public var presenter: Participant? { participants.first { $0.isPresenter && $0.presence != .left } }

    /// The role someone whose token says `requested` gets on joining now: a meeting has one
    /// host, so a second host token joins as an attendee while a host is present. A `join`
    /// event carries the token's role (which admits a host token into a locked or full
    /// meeting); applying it gives this one.
    public func roleOnJoining(_ requested: Role) -> Role {
        requested == .host && host != nil ? .attendee : requested
    }

    public func participant(_ id: ParticipantID) -> Participant? {
        participants.first { $0.id == id }
    }

    /// What `viewer` may see: private messages between other people are removed.
    public func visible(to viewer: ParticipantID) -> Meeting {
        var copy = self
        copy.privateMessages.removeAll { $0.from != viewer && $0.to != viewer }
        return copy
    }
}

public struct MeetingSettings: Codable, Equatable, Sendable {
    /// 0 means no limit.
    public var maxParticipants: Int
    public var features: Features

    public init(maxParticipants: Int = 0, features: Features = Features()) {
        self.maxParticipants = maxParticipants
        self.features = features
    }
}

public struct Features: Codable, Equatable, Sendable {
    public var chat: Bool
    public var privateChat: Bool
    public var annotation: Bool
    public var polls: Bool
    public var applicationSharing: Bool

    public init(chat: Bool = true, privateChat: Bool = true, annotation: Bool = true,
                polls: Bool = true, applicationSharing: Bool = true) {
        self.chat = chat
        self.privateChat = privateChat
        self.annotation = annotation
        self.polls = polls
        self.applicationSharing = applicationSharing
    }
}

public enum Role: String, Codable, Sendable, CaseIterable {
    case host, presenter, attendee
}

public enum Presence: String, Codable, Sendable, CaseIterable {
    case connected, reconnecting, left
}

public struct Participant: Codable, Equatable, Sendable {
    public var id: ParticipantID
    public var name: String
    public var role: Role
    /// The host may also present; `isPresenter` says who turns pages.
    public var isPresenter: Bool
    public var presence: Presence
    public var joinedAt: Millis
}

public struct ChatMessage: Codable, Equatable, Sendable {
    public var seq: Seq
    public var from: ParticipantID
    public var text: String
    public var at: Millis
}

public struct PrivateMessage: Codable, Equatable, Sendable {
    public var seq: Seq
    public var from: ParticipantID
    public var to: ParticipantID
    public var text: String
    public var at: Millis
}

public struct Document: Codable, Equatable, Sendable {
    public var id: DocumentID
    public var title: String
    /// Stable page ids; clients fetch a page's content by id and cache it.
    public var pages: [PageID]
    public var isWhiteboard: Bool
}

public struct PageAnnotations: Codable, Equatable, Sendable {
    public var page: PageID
    public var strokes: [Stroke]
}

public enum Tool: String, Codable, Sendable, CaseIterable {
    case pen, highlighter, line, rectangle, ellipse, text
}

public struct Point: Codable, Equatable, Sendable {
    public var x: Double
    public var y: Double
    public init(x: Double, y: Double) { self.x = x; self.y = y }
}

public struct Stroke: Codable, Equatable, Sendable {
    public var id: StrokeID
    public var author: ParticipantID
    public var tool: Tool
    /// CSS colour, `#rrggbb`.
    public var color: String
    public var width: Double
    public var points: [Point]
    public var text: String?
}

public struct Poll: Codable, Equatable, Sendable {
    public var id: PollID
    public var creator: ParticipantID
    public var question: String
    public var options: [String]
    /// Keyed by participant so a voter can vote once; kept in vote order.
    public var votes: [Vote]
    public var closed: Bool

    public struct Vote: Codable, Equatable, Sendable {
        public var voter: ParticipantID
        public var option: Int
    }

    /// Votes per option, in option order.
    public var results: [Int] {
        var counts = Array(repeating: 0, count: options.count)
        for vote in votes where counts.indices.contains(vote.option) { counts[vote.option] += 1 }
        return counts
    }
}

public enum ShareKind: String, Codable, Sendable, CaseIterable {
    case screen, application
}

/// A screen or application share. Input to the shared application is allowed only from
/// the holder of the control token.
public struct ShareSession: Codable, Equatable, Sendable {
    public var sharer: ParticipantID
    public var kind: ShareKind
    public var title: String
    public var controlHolder: ParticipantID?
    /// Requests waiting for the sharer's decision, oldest first.
    public var controlRequests: [ParticipantID]
}
