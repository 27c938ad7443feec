/// Everything that changes a meeting. Accepted operations are the meeting's log: replaying
/// them in seq order rebuilds the state.
///
/// On the wire an operation is a JSON object with exactly one key, the operation's kind,
/// whose value holds its arguments: `{"chat": {"text": "hi"}}`, `{"lock": {}}`.
public enum Operation: Codable, Equatable, Sendable {
    // Issued by the server on behalf of a participant's connection, never by a client.
    case join(participant: ParticipantID, name: String, role: Role)
    case leave(participant: ParticipantID)
    case presence(participant: ParticipantID, presence: Presence)

    // Roles.
    case handOverHost(to: ParticipantID)
    case setPresenter(to: ParticipantID)

    // Messages.
    case chat(text: String)
    case privateMessage(to: ParticipantID, text: String)

    // Documents and whiteboards.
    case addDocument(id: DocumentID, title: String, pages: [PageID])
    case addWhiteboard(id: DocumentID, title: String)
    case addWhiteboardPage(document: DocumentID, page: PageID)
    case turnPage(to: PageID)

    // Annotations.
    case draw(page: PageID, stroke: StrokeID, tool: Tool, color: String, width: Double,
              points: [Point], text: String?)
    case erase(page: PageID, stroke: StrokeID)
    case clearPage(page: PageID)

    // Polls.
    case createPoll(id: PollID, question: String, options: [String])
    case vote(poll: PollID, option: Int)
    case closePoll(poll: PollID)

    // Application and screen sharing.
    case startShare(kind: ShareKind, title: String)
    case stopShare
    case requestControl
    case grantControl(to: ParticipantID)
    case revokeControl
    case releaseControl

    // Meeting.
    case lock
    case unlock
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
    case system
    case participant(ParticipantID)

    public var participantID: ParticipantID? {
        if case .participant(let id) = self { return id }
        return nil
    }

    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        self = raw == "system" ? .system : .participant(ParticipantID(raw))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    public var description: String {
        switch self {
        case .system: "system"
        case .participant(let id): id.rawValue
        }
    }
}
