/// One committed operation: the unit of the meeting log, of replication and of resume.
public struct LogEntry: Codable, Equatable, Sendable {
    /// Its position in the log: 1, 2, 3… with no gaps.
    public var seq: Seq
    /// The epoch of the host that committed it. Replayed entries keep theirs, so it may be older
    /// than the epoch of the welcome they follow.
    public var epoch: Epoch
    /// The commit time, chosen by the host, in milliseconds since the Unix epoch.
    public var at: Millis
    /// `.system` for joins, leaves and presence changes; otherwise the participant who sent the op.
    public var issuer: Issuer
    /// The client's op id, when a client issued the operation.
    public var opID: OpID?
    /// What changed.
    public var operation: MeetingOp

    /// An entry as a host commits it; nothing is checked here.
    public init(seq: Seq, epoch: Epoch, at: Millis, issuer: Issuer, opID: OpID?, operation: MeetingOp) {
        self.seq = seq
        self.epoch = epoch
        self.at = at
        self.issuer = issuer
        self.opID = opID
        self.operation = operation
    }

    /// Private messages are seen by their two parties only; everybody else receives the
    /// entry's position without its content, so their seq stays gap-free.
    public func isVisible(to viewer: ParticipantID) -> Bool {
        guard let recipient = operation.privateRecipient else { return true }
        return viewer == recipient || issuer == .participant(viewer)
    }
}

/// A checkpoint: the state after entry `seq`, plus what is needed to keep retries
/// idempotent across a restart.
public struct Snapshot: Codable, Equatable, Sendable {
    /// The state after entry ``seq``.
    public var meeting: Meeting
    /// The last entry the checkpoint includes.
    public var seq: Seq
    /// The log's epoch when the checkpoint was taken.
    public var epoch: Epoch
    /// Recent client op ids and their seqs, so a retry after a restart is still recognised.
    public var outcomes: OpOutcomes

    /// A checkpoint of `meeting` as it is after `seq`.
    public init(meeting: Meeting, seq: Seq, epoch: Epoch, outcomes: OpOutcomes) {
        self.meeting = meeting
        self.seq = seq
        self.epoch = epoch
        self.outcomes = outcomes
    }
}

/// The seqs of recently committed client op ids, so a retried op is applied at most once
/// and answered with its original outcome. Bounded: the oldest records go first. That is
/// enough because a client resends an op only with a welcome: a replay welcome's own ops
/// the host answers from that replay (`MeetingHostState`), later ones are recent, and
/// after a snapshot welcome the client withdraws what it had sent.
public struct OpOutcomes: Codable, Equatable, Sendable {
    /// One client op. Op ids are unique per participant, not per meeting, so the key holds both.
    public struct Key: Hashable, Codable, Sendable {
        /// Who sent the op.
        public var participant: ParticipantID
        /// The id the client chose.
        public var opID: OpID

        /// The key of `participant`'s op `opID`.
        public init(participant: ParticipantID, opID: OpID) {
            self.participant = participant
            self.opID = opID
        }
    }
    /// A committed client op and where it landed.
    public struct Record: Codable, Equatable, Sendable {
        /// Which op.
        public var key: Key
        /// Where it was committed.
        public var seq: Seq
    }

    /// How many of the newest records are kept; up to twice as many wait between trims.
    public private(set) var capacity: Int
    /// Oldest first.
    public private(set) var records: [Record]
    private var index: [Key: Seq]

    /// No records yet. `capacity` must be positive (it traps otherwise).
    public init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        records = []
        index = [:]
    }

    /// The seq the op was committed at, or nil if it is unknown or was trimmed away.
    public func seq(for key: Key) -> Seq? { index[key] }

    /// Remembers that `key` was committed at `seq`. Trims the oldest records in batches, so each
    /// call costs O(1) amortised.
    public mutating func record(_ key: Key, seq: Seq) {
        records.append(Record(key: key, seq: seq))
        index[key] = seq
        if records.count > capacity * 2 {
            // Amortised trimming keeps insertion O(1).
            for old in records.prefix(records.count - capacity) where index[old.key] == old.seq {
                index[old.key] = nil
            }
            records.removeFirst(records.count - capacity)
        }
    }

    /// Every checkpoint carries up to `capacity` records (10,000 by default), so they are
    /// stored as flat columns: the distinct participants once, then per record an index
    /// into them, the op id and the seq. As an array of keyed objects they took a third of a
    /// busy server's CPU. `records` is the older layout, still read.
    enum CodingKeys: String, CodingKey { case capacity, records, participants, who, ops, seqs }

    /// Reads both layouts: the columns written now, and the older `records` array.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        capacity = try container.decode(Int.self, forKey: .capacity)
        if container.contains(.records) {
            records = try container.decode([Record].self, forKey: .records)
        } else {
            let participants = try container.decode([String].self, forKey: .participants)
            let who = try container.decode([Int].self, forKey: .who)
            let ops = try container.decode([String].self, forKey: .ops)
            let seqs = try container.decode([Seq].self, forKey: .seqs)
            guard who.count == ops.count, ops.count == seqs.count, who.allSatisfy(participants.indices.contains) else {
                throw DecodingError.dataCorruptedError(forKey: .who, in: container,
                                                       debugDescription: "op outcome columns of different lengths or a bad participant index")
            }
            records = (0..<who.count).map { row in
                Record(key: Key(participant: ParticipantID(participants[who[row]]), opID: OpID(ops[row])), seq: seqs[row])
            }
        }
        index = Dictionary(records.map { ($0.key, $0.seq) }, uniquingKeysWith: { _, last in last })
    }

    /// Writes the newest `capacity` records as columns: the participants once, then an index, an
    /// op id and a seq per record.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(capacity, forKey: .capacity)
        let kept = records.suffix(capacity)
        var participants: [String] = []
        var numbers: [ParticipantID: Int] = [:]
        var who: [Int] = []
        var ops: [String] = []
        var seqs: [Seq] = []
        who.reserveCapacity(kept.count)
        ops.reserveCapacity(kept.count)
        seqs.reserveCapacity(kept.count)
        for record in kept {
            let participant = record.key.participant
            let number = numbers[participant] ?? {
                participants.append(participant.rawValue)
                numbers[participant] = participants.count - 1
                return participants.count - 1
            }()
            who.append(number)
            ops.append(record.key.opID.rawValue)
            seqs.append(record.seq)
        }
        try container.encode(participants, forKey: .participants)
        try container.encode(who, forKey: .who)
        try container.encode(ops, forKey: .ops)
        try container.encode(seqs, forKey: .seqs)
    }

    /// Equal when the capacities and the newest `capacity` records match; older records that wait
    /// for a trim do not count.
    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.capacity == rhs.capacity && lhs.records.suffix(lhs.capacity) == rhs.records.suffix(rhs.capacity)
    }
}
