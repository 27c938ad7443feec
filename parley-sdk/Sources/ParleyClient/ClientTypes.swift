import ParleyCore
import ParleyProtocol

/// The server's answer to an op: it is committed at `seq` under `epoch`, and it appears
/// exactly once, at that position, in every participant's history.
public struct Ack: Equatable, Sendable, CustomStringConvertible {
    /// The op's id, as it was sent.
    public var id: OpID
    /// The epoch it was committed under.
    public var epoch: Epoch
    /// Its position in the log; its `.entry` event carries the same seq.
    public var seq: Seq

    /// An ack as the server sends it.
    public init(id: OpID, epoch: Epoch, seq: Seq) {
        self.id = id
        self.epoch = epoch
        self.seq = seq
    }

    /// `<op id> committed at seq 42 (e2)`.
    public var description: String { "\(id) committed at seq \(seq) (\(epoch))" }
}

/// How an op sent through a session ended.
public enum OpOutcome: Equatable, Sendable {
    /// Committed; the ack says where.
    case acked(Ack)
    /// The server refused it; it is not in the log and will not be retried.
    case rejected(Rejection)
    /// The server could not read it (malformed, unknown kind or too large): it was dropped,
    /// is not in the log, and is not retried.
    case invalid(ProtocolError)
    /// The caller gave up on it before an answer came; see ``OpWithdrawal``.
    case withdrawn(OpWithdrawal)
    /// The session ended before an answer came. The op may or may not have been committed:
    /// look for its id (`LogEntry.opID`) in the history of a later session.
    case failed(CloseReason)
}

/// An op given up on before the server answered: its caller cancelled it or its deadline
/// passed, or the session fell behind the resume window. The session stops resending it.
public struct OpWithdrawal: Equatable, Sendable, CustomStringConvertible {
    /// Why the caller gave up.
    public enum Reason: String, Equatable, Sendable {
        /// The task awaiting ``MeetingClient/send(_:timeout:)`` was cancelled.
        case cancelled
        /// The `timeout` given to ``MeetingClient/send(_:timeout:)`` passed.
        case timedOut
        /// The session resumed from behind the resume window (the server sent a snapshot):
        /// the server may no longer know whether it committed the op, so it is not resent.
        /// Look for its id in the snapshot's state or the events that follow.
        case outsideResumeWindow
    }

    /// The op given up on.
    public var opID: OpID
    /// Cancelled, timed out, or left behind the resume window.
    public var reason: Reason
    /// False when the op never left this client, so it is certainly not committed. True when
    /// it was sent at least once: the server may have committed it, and if it did, it shows
    /// up in ``MeetingClient/events`` as an entry with this op id like any other.
    public var mayHaveCommitted: Bool

    /// A withdrawal of `opID`.
    public init(opID: OpID, reason: Reason, mayHaveCommitted: Bool) {
        self.opID = opID
        self.reason = reason
        self.mayHaveCommitted = mayHaveCommitted
    }

    /// Says why, and whether the op may still have been committed.
    public var description: String {
        let why = switch reason {
        case .cancelled: "cancelled"
        case .timedOut: "timed out"
        case .outsideResumeWindow: "not resent after a resume from behind the resume window"
        }
        let fate = mayHaveCommitted
            ? "it was sent, so it may still have been committed; look for its id in the meeting's state and events"
            : "it was never sent, so it is not committed"
        return "op \(opID) \(why) before the server answered: \(fate)"
    }
}

/// Which transport carries one connection.
public enum Transport: String, Equatable, Sendable, CaseIterable {
    /// A WebSocket: one connection carries frames both ways. Tried first.
    case webSocket
    /// "Virtual sockets" over HTTP long-polling, for networks that block WebSockets.
    case longPolling
}

/// Which transports a ``ConnectionPolicy`` lets a session use.
public enum TransportPreference: String, Equatable, Sendable, CaseIterable {
    /// WebSocket first; long-polling when WebSocket fails to connect several times in a row.
    /// The fallback is per outage: every reconnect tries WebSocket first again, and a session
    /// live on long-polling checks now and then whether WebSocket works and moves back to it.
    case automatic
    /// Only WebSocket: never falls back.
    case webSocket
    /// Only long-polling, for networks known to block WebSockets.
    case longPolling
}

/// What the user of a session sees of its connection.
public enum ConnectionState: Equatable, Sendable, CustomStringConvertible {
    /// Before the first welcome.
    case connecting
    /// Welcomed for the first time.
    case connected
    /// The connection dropped; the session is retrying and will resume where it was.
    case reconnecting
    /// Welcomed again after a drop; missed events follow (or came as a snapshot).
    case resumed
    /// For good; nothing more will happen in this session.
    case closed(CloseReason)

    /// Connected or resumed: ops sent now go out at once.
    public var isLive: Bool { self == .connected || self == .resumed }

    /// A short phrase for logs.
    public var description: String {
        switch self {
        case .connecting: "connecting"
        case .connected: "connected"
        case .reconnecting: "reconnecting"
        case .resumed: "resumed"
        case .closed(let reason): "closed: \(reason)"
        }
    }
}

/// Why a session ended for good.
public enum CloseReason: Equatable, Sendable, CustomStringConvertible {
    /// ``MeetingClient/leave()``: the participant left the meeting.
    case left
    /// ``MeetingClient/close()``: the client went away without leaving; the server keeps the
    /// participant as `reconnecting` until its resume window passes.
    case closed
    /// The server refused the session and retrying cannot help (bad or expired token,
    /// unknown or ended meeting, join refused).
    case refused(ProtocolError)
    /// No server answered with a welcome after this many attempts.
    case unreachable(attempts: Int)

    /// A sentence for logs and people; an unreachable server's says what to check.
    public var description: String {
        switch self {
        case .left: "left the meeting"
        case .closed: "closed by the client"
        case .refused(let error): "the server refused the session (\(error.code.rawValue)): \(error.message)"
        case .unreachable(let attempts):
            "no server answered after \(attempts) attempts; check the server URL and that the server is running"
        }
    }
}

/// Everything a session tells its user, in order.
public enum ClientEvent: Equatable, Sendable, CustomStringConvertible {
    /// The connection's state changed.
    case connection(ConnectionState)
    /// The server welcomed the session. After `.snapshot`, ``MeetingClient/meeting`` was
    /// replaced wholesale (the client was new, or too far behind to replay).
    case welcome(ResumeMode)
    /// A committed entry this participant may see, in seq order, each exactly once.
    case entry(LogEntry)
    /// Another participant's ephemeral signal (a cursor, typing…); never replayed.
    case signal(from: ParticipantID, Signal)
    /// A non-fatal error from the server, or a fatal one the session recovers from by reconnecting.
    case error(ProtocolError)
    /// This subscriber fell behind and this many events before the next one were dropped
    /// (the oldest first) to keep its buffer within its limit. ``MeetingClient/meeting`` is
    /// complete regardless: read it to catch up.
    case dropped(count: Int)

    /// A short phrase for logs.
    public var description: String {
        switch self {
        case .connection(let state): "connection \(state)"
        case .welcome(let mode): "welcome (\(mode.rawValue))"
        case .entry(let entry):
            "seq \(entry.seq): \(entry.operation.kind) by \(entry.issuer)"
        case .signal(let from, let signal): "signal \(signal.kind) from \(from.rawValue)"
        case .error(let error): "server error \(error.code.rawValue): \(error.message)"
        case .dropped(let count): "\(count) events dropped: the subscriber fell behind"
        }
    }
}

/// Every error the SDK throws: from ``MeetingClient``, ``ParleyHTTP`` and the pure
/// ``ClientSession``. Switch over it; each case says what happened and what is known.
public enum ParleyError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The server refused the op: it is not in the log and is not retried.
    case rejected(Rejection)
    /// The server could not read the op (malformed, unknown kind or over the frame-size
    /// limit): it was dropped, is not in the log, and is not retried.
    case invalidOp(ProtocolError)
    /// The caller gave up on the op before an answer; it may or may not have committed,
    /// as the withdrawal says.
    case withdrawn(OpWithdrawal)
    /// The session has ended; see the reason. An op that was waiting may or may not have
    /// committed: look for its id in a later session's history.
    case closed(CloseReason)
    /// The calling task was cancelled (``MeetingClient/connect()`` stops connecting).
    case cancelled
    /// Too many ops are waiting for an answer; wait for some to complete first.
    case tooManyPendingOps(limit: Int)
    /// The server answered an HTTP API call with an error.
    case http(HTTPFailure)
    /// The server could not be reached, or answered with something that is not Parley's.
    case network(NetworkFailure)
    /// The server URL is not `http://` or `https://` with a host.
    case invalidServerURL(String)
    /// An option is out of range; the message names it.
    case invalidOptions(String)

    /// A sentence for logs and people.
    public var description: String {
        switch self {
        case .rejected(let rejection): "the server refused the op: \(rejection)"
        case .invalidOp(let error): "the server could not read the op (\(error.code.rawValue)): \(error.message)"
        case .withdrawn(let withdrawal): withdrawal.description
        case .closed(let reason): "session ended: \(reason)"
        case .cancelled: "cancelled"
        case .tooManyPendingOps(let limit): "\(limit) ops are already waiting for the server; wait for some to complete"
        case .http(let failure): failure.description
        case .network(let failure): failure.description
        case .invalidServerURL(let url): "'\(url)' is not an http:// or https:// server URL"
        case .invalidOptions(let message): "invalid options: \(message)"
        }
    }
}

/// An HTTP API call the server answered with an error status.
public struct HTTPFailure: Equatable, Sendable, CustomStringConvertible {
    /// The HTTP status code, e.g. 401.
    public var status: Int
    /// The `code` of the error body, or `.other("http_NNN")` when the body was not Parley's.
    public var code: APIErrorCode
    /// The server's sentence, or the start of the body when it was not Parley's.
    public var message: String

    /// A failure as the SDK reads it from an answer.
    public init(status: Int, code: APIErrorCode, message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    /// `server answered 401 unauthorized: …`.
    public var description: String { "server answered \(status) \(code.rawValue): \(message)" }
}

/// The `code` of an HTTP API error body. Codes this SDK does not know are kept as
/// ``other(_:)``, so a newer server's codes still reach the app intact.
public enum APIErrorCode: Equatable, Hashable, Sendable, RawRepresentable, CustomStringConvertible {
    /// The server requires its API key (`Authorization: Bearer <api key>`).
    case unauthorized
    /// The call is not allowed with these credentials (e.g. a second host token).
    case forbidden
    /// The join token is not valid (or missing) for this call.
    case invalidToken
    /// The join token has expired: fetch a fresh one.
    case tokenExpired
    /// The token is for another meeting than the one in the address.
    case wrongMeeting
    /// No meeting has this id on this server.
    case unknownMeeting
    /// An argument is out of range; the message says which.
    case invalidArgument
    /// The request body is not what the endpoint takes; the message names the field.
    case malformedRequest
    /// The request body is over the server's limit (1 MiB for long-polling sends).
    case requestTooLarge
    /// The upload is over the server's `maxUploadBytes` (25 MiB by default).
    case uploadTooLarge
    /// The upload is not a PDF, PNG or JPEG.
    case unsupportedDocument
    /// The PDF has more pages than the server takes.
    case tooManyPages
    /// Every converter failed on the document.
    case conversionFailed
    /// No such page in this meeting.
    case unknownPage
    /// No upload of this participant by that name is running.
    case unknownUpload
    /// The server is busy (e.g. converting other uploads); retry later.
    case serverBusy
    /// The meeting's host is moving or failing over; retry shortly.
    case unavailable
    /// The server failed; retry later.
    case internalError
    /// A code this SDK does not know (or `http_NNN` when the body was not Parley's).
    case other(String)

    // Spelled out both ways: a RawRepresentable's `==` compares raw values, so `rawValue`
    // must not compare cases.
    public init(rawValue: String) {
        self = switch rawValue {
        case "unauthorized": .unauthorized
        case "forbidden": .forbidden
        case "invalid_token": .invalidToken
        case "token_expired": .tokenExpired
        case "wrong_meeting": .wrongMeeting
        case "unknown_meeting": .unknownMeeting
        case "invalid_argument": .invalidArgument
        case "malformed_request": .malformedRequest
        case "request_too_large": .requestTooLarge
        case "upload_too_large": .uploadTooLarge
        case "unsupported_document": .unsupportedDocument
        case "too_many_pages": .tooManyPages
        case "conversion_failed": .conversionFailed
        case "unknown_page": .unknownPage
        case "unknown_upload": .unknownUpload
        case "server_busy": .serverBusy
        case "unavailable": .unavailable
        case "internal_error": .internalError
        default: .other(rawValue)
        }
    }

    public var rawValue: String {
        switch self {
        case .unauthorized: "unauthorized"
        case .forbidden: "forbidden"
        case .invalidToken: "invalid_token"
        case .tokenExpired: "token_expired"
        case .wrongMeeting: "wrong_meeting"
        case .unknownMeeting: "unknown_meeting"
        case .invalidArgument: "invalid_argument"
        case .malformedRequest: "malformed_request"
        case .requestTooLarge: "request_too_large"
        case .uploadTooLarge: "upload_too_large"
        case .unsupportedDocument: "unsupported_document"
        case .tooManyPages: "too_many_pages"
        case .conversionFailed: "conversion_failed"
        case .unknownPage: "unknown_page"
        case .unknownUpload: "unknown_upload"
        case .serverBusy: "server_busy"
        case .unavailable: "unavailable"
        case .internalError: "internal_error"
        case .other(let code): code
        }
    }

    public var description: String { rawValue }
}

/// A call that did not reach the server, or got an answer that is not Parley's.
public struct NetworkFailure: Equatable, Sendable, CustomStringConvertible {
    /// The address called.
    public var url: String
    /// What happened, naming the address.
    public var message: String
    /// The error underneath (a `URLError`, a WebSocket error…), when there is one.
    public var underlying: (any Error)?

    /// A failure at `url`, with the error underneath when there is one.
    public init(url: String, message: String, underlying: (any Error)? = nil) {
        self.url = url
        self.message = message
        self.underlying = underlying
    }

    /// The message.
    public var description: String { message }

    /// Equal when they say the same about the same address; the underlying errors are
    /// not compared (they need not be equatable).
    public static func == (lhs: NetworkFailure, rhs: NetworkFailure) -> Bool {
        lhs.url == rhs.url && lhs.message == rhs.message
    }
}

/// Why a connection is being dropped. Carried by ``ClientSession/Action/disconnect(_:_:)``
/// so the shell can log it and tests can pin it down.
public enum DisconnectCause: Equatable, Sendable {
    /// The transport ended by itself (closed by the server or the network).
    case transportClosed
    /// Nothing was heard for longer than the connect or heartbeat timeout.
    case timedOut
    /// The server broke the protocol (a gap, a welcome out of place…).
    case protocolFault(ProtocolFault)
    /// The server sent a fatal error that a fresh connection may cure.
    case serverError(ProtocolError)
    /// After a `leave` frame: close gracefully so the frame is delivered.
    case leaving
    /// The session is ending (``MeetingClient/close()``, or it ended for good): the
    /// connection is no longer needed.
    case closing
    /// Live on long-polling, and a WebSocket probe got through: move back to WebSocket.
    case upgrading
}

/// The server broke the protocol's promises; the session drops the connection and resumes.
public enum ProtocolFault: Equatable, Sendable, CustomStringConvertible {
    /// Events skipped a seq.
    case gap(expected: Seq, received: Seq)
    /// An event came before the welcome.
    case eventBeforeWelcome(seq: Seq)
    /// A second welcome on one connection.
    case unexpectedWelcome
    /// A snapshot welcome without a state.
    case snapshotWithoutState
    /// A replay welcome for a session that holds no state to replay onto.
    case replayWithoutState
    /// A replay welcome that starts past the local copy's last seq.
    case replayAhead(welcomeSeq: Seq, lastSeq: Seq)
    /// A delivered entry does not apply to the local copy: the copy has diverged.
    case inapplicable(seq: Seq, Rejection)

    /// A sentence for logs.
    public var description: String {
        switch self {
        case .gap(let expected, let received): "expected seq \(expected), received \(received)"
        case .eventBeforeWelcome(let seq): "event \(seq) arrived before welcome"
        case .unexpectedWelcome: "a second welcome on one connection"
        case .snapshotWithoutState: "snapshot welcome without state"
        case .replayWithoutState: "replay welcome but no local state"
        case .replayAhead(let welcomeSeq, let lastSeq): "replay starts after \(welcomeSeq), but we have only \(lastSeq)"
        case .inapplicable(let seq, let rejection): "entry \(seq) does not apply locally: \(rejection)"
        }
    }
}

/// One transport connection attempt. Inputs name the connection they come from, so news
/// from a connection the session has already dropped is ignored.
public struct ConnectionID: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// Counts up from 1 within one session.
    public var rawValue: UInt64
    /// Wraps a connection number.
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    /// The same as ``init(rawValue:)``, without the label.
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    /// `c3` for the third connection.
    public var description: String { "c\(rawValue)" }
}

/// A small, seedable generator (SplitMix64), so backoff jitter is reproducible in tests.
public struct SplitMix64: RandomNumberGenerator, Sendable, Equatable {
    private var state: UInt64
    /// The same seed gives the same numbers, on every run and platform.
    public init(seed: UInt64) { state = seed }
    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
