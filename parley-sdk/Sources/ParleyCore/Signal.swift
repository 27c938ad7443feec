/// Ephemeral signals: relayed to the other participants at once, never logged, never
/// replayed. Losing one is harmless; the next one supersedes it.
public enum Signal: Codable, Equatable, Sendable {
    /// Where this participant's cursor is; `page` is nil when it is over no page.
    case cursor(page: PageID?, x: Double, y: Double)
    /// Where this participant points, for the others to look at; `page` as for `cursor`.
    case pointer(page: PageID?, x: Double, y: Double)
    /// Whether this participant is typing a chat message.
    case typing(active: Bool)
    /// One frame of a screen or application share; `data` is base64 of the image bytes.
    case shareFrame(mime: String, width: Int, height: Int, data: String)
    /// An input event for the shared application; only the control holder may send it.
    case input(event: String, x: Double?, y: Double?, key: String?)

    /// The wire name of this signal's kind.
    public var kind: String {
        switch self {
        case .cursor: "cursor"
        case .pointer: "pointer"
        case .typing: "typing"
        case .shareFrame: "shareFrame"
        case .input: "input"
        }
    }

    /// Every kind, as spelled on the wire.
    public static let allKinds: Set<String> = ["cursor", "pointer", "typing", "shareFrame", "input"]
}

extension Meeting {
    /// Checks that `sender` may send `signal` now.
    public func checkSignal(_ signal: Signal, from sender: ParticipantID) throws(Rejection) {
        if ended { throw Rejection(.meetingEnded, "the meeting has ended") }
        guard let participant = participant(sender), participant.presence != .left else {
            throw Rejection(.notParticipant, "\(sender) is not in this meeting")
        }
        switch signal {
        case .cursor, .pointer, .typing:
            return
        case .shareFrame:
            guard let share else { throw Rejection(.notSharing, "nobody is sharing") }
            guard share.sharer == sender else { throw Rejection(.notSharer, "only the sharer sends frames") }
        case .input:
            guard share != nil else { throw Rejection(.notSharing, "nobody is sharing") }
            guard mayControlShare(sender) else {
                throw Rejection(.notControlHolder, "only the holder of the control token may send input")
            }
        }
    }
}
