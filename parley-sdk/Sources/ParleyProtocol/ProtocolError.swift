import ParleyCore

/// Errors about frames rather than about what an operation would do to a meeting. The raw
/// value is the stable code sent in an `error` frame; docs/protocol.md lists them all.
public enum ProtocolErrorCode: String, Codable, Sendable, CaseIterable {
    /// Not JSON, a missing or mistyped field, or an op or signal without exactly one key.
    case malformedFrame = "malformed_frame"
    /// `type` is not a frame the server knows.
    case unknownFrameType = "unknown_frame_type"
    /// The op's kind is not one the server knows.
    case unknownOp = "unknown_op"
    /// The signal's kind is not one the server knows.
    case unknownSignal = "unknown_signal"
    /// A well-formed signal the sender may not send now (e.g. input without the control token).
    case signalRefused = "signal_refused"
    /// The frame is over `maxFrameBytes`; it was not parsed.
    case frameTooLarge = "frame_too_large"
    /// A signal over the sender's rate; it was dropped.
    case rateLimited = "rate_limited"
    /// `op`, `signal` or `leave` before `welcome`.
    case notJoined = "not_joined"
    /// A second `hello` on one connection; the connection is fine.
    case alreadyJoined = "already_joined"
    /// The token's signature or claims are wrong: get a new token, do not retry with this one.
    case invalidToken = "invalid_token"
    /// The token is genuine and has expired: get a fresh one, then reconnect.
    case tokenExpired = "token_expired"
    /// The token's meeting does not exist. Fatal; do not retry.
    case unknownMeeting = "unknown_meeting"
    /// `resume.meeting` is not the token's meeting: drop the resume point.
    case meetingMismatch = "meeting_mismatch"
    /// `resume.seq` is beyond anything the meeting committed: drop the local state and say
    /// `hello` without `resume`.
    case seqFromFuture = "seq_from_future"
    /// The meeting refused the join; ``ProtocolError/reason`` holds the rejection code
    /// (`meeting_locked`, `meeting_full`…).
    case joinRefused = "join_refused"
    /// The meeting has ended. Do not reconnect.
    case meetingEnded = "meeting_ended"
    /// The connection fell more than `sendQueueFrames` frames behind: reconnect and resume.
    case slowConsumer = "slow_consumer"
    /// The meeting or server is overloaded: reconnect with backoff. Fatal when it answers `hello`.
    case serverBusy = "server_busy"
    /// (long-polling) The virtual socket is closed or expired: open a new one and resume.
    case unknownSession = "unknown_session"
    /// A newer connection of the same participant took over; this one is closed. Not retried.
    case replaced = "replaced"
    /// The meeting is not (or no longer) hosted on this server: it failed over, was drained
    /// or never placed here. The client asks the locator again and resumes there.
    case moved = "moved"
    /// The server could not store the meeting: reconnect with backoff and resume.
    case internalError = "internal_error"
}

/// An `error` frame: a code to branch on, a sentence to read, and whether the connection closes.
public struct ProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Stable; docs/protocol.md §13.1 says what to do for each.
    public var code: ProtocolErrorCode
    /// For people; the wording may change between versions.
    public var message: String
    /// Whether the server closes the connection after sending it.
    public var fatal: Bool
    /// The op this error is about, when the server could read its id (a malformed or unknown
    /// op): that op was dropped, is not in the log, and must not be resent.
    public var opID: OpID?
    /// A stable machine-readable detail, e.g. the rejection code behind `join_refused`.
    public var reason: String?

    /// An error as the server sends it; non-fatal unless `fatal` is true.
    public init(_ code: ProtocolErrorCode, _ message: String, fatal: Bool = false, opID: OpID? = nil,
                reason: String? = nil) {
        self.code = code
        self.message = message
        self.fatal = fatal
        self.opID = opID
        self.reason = reason
    }

    /// `code: message`.
    public var description: String { "\(code.rawValue): \(message)" }
}
