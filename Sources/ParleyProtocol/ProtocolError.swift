import ParleyCore

/// Errors about frames rather than about what an operation would do to a meeting. The raw
/// value is the stable code sent in an `error` frame; docs/protocol.md lists them all.
public enum ProtocolErrorCode: String, Codable, Sendable, CaseIterable {
    case malformedFrame = "malformed_frame"
    case unknownFrameType = "unknown_frame_type"
    case unknownOp = "unknown_op"
    case unknownSignal = "unknown_signal"
    /// A well-formed signal the sender may not send now (e.g. input without the control token).
    case signalRefused = "signal_refused"
    case frameTooLarge = "frame_too_large"
    case rateLimited = "rate_limited"
    case notJoined = "not_joined"
    case alreadyJoined = "already_joined"
    case invalidToken = "invalid_token"
    case tokenExpired = "token_expired"
    case unknownMeeting = "unknown_meeting"
    case meetingMismatch = "meeting_mismatch"
    case seqFromFuture = "seq_from_future"
    case joinRefused = "join_refused"
    case meetingEnded = "meeting_ended"
    case slowConsumer = "slow_consumer"
    case serverBusy = "server_busy"
    case unknownSession = "unknown_session"
    /// A newer connection of the same participant took over; this one is closed. Not retried.
    case replaced = "replaced"
    /// The meeting is not (or no longer) hosted on this server: it failed over, was drained
    /// or never placed here. The client asks the locator again and resumes there.
    case moved = "moved"
    case internalError = "internal_error"
}

public struct ProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    public var code: ProtocolErrorCode
    public var message: String
    /// Whether the server closes the connection after sending it.
    public var fatal: Bool
    /// The op this error is about, when the server could read its id (a malformed or unknown
    /// op): that op was dropped, is not in the log, and must not be resent.
    public var opID: OpID?
    /// A stable machine-readable detail, e.g. the rejection code behind `join_refused`.
    public var reason: String?

    public init(_ code: ProtocolErrorCode, _ message: String, fatal: Bool = false, opID: OpID? = nil,
                reason: String? = nil) {
        self.code = code
        self.message = message
        self.fatal = fatal
        self.opID = opID
        self.reason = reason
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
