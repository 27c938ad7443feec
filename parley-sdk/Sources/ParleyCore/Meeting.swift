/// The state of one meeting. A pure value: it changes only through ``apply(_:by:at:seq:)``,
/// which is deterministic, so replaying the same log always yields the same state.
public struct Meeting: Codable, Equatable, Sendable {
    /// Chosen by the server when the meeting is created.
    public var id: MeetingID
    /// At most ``ModelLimits/titleLength`` characters.
    public var title: String
    /// Fixed when the meeting is created; no op changes them.
    public var settings: MeetingSettings
    /// In join order; a participant who left stays listed with presence `.left`.
    public var participants: [Participant]
    /// Oldest first, the newest ``ModelLimits/messageHistory`` messages only: older ones stay in
    /// the log but leave the state.
    public var chat: [ChatMessage]
    /// Oldest first, the newest ``ModelLimits/messageHistory`` only. A participant's copy holds
    /// only the ones they sent or received.
    public var privateMessages: [PrivateMessage]
    /// Documents and whiteboards, in the order they were added.
    public var documents: [Document]
    /// The page everyone follows; only the presenter moves it.
    public var currentPage: PageID?
    /// Strokes per page; a page without strokes is not listed.
    public var annotations: [PageAnnotations]
    /// Open and closed polls, in the order they were created.
    public var polls: [Poll]
    /// The screen or application share running now, if any.
    public var share: ShareSession?
    /// While true, joins are refused (`meeting_locked`), except with a host token.
    public var locked: Bool
    /// Final: once true, every op is refused with `meeting_ended`.
    public var ended: Bool

    /// An empty meeting: nobody is in it and nothing is shared yet.
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

    /// The host, if present. A meeting has at most one; a host who left does not count.
    public var host: Participant? { participants.first { $0.role == .host && $0.presence != .left } }
    /// Who turns pages now, if anyone present does.
    public var presenter: Participant? { participants.first { $0.isPresenter && $0.presence != .left } }

    /// The role someone whose token says `requested` gets on joining now: a meeting has one
    /// host, so a second host token joins as an attendee while a host is present. A `join`
    /// event carries the token's role (which admits a host token into a locked or full
    /// meeting); applying it gives this one.
    public func roleOnJoining(_ requested: Role) -> Role {
        requested == .host && host != nil ? .attendee : requested
    }

    /// The participant with this id, including one who left; nil if they never joined.
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

/// What a meeting allows. Fixed when it is created.
public struct MeetingSettings: Codable, Equatable, Sendable {
    /// 0 means no limit.
    public var maxParticipants: Int
    /// Which features are on.
    public var features: Features

    /// No participant limit and every feature on, unless said otherwise.
    public init(maxParticipants: Int = 0, features: Features = Features()) {
        self.maxParticipants = maxParticipants
        self.features = features
    }
}

/// Features a meeting can turn off. An op that needs a feature that is off is refused with
/// `feature_disabled`.
public struct Features: Codable, Equatable, Sendable {
    /// Public chat messages.
    public var chat: Bool
    /// Private messages between two participants.
    public var privateChat: Bool
    /// Drawing on pages: `draw`, `erase` and `clearPage`.
    public var annotation: Bool
    /// Creating polls and voting.
    public var polls: Bool
    /// Screen and application shares.
    public var applicationSharing: Bool

    /// Every feature on unless said otherwise.
    public init(chat: Bool = true, privateChat: Bool = true, annotation: Bool = true,
                polls: Bool = true, applicationSharing: Bool = true) {
        self.chat = chat
        self.privateChat = privateChat
        self.annotation = annotation
        self.polls = polls
        self.applicationSharing = applicationSharing
    }
}

/// What a participant may do. A meeting has one host at a time; the presenter
/// (``Participant/isPresenter``) turns pages.
public enum Role: String, Codable, Sendable, CaseIterable {
    case host, presenter, attendee
}

/// Whether a participant is there. `.reconnecting` is a dropped connection that keeps its seat
/// (and counts toward `maxParticipants`); `.left` is for good.
public enum Presence: String, Codable, Sendable, CaseIterable {
    case connected, reconnecting, left
}

/// Someone in the meeting, present or gone (``presence`` `.left`).
public struct Participant: Codable, Equatable, Sendable {
    /// Fixed by their token.
    public var id: ParticipantID
    /// The display name their token gives, trimmed.
    public var name: String
    /// The role they have now. It may differ from their token's: a second host token joins as an attendee.
    public var role: Role
    /// The host may also present; `isPresenter` says who turns pages.
    public var isPresenter: Bool
    /// Connected, reconnecting (dropped, seat kept) or left.
    public var presence: Presence
    /// When they last joined, in milliseconds since the Unix epoch.
    public var joinedAt: Millis
}

/// A public chat message.
public struct ChatMessage: Codable, Equatable, Sendable {
    /// The seq of the entry that added it: unique, so it serves as an id.
    public var seq: Seq
    /// Its sender.
    public var from: ParticipantID
    /// 1 to ``ModelLimits/textLength`` characters.
    public var text: String
    /// The commit time, in milliseconds since the Unix epoch.
    public var at: Millis
}

/// A message that only its sender and its recipient see.
public struct PrivateMessage: Codable, Equatable, Sendable {
    /// The seq of the entry that added it. Other participants get this seq too, redacted.
    public var seq: Seq
    /// Its sender.
    public var from: ParticipantID
    /// Its recipient.
    public var to: ParticipantID
    /// 1 to ``ModelLimits/textLength`` characters.
    public var text: String
    /// The commit time, in milliseconds since the Unix epoch.
    public var at: Millis
}

/// A document (pages converted from an upload) or a whiteboard (blank pages).
public struct Document: Codable, Equatable, Sendable {
    /// Chosen by whoever added it.
    public var id: DocumentID
    /// At most ``ModelLimits/titleLength`` characters.
    public var title: String
    /// Stable page ids; clients fetch a page's content by id and cache it.
    public var pages: [PageID]
    /// True for a whiteboard: its pages are blank and the presenter can add more.
    public var isWhiteboard: Bool
}

/// The strokes on one page.
public struct PageAnnotations: Codable, Equatable, Sendable {
    /// The page they are on.
    public var page: PageID
    /// In the order they were drawn.
    public var strokes: [Stroke]
}

/// How a stroke is drawn.
public enum Tool: String, Codable, Sendable, CaseIterable {
    case pen, highlighter, line, rectangle, ellipse, text
}

/// A point on a page. By convention (the rules do not check it), each coordinate is a
/// fraction of the page, from 0 to 1, measured from the top-left corner.
public struct Point: Codable, Equatable, Sendable {
    /// Across, by convention as a fraction of the page's width.
    public var x: Double
    /// Down, by convention as a fraction of the page's height.
    public var y: Double
    /// The point (`x`, `y`).
    public init(x: Double, y: Double) { self.x = x; self.y = y }
}

/// One mark drawn on a page.
public struct Stroke: Codable, Equatable, Sendable {
    /// Chosen by its author; unique on its page.
    public var id: StrokeID
    /// Who drew it. They may erase it, as may the presenter and the host.
    public var author: ParticipantID
    /// How it is drawn.
    public var tool: Tool
    /// CSS colour, `#rrggbb`.
    public var color: String
    /// In (0, 100]; by convention, thousandths of the page's width.
    public var width: Double
    /// 1 to ``ModelLimits/strokePoints`` points, all finite.
    public var points: [Point]
    /// The label of a `.text` stroke.
    public var text: String?
}

/// A question with options. Each participant votes once.
public struct Poll: Codable, Equatable, Sendable {
    /// Chosen by its creator.
    public var id: PollID
    /// Who created it. They may close it, as may the host.
    public var creator: ParticipantID
    /// 1 to ``ModelLimits/textLength`` characters.
    public var question: String
    /// The choices, in order; a vote names one by its index.
    public var options: [String]
    /// Keyed by participant so a voter can vote once; kept in vote order.
    public var votes: [Vote]
    /// A closed poll refuses votes; the votes cast stay.
    public var closed: Bool

    /// One participant's vote.
    public struct Vote: Codable, Equatable, Sendable {
        /// Who voted.
        public var voter: ParticipantID
        /// An index into ``Poll/options``, from 0.
        public var option: Int
    }

    /// Votes per option, in option order.
    public var results: [Int] {
        var counts = Array(repeating: 0, count: options.count)
        for vote in votes where counts.indices.contains(vote.option) { counts[vote.option] += 1 }
        return counts
    }
}

/// What a share shows.
public enum ShareKind: String, Codable, Sendable, CaseIterable {
    case screen, application
}

/// A screen or application share. Input to the shared application is allowed only from
/// the holder of the control token.
public struct ShareSession: Codable, Equatable, Sendable {
    /// Who is sharing; only they send frames.
    public var sharer: ParticipantID
    /// A screen or one application.
    public var kind: ShareKind
    /// What the sharer called it.
    public var title: String
    /// Who may send input now. While it is nil, the sharer alone may.
    public var controlHolder: ParticipantID?
    /// Requests waiting for the sharer's decision, oldest first.
    public var controlRequests: [ParticipantID]
}
