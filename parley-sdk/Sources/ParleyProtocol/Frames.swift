import ParleyCore

/// A frame from a client. On the wire: a JSON object whose `type` says which.
public enum ClientFrame: Equatable, Sendable {
    /// The first frame of every connection. `resume` is present when the client has seen
    /// part of this meeting before.
    case hello(token: String, resume: ResumePoint?)
    /// An operation. `id` is chosen by the client and reused on retry.
    case op(id: OpID, operation: MeetingOp)
    /// An ephemeral signal for the other participants; never logged.
    case signal(Signal)
    /// Asks for a `pong` carrying the same nonce.
    case ping(nonce: String?)
    /// Leave the meeting for good (closing the socket only marks the participant reconnecting).
    case leave
}

/// Where a resuming client left off, sent in `hello`.
public struct ResumePoint: Codable, Equatable, Sendable {
    /// The meeting the client was in; it must be the token's meeting (`meeting_mismatch` otherwise).
    public var meeting: MeetingID
    /// The last seq the client has seen; it gets everything after.
    public var seq: Seq
    /// Resume `meeting` after `seq`.
    public init(meeting: MeetingID, seq: Seq) {
        self.meeting = meeting
        self.seq = seq
    }
}

/// A frame from the server.
public enum ServerFrame: Equatable, Sendable {
    /// The answer to `hello`; events follow from ``Welcome/seq`` + 1.
    case welcome(Welcome)
    /// A committed entry, as this recipient may see it.
    case event(DeliveredEntry)
    /// The op with this id is committed at `seq`.
    case ack(id: OpID, epoch: Epoch, seq: Seq)
    /// The op with this id was refused and is not in the log.
    case reject(id: OpID, Rejection)
    /// Another participant's signal.
    case signal(from: ParticipantID, Signal)
    /// Something went wrong; when ``ProtocolError/fatal`` the connection closes after it.
    case error(ProtocolError)
    /// The answer to a `ping`, with its nonce.
    case pong(nonce: String?)
}

/// How a client picks up after `hello`.
public enum ResumeMode: String, Codable, Sendable {
    /// Events after the client's seq follow, in order; its copy of the state is still good.
    case replay
    /// `state` replaces whatever the client had; events after `seq` follow.
    case snapshot
}

/// The server's answer to `hello`: who this connection is, and where the events that follow
/// start.
public struct Welcome: Codable, Equatable, Sendable {
    /// The meeting joined.
    public var meeting: MeetingID
    /// Who this connection is, from the token.
    public var participant: ParticipantID
    /// The host's epoch now; greater after every restart or failover.
    public var epoch: Epoch
    /// Replay (keep the local state) or snapshot (replace it with ``state``).
    public var mode: ResumeMode
    /// Events that follow start at `seq + 1`.
    public var seq: Seq
    /// The state after `seq`, as this participant may see it; only in `snapshot` mode.
    public var state: Meeting?
    /// What this connection may send.
    public var limits: ConnectionLimits

    /// A welcome as a server sends it. `state` is set in `.snapshot` mode, and only then.
    public init(meeting: MeetingID, participant: ParticipantID, epoch: Epoch, mode: ResumeMode, seq: Seq,
                state: Meeting?, limits: ConnectionLimits) {
        self.meeting = meeting
        self.participant = participant
        self.epoch = epoch
        self.mode = mode
        self.seq = seq
        self.state = state
        self.limits = limits
    }
}

/// The limits a server enforces on one connection, announced in `welcome`.
public struct ConnectionLimits: Codable, Equatable, Sendable {
    /// The largest frame the server accepts, in bytes.
    public var maxFrameBytes: Int
    /// Ops and signals per second, sustained; `burst` more may come at once.
    public var framesPerSecond: Int
    /// Frames that may come at once above the sustained rate.
    public var burst: Int
    /// Frames queued for a client before it is dropped as a slow consumer.
    public var sendQueueFrames: Int

    /// The server's defaults: 64 KiB frames, 50 frames a second in bursts of up to 200 more, and
    /// 4,096 queued frames.
    public init(maxFrameBytes: Int = 64 * 1024, framesPerSecond: Int = 50, burst: Int = 200, sendQueueFrames: Int = 4_096) {
        self.maxFrameBytes = maxFrameBytes
        self.framesPerSecond = framesPerSecond
        self.burst = burst
        self.sendQueueFrames = sendQueueFrames
    }
}

/// A log entry as delivered: whole, or, for a private message between two others,
/// reduced to its position so the recipient's seqs stay contiguous.
public enum DeliveredEntry: Equatable, Sendable {
    /// The whole entry.
    case visible(LogEntry)
    /// A private message between two others: only its position, so seqs stay contiguous.
    case redacted(seq: Seq, epoch: Epoch, at: Millis)

    /// `entry` as `viewer` may see it: redacted when it is a private message between two others.
    public init(_ entry: LogEntry, for viewer: ParticipantID) {
        self = entry.isVisible(to: viewer) ? .visible(entry) : .redacted(seq: entry.seq, epoch: entry.epoch, at: entry.at)
    }

    /// The entry's position, redacted or not.
    public var seq: Seq {
        switch self {
        case .visible(let entry): entry.seq
        case .redacted(let seq, _, _): seq
        }
    }

    /// The epoch the entry was committed under.
    public var epoch: Epoch {
        switch self {
        case .visible(let entry): entry.epoch
        case .redacted(_, let epoch, _): epoch
        }
    }
}
