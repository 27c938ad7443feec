import ParleyCore

/// A frame from a client. On the wire: a JSON object whose `type` says which.
public enum ClientFrame: Equatable, Sendable {
    /// The first frame of every connection. `resume` is present when the client has seen
    /// part of this meeting before.
    case hello(token: String, resume: ResumePoint?)
    /// An operation. `id` is chosen by the client and reused on retry.
    case op(id: OpID, operation: Operation)
    case signal(Signal)
    case ping(nonce: String?)
    /// Leave the meeting for good (closing the socket only marks the participant reconnecting).
    case leave
}

public struct ResumePoint: Codable, Equatable, Sendable {
    public var meeting: MeetingID
    /// The last seq the client has seen; it gets everything after.
    public var seq: Seq
    public init(meeting: MeetingID, seq: Seq) {
        self.meeting = meeting
        self.seq = seq
    }
}

/// A frame from the server.
public enum ServerFrame: Equatable, Sendable {
    case welcome(Welcome)
    /// A committed entry, as this recipient may see it.
    case event(DeliveredEntry)
    /// The op with this id is committed at `seq`.
    case ack(id: OpID, epoch: Epoch, seq: Seq)
    /// The op with this id was refused and is not in the log.
    case reject(id: OpID, Rejection)
    case signal(from: ParticipantID, Signal)
    case error(ProtocolError)
    case pong(nonce: String?)
}

/// How a client picks up after `hello`.
public enum ResumeMode: String, Codable, Sendable {
    /// Events after the client's seq follow, in order; its copy of the state is still good.
    case replay
    /// `state` replaces whatever the client had; events after `seq` follow.
    case snapshot
}

public struct Welcome: Codable, Equatable, Sendable {
    public var meeting: MeetingID
    public var participant: ParticipantID
    public var epoch: Epoch
    public var mode: ResumeMode
    /// Events that follow start at `seq + 1`.
    public var seq: Seq
    /// The state after `seq`, as this participant may see it; only in `snapshot` mode.
    public var state: Meeting?
    public var limits: ConnectionLimits

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
    public var maxFrameBytes: Int
    /// Ops and signals per second, sustained; `burst` more may come at once.
    public var framesPerSecond: Int
    public var burst: Int
    /// Frames queued for a client before it is dropped as a slow consumer.
    public var sendQueueFrames: Int

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
    case visible(LogEntry)
    case redacted(seq: Seq, epoch: Epoch, at: Millis)

    public init(_ entry: LogEntry, for viewer: ParticipantID) {
        self = entry.isVisible(to: viewer) ? .visible(entry) : .redacted(seq: entry.seq, epoch: entry.epoch, at: entry.at)
    }

    public var seq: Seq {
        switch self {
        case .visible(let entry): entry.seq
        case .redacted(let seq, _, _): seq
        }
    }

    public var epoch: Epoch {
        switch self {
        case .visible(let entry): entry.epoch
        case .redacted(_, let epoch, _): epoch
        }
    }
}
