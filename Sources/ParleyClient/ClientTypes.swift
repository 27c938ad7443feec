import ParleyCore
import ParleyProtocol

/// The server's answer to an op: it is committed at `seq` under `epoch`, and it appears
/// exactly once, at that position, in every participant's history.
public struct Ack: Equatable, Sendable, CustomStringConvertible {
    public var id: OpID
    public var epoch: Epoch
    public var seq: Seq

    public init(id: OpID, epoch: Epoch, seq: Seq) {
        self.id = id
        self.epoch = epoch
        self.seq = seq
    }

    public var description: String { "\(id) committed at seq \(seq) (\(epoch))" }
}

/// How an op sent through a session ended.
public enum OpOutcome: Equatable, Sendable {
    case acked(Ack)
    /// The server refused it; it is not in the log and will not be retried.
    case rejected(Rejection)
    /// The server could not read it (malformed, unknown kind or too large): it was dropped,
    /// is not in the log, and is not retried.
    case invalid(ProtocolError)
    /// The session ended before an answer came. The op may or may not have been committed:
    /// look for its id (`LogEntry.opID`) in the history of a later session.
    case failed(CloseReason)
}

/// Which transport carries one connection.
public enum Transport: String, Equatable, Sendable, CaseIterable {
    case webSocket
    /// "Virtual sockets" over HTTP long-polling, for networks that block WebSockets.
    case longPolling
}

public enum TransportPreference: String, Equatable, Sendable, CaseIterable {
    /// WebSocket first; long-polling after WebSocket fails to connect several times in a row.
    case automatic
    case webSocket
    case longPolling
}

/// What the user of a session sees of its connection.
public enum ConnectionState: Equatable, Sendable {
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
}

/// Why a session ended for good.
public enum CloseReason: Equatable, Sendable, CustomStringConvertible {
    /// ``ParleyClient/leave()``: the participant left the meeting.
    case left
    /// ``ParleyClient/close()``: the client went away without leaving; the server keeps the
    /// participant as `reconnecting` until its resume window passes.
    case closed
    /// The server refused the session and retrying cannot help (bad or expired token,
    /// unknown or ended meeting, join refused).
    case refused(ProtocolError)
    /// No server answered with a welcome after this many attempts.
    case unreachable(attempts: Int)

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
public enum ClientEvent: Equatable, Sendable {
    case connection(ConnectionState)
    /// The server welcomed the session. After `.snapshot`, ``ParleyClient/meeting`` was
    /// replaced wholesale (the client was new, or too far behind to replay).
    case welcome(ResumeMode)
    /// A committed entry this participant may see, in seq order, each exactly once.
    case entry(LogEntry)
    case signal(from: ParticipantID, Signal)
    /// A non-fatal error from the server, or a fatal one the session recovers from by reconnecting.
    case error(ProtocolError)
}

/// Errors a client API call throws. Rejections of ops are thrown as ``Rejection``.
public enum ClientError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The session has ended; see the reason.
    case closed(CloseReason)
    /// Too many ops are waiting for an answer; wait for some to complete first.
    case tooManyPendingOps(limit: Int)
    /// The server answered an HTTP API call with an error.
    case http(status: Int, code: String, message: String)
    /// The server could not be reached, or answered with something that is not our protocol.
    case network(String)
    case invalidServerURL(String)

    public var description: String {
        switch self {
        case .closed(let reason): "session ended: \(reason)"
        case .tooManyPendingOps(let limit): "\(limit) ops are already waiting for the server; wait for some to complete"
        case .http(let status, let code, let message): "server answered \(status) \(code): \(message)"
        case .network(let message): message
        case .invalidServerURL(let url): "'\(url)' is not an http:// or https:// server URL"
        }
    }
}

/// Why a connection is being dropped. Carried by ``ClientSession/Action/disconnect(_:_:)``
/// so the shell can log it and tests can pin it down.
public enum DisconnectCause: Equatable, Sendable {
    /// The transport ended by itself (closed by the server or the network).
    case transportClosed
    /// Nothing was heard for longer than the connect or heartbeat timeout.
    case timedOut
    case protocolFault(ProtocolFault)
    /// The server sent a fatal error that a fresh connection may cure.
    case serverError(ProtocolError)
    /// After a `leave` frame: close gracefully so the frame is delivered.
    case leaving
    case closing
}

/// The server broke the protocol's promises; the session drops the connection and resumes.
public enum ProtocolFault: Equatable, Sendable, CustomStringConvertible {
    case gap(expected: Seq, received: Seq)
    case eventBeforeWelcome(seq: Seq)
    case unexpectedWelcome
    case snapshotWithoutState
    /// A replay welcome for a session that holds no state to replay onto.
    case replayWithoutState
    case replayAhead(welcomeSeq: Seq, lastSeq: Seq)
    /// A delivered entry does not apply to the local copy: the copy has diverged.
    case inapplicable(seq: Seq, Rejection)

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
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public var description: String { "c\(rawValue)" }
}

/// A small, seedable generator (SplitMix64), so backoff jitter is reproducible in tests.
public struct SplitMix64: RandomNumberGenerator, Sendable, Equatable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
