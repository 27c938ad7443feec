/// Why an operation was refused. The raw value is the stable error code on the wire and
/// in docs/protocol.md; never rename one.
public enum RejectionCode: String, Codable, Sendable, CaseIterable {
    case forbidden = "forbidden"
    case notHost = "not_host"
    case notPresenter = "not_presenter"
    case notParticipant = "not_participant"
    case unknownParticipant = "unknown_participant"
    case alreadyJoined = "already_joined"
    case meetingLocked = "meeting_locked"
    case meetingEnded = "meeting_ended"
    case meetingFull = "meeting_full"
    case featureDisabled = "feature_disabled"
    case invalidArgument = "invalid_argument"
    case unknownDocument = "unknown_document"
    case duplicateID = "duplicate_id"
    case unknownPage = "unknown_page"
    case unknownStroke = "unknown_stroke"
    case unknownPoll = "unknown_poll"
    case pollClosed = "poll_closed"
    case alreadyVoted = "already_voted"
    case shareInProgress = "share_in_progress"
    case notSharing = "not_sharing"
    case notSharer = "not_sharer"
    case notControlHolder = "not_control_holder"
    /// Transient, decided by the server rather than the meeting: the op was not applied and
    /// may be retried later under the same id.
    case rateLimited = "rate_limited"
    case serverBusy = "server_busy"
    /// Applying this op crashed the servers that tried it, as often as the zone allows; it
    /// is refused for good so that it cannot keep the meeting in a crash loop. Not retried.
    case poisonOp = "poison_op"
}

/// A refused operation: a code a program can branch on and a sentence a person can read.
public struct Rejection: Error, Equatable, Codable, Sendable, CustomStringConvertible {
    public var code: RejectionCode
    public var message: String

    public init(_ code: RejectionCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
