/// How far back a client can resume by replay. A client behind by at most `minEntries`
/// entries, or by at most `minAgeMillis` of time, gets exactly the entries it missed;
/// beyond both it gets a snapshot. `maxEntries` caps memory whatever the rate.
public struct ResumeWindow: Codable, Equatable, Sendable {
    /// Replay covers at least this many of the newest entries.
    public var minEntries: Int
    /// Replay covers at least the entries committed this many milliseconds before the newest one.
    public var minAgeMillis: Millis
    /// Never more entries than this, however recent.
    public var maxEntries: Int

    /// The protocol's window: 10,000 entries or 2 minutes, whichever reaches further back, capped
    /// at 200,000 entries. Traps unless `0 < minEntries <= maxEntries` and `minAgeMillis >= 0`.
    public init(minEntries: Int = 10_000, minAgeMillis: Millis = 120_000, maxEntries: Int = 200_000) {
        precondition(minEntries > 0 && maxEntries >= minEntries && minAgeMillis >= 0)
        self.minEntries = minEntries
        self.minAgeMillis = minAgeMillis
        self.maxEntries = maxEntries
    }
}

/// The hosting copy of a meeting: its state, its sequencer and its resume buffer.
///
/// A pure state machine. The host feeds it operations (``submit(_:by:opID:at:)``) and news
/// that entries became durable (``committed(through:)``); it answers with what to commit,
/// what to deliver and what to tell a resuming client. It never does I/O, so the same code
/// runs in the server, in tests and in simulations.
///
/// Invariants: seqs are assigned 1, 2, 3… with no gaps; an entry is delivered to clients
/// only after it is committed; every entry was accepted by ``Meeting/apply(_:by:at:seq:)``.
public struct MeetingLog: Sendable {
    /// The state after ``lastSeq``, entries not yet durable included.
    public private(set) var meeting: Meeting
    /// The epoch new entries are committed under.
    public private(set) var epoch: Epoch
    /// The last seq handed out, committed or not.
    public private(set) var lastSeq: Seq
    /// The last seq known to be durable. Only entries up to here are ever delivered.
    public private(set) var committedSeq: Seq
    /// How much of the tail is kept for resume.
    public let window: ResumeWindow
    /// Oldest first; contiguous; ends at `lastSeq`.
    public var tail: ArraySlice<LogEntry> { kept[keptStart...] }
    /// The tail lives in `kept[keptStart...]`. Trimming moves `keptStart` and compacts only
    /// once the dropped prefix outgrows the rest: removing the front of an array moves every
    /// entry behind it, and a busy meeting trims on every commit (with a 200,000-entry tail,
    /// every commit copied all of them).
    private var kept: [LogEntry]
    private var keptStart: Int
    private var outcomes: OpOutcomes
    /// Op ids sequenced but not yet committed, so a retry arriving in between is not applied twice.
    private var inFlight: [OpOutcomes.Key: Seq]

    /// What ``submit(_:by:opID:at:)`` decided.
    public enum Submission: Equatable, Sendable {
        /// Accepted: commit this entry, then deliver it.
        case sequenced(LogEntry)
        /// The op id was seen before and applied at `seq`. `committed` says whether the
        /// original is already durable (answer now) or still in flight (answer on commit).
        case duplicate(seq: Seq, committed: Bool)
        /// Refused by the rules: nothing was sequenced and the state is unchanged.
        case rejected(Rejection)
    }

    /// What a client that resumes after a given seq gets; see ``resume(after:)``.
    public enum ResumePlan: Equatable, Sendable {
        /// Exactly the entries after the client's seq, in order; empty if it is up to date.
        case replay([LogEntry])
        /// The client is too far behind (or new): send the current state, then go live.
        case snapshot(Snapshot)
        /// The client claims a seq this meeting never committed.
        case fromFuture(latest: Seq)
    }

    /// A new, empty meeting.
    public init(meeting: Meeting, epoch: Epoch, window: ResumeWindow = ResumeWindow()) {
        self.meeting = meeting
        self.epoch = epoch
        self.window = window
        lastSeq = 0
        committedSeq = 0
        kept = []
        keptStart = 0
        outcomes = OpOutcomes(capacity: window.minEntries)
        inFlight = [:]
    }

    /// Why a copy could not be rebuilt, replicated or promoted: what the store holds is
    /// inconsistent, or stale.
    public enum RecoveryError: Error, Equatable, Sendable {
        /// The log does not continue the snapshot: a seq is missing or repeated.
        case gap(expected: Seq, found: Seq)
        /// A logged entry does not apply to the state: the log or snapshot is inconsistent.
        case inapplicable(seq: Seq, Rejection)
        /// The new epoch does not exceed every epoch already in the log.
        case staleEpoch(Epoch, newest: Epoch)
    }

    /// Rebuilds a meeting from its newest good snapshot and the committed entries after it,
    /// under a new epoch.
    /// - Parameters:
    ///   - history: committed entries at or before the snapshot, kept only so that clients
    ///     behind the snapshot can still resume by replay. Not applied.
    public init(recovering snapshot: Snapshot, entries: [LogEntry], history: [LogEntry] = [],
                epoch: Epoch, window: ResumeWindow = ResumeWindow()) throws(RecoveryError) {
        try self.init(standbyFrom: snapshot, entries: entries, history: history, window: window)
        guard epoch > self.epoch else { throw .staleEpoch(epoch, newest: self.epoch) }
        self.epoch = epoch
    }

    /// A standby copy rebuilt from a snapshot and the committed entries after it. It hosts
    /// nothing: its ``epoch`` is the newest one in what it holds, until ``promote(to:catchingUp:)``.
    public init(standbyFrom snapshot: Snapshot, entries: [LogEntry], history: [LogEntry] = [],
                window: ResumeWindow = ResumeWindow()) throws(RecoveryError) {
        meeting = snapshot.meeting
        self.window = window
        outcomes = snapshot.outcomes
        inFlight = [:]
        epoch = snapshot.epoch
        lastSeq = snapshot.seq
        committedSeq = snapshot.seq
        kept = []
        keptStart = 0
        for entry in entries {
            try applyCommitted(entry)
            epoch = max(epoch, entry.epoch)
        }
        committedSeq = lastSeq
        // Keep history only if it runs contiguously into the entries after the snapshot.
        let usableHistory = history.last?.seq == snapshot.seq && Self.isContiguous(history) ? history : []
        kept = usableHistory + entries
        trimTail()
    }

    /// Applies one entry another host committed, at the next seq.
    private mutating func applyCommitted(_ entry: LogEntry) throws(RecoveryError) {
        guard entry.seq == lastSeq + 1 else { throw .gap(expected: lastSeq + 1, found: entry.seq) }
        do {
            try meeting.apply(entry.operation, by: entry.issuer, at: entry.at, seq: entry.seq)
        } catch {
            throw .inapplicable(seq: entry.seq, error)
        }
        if let key = Self.key(entry.issuer, entry.opID) { outcomes.record(key, seq: entry.seq) }
        lastSeq = entry.seq
    }

    // MARK: - Standby copies

    /// A standby copy applies the entries its host committed, as they stream in, and keeps
    /// them for resume like the host does. Entries it already has are skipped, so a stream
    /// that restarts from an earlier seq is harmless. A standby never sequences ops itself.
    /// - Throws: `.gap` if the entries do not continue the copy; `.inapplicable` if one
    ///   does not apply (the copy then differs from the host and must be reloaded).
    public mutating func replicate(_ entries: some Collection<LogEntry>) throws(RecoveryError) {
        precondition(!hasUncommitted, "a standby copy never sequences ops of its own")
        for entry in entries where entry.seq > lastSeq {
            try applyCommitted(entry)
            committedSeq = entry.seq
            epoch = max(epoch, entry.epoch)
            kept.append(entry)
        }
        trimTail()
    }

    /// The standby takes the meeting over under `epoch`, which it has claimed in the store,
    /// after applying the entries the store holds beyond its copy (committed by the old host
    /// but not yet streamed). Op ids keep their outcomes, so retries are still recognised.
    public mutating func promote(to epoch: Epoch, catchingUp entries: some Collection<LogEntry>) throws(RecoveryError) {
        try replicate(entries)
        guard epoch > self.epoch else { throw .staleEpoch(epoch, newest: self.epoch) }
        self.epoch = epoch
    }

    /// Offers an operation. On `.sequenced` the state already includes it; the caller must
    /// commit the entry and then report it with ``committed(through:)``.
    public mutating func submit(_ operation: MeetingOp, by issuer: Issuer, opID: OpID?, at: Millis) -> Submission {
        let key = Self.key(issuer, opID)
        if let key {
            if let seq = outcomes.seq(for: key) { return .duplicate(seq: seq, committed: true) }
            if let seq = inFlight[key] { return .duplicate(seq: seq, committed: false) }
        }
        let seq = lastSeq + 1
        do {
            try meeting.apply(operation, by: issuer, at: at, seq: seq)
        } catch {
            return .rejected(error)
        }
        let entry = LogEntry(seq: seq, epoch: epoch, at: at, issuer: issuer, opID: opID, operation: operation)
        lastSeq = seq
        kept.append(entry)
        if let key { inFlight[key] = seq }
        return .sequenced(entry)
    }

    /// Reports that every entry up to `seq` is durable. Returns the newly durable entries,
    /// in order, which may now be delivered and acknowledged.
    public mutating func committed(through seq: Seq) -> ArraySlice<LogEntry> {
        precondition(seq <= lastSeq, "cannot commit \(seq) beyond the last sequenced \(lastSeq)")
        guard seq > committedSeq else { return [] }
        let first = committedSeq + 1
        committedSeq = seq
        let newlyDurable = entries(from: first, through: seq)
        for entry in newlyDurable {
            if let key = Self.key(entry.issuer, entry.opID) {
                inFlight[key] = nil
                outcomes.record(key, seq: entry.seq)
            }
        }
        trimTail()
        return newlyDurable
    }

    /// Test fault injection only (a zone's `testFaults`): changes the state behind the log's
    /// back, as a bug or a bit flip would, so that the copies' digests disagree.
    public mutating func corruptStateForTesting(_ change: (inout Meeting) -> Void) {
        change(&meeting)
    }

    /// Where a participant's op was committed, if this log still remembers it: a copy of
    /// the meeting answers a resent op from this, as its host would.
    public func committedSeq(of participant: ParticipantID, opID: OpID) -> Seq? {
        outcomes.seq(for: OpOutcomes.Key(participant: participant, opID: opID))
    }

    /// What a client that has seen everything up to `seq` needs next.
    /// - Parameter seq: `nil` for a client that has seen nothing of this meeting yet.
    public func resume(after seq: Seq?) -> ResumePlan {
        // Seq 0 means "nothing seen": a replay from the first op would never tell the client
        // the meeting's title and settings, which only a snapshot carries.
        guard let seq, seq > 0 else { return .snapshot(snapshot()) }
        if seq > committedSeq { return .fromFuture(latest: committedSeq) }
        if seq == committedSeq { return .replay([]) }
        guard let first = tail.first, first.seq <= seq + 1 else { return .snapshot(snapshot()) }
        return .replay(Array(entries(from: seq + 1, through: committedSeq)))
    }

    /// The committed state. Only valid when nothing is in flight, which is when the host
    /// takes checkpoints.
    public func snapshot() -> Snapshot {
        precondition(committedSeq == lastSeq, "snapshot with uncommitted entries in flight")
        return Snapshot(meeting: meeting, seq: committedSeq, epoch: epoch, outcomes: outcomes)
    }

    /// Whether entries have been sequenced that are not durable yet.
    public var hasUncommitted: Bool { lastSeq > committedSeq }

    // MARK: - Private

    private func entries(from first: Seq, through last: Seq) -> ArraySlice<LogEntry> {
        guard keptStart < kept.count, first <= last else { return [] }
        let head = kept[keptStart].seq
        let lower = keptStart + Int(first - head)
        let upper = keptStart + Int(last - head)
        precondition(lower >= keptStart && upper < kept.count, "entries \(first)...\(last) are not in the tail")
        return kept[lower...upper]
    }

    /// Drops committed entries that fall outside the resume window.
    private mutating func trimTail() {
        let count = kept.count - keptStart
        let committedCount = count - Int(lastSeq - committedSeq)
        guard committedCount > window.minEntries else { return }
        let newest = kept[keptStart + committedCount - 1].at
        var drop = 0
        let removable = committedCount - window.minEntries
        while drop < removable,
              count - drop > window.maxEntries || kept[keptStart + drop].at < newest - window.minAgeMillis {
            drop += 1
        }
        guard drop > 0 else { return }
        keptStart += drop
        // Compacting when the dead prefix is as long as the live part keeps each entry's
        // share of the copying constant, and the array at most twice the tail.
        if keptStart >= kept.count - keptStart {
            kept.removeFirst(keptStart)
            keptStart = 0
        }
    }

    private static func key(_ issuer: Issuer, _ opID: OpID?) -> OpOutcomes.Key? {
        guard let opID, case .participant(let participant) = issuer else { return nil }
        return OpOutcomes.Key(participant: participant, opID: opID)
    }

    private static func isContiguous(_ entries: [LogEntry]) -> Bool {
        zip(entries, entries.dropFirst()).allSatisfy { $0.seq + 1 == $1.seq }
    }
}
