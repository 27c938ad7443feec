/// Everything that changes a meeting. Accepted operations are the meeting's log: replaying
/// them in seq order rebuilds the state.
///
/// On the wire an operation is a JSON object with exactly one key, the operation's kind,
/// whose value holds its arguments: `{"chat": {"text": "hi"}}`, `{"lock": {}}`.
public enum MeetingOp: Codable, Equatable, Sendable {
    // Issued by the server on behalf of a participant's connection, never by a client.
    /// Adds the participant as `connected` (or brings back one who left). `role` is what the
    /// token grants; read the role they get from the state, not from this op.
    case join(participant: ParticipantID, name: String, role: Role)
    /// The participant leaves for good: presence `.left`, role attendee, their share and
    /// control token given up.
    case leave(participant: ParticipantID)
    /// The participant's connection dropped (`.reconnecting`) or came back (`.connected`).
    case presence(participant: ParticipantID, presence: Presence)

    // Roles.
    /// The host makes `to` the host and becomes an attendee. Host only.
    case handOverHost(to: ParticipantID)
    /// Makes `to` the only presenter. Host only.
    case setPresenter(to: ParticipantID)

    // Messages.
    /// A public chat message of 1 to ``ModelLimits/textLength`` characters.
    case chat(text: String)
    /// A message only `to` and the sender see; the others get its seq, redacted.
    case privateMessage(to: ParticipantID, text: String)

    // Documents and whiteboards.
    /// Adds a document whose pages were uploaded already. Presenter or host.
    case addDocument(id: DocumentID, title: String, pages: [PageID])
    /// Adds a whiteboard with one blank page, ``Meeting/firstWhiteboardPage(of:)``. Presenter or host.
    case addWhiteboard(id: DocumentID, title: String)
    /// Appends a blank page to a whiteboard. Presenter or host.
    case addWhiteboardPage(document: DocumentID, page: PageID)
    /// Moves everyone to `to`. The presenter only; a host who is not presenting may not.
    case turnPage(to: PageID)

    // Annotations.
    /// Adds a stroke to a page. `color` is `#rrggbb`, `width` in (0, 100]; see ``Stroke``.
    case draw(page: PageID, stroke: StrokeID, tool: Tool, color: String, width: Double,
              points: [Point], text: String?)
    /// Removes a stroke: its author's, or anyone's for the presenter or the host.
    case erase(page: PageID, stroke: StrokeID)
    /// Removes every stroke on the page. Presenter or host.
    case clearPage(page: PageID)

    // Polls.
    /// Opens a poll with 2 to 20 options. Presenter or host.
    case createPoll(id: PollID, question: String, options: [String])
    /// Votes for the option at index `option`, from 0; once per poll.
    case vote(poll: PollID, option: Int)
    /// Closes a poll; its votes stay. Its creator or the host.
    case closePoll(poll: PollID)

    // Application and screen sharing.
    /// Starts a screen or application share. Presenter or host; one share at a time.
    case startShare(kind: ShareKind, title: String)
    /// Ends the share. The sharer or the host.
    case stopShare
    /// Asks the sharer for the control token.
    case requestControl
    /// Gives `to` the control token, replacing any holder. The sharer only.
    case grantControl(to: ParticipantID)
    /// Takes the control token back from its holder. The sharer only.
    case revokeControl
    /// Gives the control token back. Its holder only.
    case releaseControl

    // Meeting.
    /// Refuses new joins, except with a host token. Host only; idempotent.
    case lock
    /// Lets people join again. Host only; idempotent.
    case unlock
    /// Ends the meeting for good: every later op is refused and the server closes every
    /// connection. Host only.
    case end

    /// The wire name of this operation's kind.
    public var kind: String {
        switch self {
        case .join: "join"
        case .leave: "leave"
        case .presence: "presence"
        case .handOverHost: "handOverHost"
        case .setPresenter: "setPresenter"
        case .chat: "chat"
        case .privateMessage: "privateMessage"
        case .addDocument: "addDocument"
        case .addWhiteboard: "addWhiteboard"
        case .addWhiteboardPage: "addWhiteboardPage"
        case .turnPage: "turnPage"
        case .draw: "draw"
        case .erase: "erase"
        case .clearPage: "clearPage"
        case .createPoll: "createPoll"
        case .vote: "vote"
        case .closePoll: "closePoll"
        case .startShare: "startShare"
        case .stopShare: "stopShare"
        case .requestControl: "requestControl"
        case .grantControl: "grantControl"
        case .revokeControl: "revokeControl"
        case .releaseControl: "releaseControl"
        case .lock: "lock"
        case .unlock: "unlock"
        case .end: "end"
        }
    }

    /// Kinds only the server may issue; a client sending one is refused with `forbidden`.
    public static let systemKinds: Set<String> = ["join", "leave", "presence"]

    /// Every kind, as spelled on the wire.
    public static let allKinds: Set<String> = [
        "join", "leave", "presence", "handOverHost", "setPresenter", "chat", "privateMessage",
        "addDocument", "addWhiteboard", "addWhiteboardPage", "turnPage", "draw", "erase",
        "clearPage", "createPoll", "vote", "closePoll", "startShare", "stopShare",
        "requestControl", "grantControl", "revokeControl", "releaseControl", "lock", "unlock", "end",
    ]

    /// The participant this operation is addressed to, when only that participant and the
    /// sender may see it.
    public var privateRecipient: ParticipantID? {
        if case .privateMessage(let to, _) = self { return to }
        return nil
    }
}

/// Who issued an operation.
public enum Issuer: Codable, Hashable, Sendable, CustomStringConvertible {
    /// The server, for joins, leaves and presence changes.
    case system
    /// A participant, for the ops they sent.
    case participant(ParticipantID)

    /// The participant, or nil for `.system`.
    public var participantID: ParticipantID? {
        if case .participant(let id) = self { return id }
        return nil
    }

    /// Reads `"system"` or a participant id, as a plain string.
    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        self = raw == "system" ? .system : .participant(ParticipantID(raw))
    }

    /// Writes `"system"` or the participant id, as a plain string.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    /// `system` or the participant id.
    public var description: String {
        switch self {
        case .system: "system"
        case .participant(let id): id.rawValue
        }
    }
}
