/// Why an operation was refused. The raw value is the stable error code on the wire and
/// in docs/protocol.md; never rename one.
public enum RejectionCode: String, Codable, Sendable, CaseIterable {
    /// Not for clients to send (`join`, `leave`, `presence`), or someone else's stroke or poll.
    case forbidden = "forbidden"
    /// Only the host may do this.
    case notHost = "not_host"
    /// Only the presenter (or, for some ops, the host) may do this.
    case notPresenter = "not_presenter"
    /// The sender is not in the meeting: never joined, or left.
    case notParticipant = "not_participant"
    /// The participant named is not in the meeting.
    case unknownParticipant = "unknown_participant"
    /// (join) The participant is present already.
    case alreadyJoined = "already_joined"
    /// (join) The meeting is locked.
    case meetingLocked = "meeting_locked"
    /// The meeting has ended; nothing more is accepted.
    case meetingEnded = "meeting_ended"
    /// (join) `maxParticipants` people are present; those reconnecting count.
    case meetingFull = "meeting_full"
    /// The meeting's settings turn this feature off.
    case featureDisabled = "feature_disabled"
    /// An argument breaks a limit or makes no sense (to yourself, no such option…).
    case invalidArgument = "invalid_argument"
    /// No such document.
    case unknownDocument = "unknown_document"
    /// A document, page, poll or stroke id is taken already.
    case duplicateID = "duplicate_id"
    /// No such page in any document.
    case unknownPage = "unknown_page"
    /// No such stroke on that page.
    case unknownStroke = "unknown_stroke"
    /// No such poll.
    case unknownPoll = "unknown_poll"
    /// The poll is closed.
    case pollClosed = "poll_closed"
    /// The sender voted in this poll already.
    case alreadyVoted = "already_voted"
    /// Someone is sharing already.
    case shareInProgress = "share_in_progress"
    /// Nobody is sharing.
    case notSharing = "not_sharing"
    /// Only the sharer (for `stopShare`, also the host) may do this.
    case notSharer = "not_sharer"
    /// The sender does not hold the control token, or nobody does.
    case notControlHolder = "not_control_holder"
    /// Transient, decided by the server rather than the meeting: the op was not applied and
    /// may be retried later under the same id.
    case rateLimited = "rate_limited"
    /// Transient: the meeting's queue is full. Not applied; may be retried later under the same id.
    case serverBusy = "server_busy"
    /// Applying this op crashed the servers that tried it, as often as the zone allows; it
    /// is refused for good so that it cannot keep the meeting in a crash loop. Not retried.
    case poisonOp = "poison_op"
}

/// A refused operation: a code a program can branch on and a sentence a person can read.
public struct Rejection: Error, Equatable, Codable, Sendable, CustomStringConvertible {
    /// What a program branches on; stable.
    public var code: RejectionCode
    /// What a person reads; the wording may change between versions.
    public var message: String

    /// A refusal with a `code` and a sentence for people.
    public init(_ code: RejectionCode, _ message: String) {
        self.code = code
        self.message = message
    }

    /// `code: message`, e.g. `not_host: only the host can end the meeting`.
    public var description: String { "\(code.rawValue): \(message)" }
}
