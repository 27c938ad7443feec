import ParleyCore

/// A meeting as created, before anything happened in it.
public struct MeetingRecord: Codable, Equatable, Sendable {
    public var id: MeetingID
    public var title: String
    public var settings: MeetingSettings
    public var createdAt: Millis

    public init(id: MeetingID, title: String, settings: MeetingSettings, createdAt: Millis) {
        self.id = id
        self.title = title
        self.settings = settings
        self.createdAt = createdAt
    }
}

/// What the store holds for one meeting, checked and ready to rebuild it with
/// `MeetingLog(recovering:entries:history:epoch:)`.
public struct RecoveredMeeting: Sendable {
    public var record: MeetingRecord
    /// The newest snapshot whose checksum verified, or nil if none did (replay from seq 1
    /// on an empty `Meeting` built from `record`).
    public var snapshot: Snapshot?
    /// Every committed entry after `snapshot` (after seq 0 without one), in seq order,
    /// checksums verified. Stops before the first entry that fails its checksum.
    public var entries: [LogEntry]
    /// Up to `historyLimit` committed entries ending at the snapshot's seq, for clients
    /// that resume from before the snapshot. Empty without a snapshot.
    public var history: [LogEntry]
    /// The newest epoch recorded for this meeting (0 if none); the next host must use a
    /// greater one.
    public var epoch: Epoch
    /// What recovery found and did, in words for the operator's log: a snapshot that
    /// failed its checksum and was skipped, a log tail cut at a corrupt entry, and so on.
    public var warnings: [String]

    public init(record: MeetingRecord, snapshot: Snapshot?, entries: [LogEntry], history: [LogEntry],
                epoch: Epoch, warnings: [String]) {
        self.record = record
        self.snapshot = snapshot
        self.entries = entries
        self.history = history
        self.epoch = epoch
        self.warnings = warnings
    }
}

public enum StoreError: Error, Equatable, Sendable, CustomStringConvertible {
    case unknownMeeting(MeetingID)
    case meetingExists(MeetingID)
    /// A write under `epoch` was refused because the meeting has moved on to `current`:
    /// this host has been replaced and must stop.
    case fenced(MeetingID, epoch: Epoch, current: Epoch)
    /// The entries do not continue the log (a seq is missing or repeated).
    case notContiguous(MeetingID, expected: Seq, found: Seq)
    /// The database failed; `reason` is the underlying message.
    case io(String)
    /// The store's configuration is wrong (a malformed store URL, an unknown option); the
    /// message says what to fix.
    case misconfigured(String)
    /// The database cannot be used: unreachable, a wrong password, no such database, or a
    /// schema newer than this binary. The message names the problem.
    case unavailable(String)

    public var description: String {
        switch self {
        case .unknownMeeting(let id): "no meeting \(id) in the store"
        case .meetingExists(let id): "meeting \(id) already exists"
        case .fenced(let id, let epoch, let current):
            "meeting \(id): write under \(epoch) refused, the meeting is at \(current) (this host was replaced)"
        case .notContiguous(let id, let expected, let found):
            "meeting \(id): expected seq \(expected) next, got \(found)"
        case .io(let reason): "storage failure: \(reason)"
        case .misconfigured(let problem): problem
        case .unavailable(let problem): problem
        }
    }
}

/// Durable storage for meetings: their records, epochs, logs and snapshots.
///
/// Guarantees every implementation keeps:
/// - `append` returns only after the entries are durable (they survive kill -9).
/// - `append` is atomic across all the meetings in one call (one transaction), which is
///   what makes group commit cheap.
/// - Epochs never decrease; an append or epoch change under an epoch older than the
///   meeting's current one fails with `.fenced`.
/// - `writeSnapshot` is all-or-nothing.
public protocol Store: Sendable {
    func createMeeting(_ record: MeetingRecord) async throws(StoreError)
    func meeting(_ id: MeetingID) async throws(StoreError) -> MeetingRecord?
    func meetings() async throws(StoreError) -> [MeetingRecord]
    /// Records that a new host now owns the meeting under `epoch`. Fails with `.fenced`
    /// unless `epoch` is greater than the stored one.
    func advanceEpoch(_ meeting: MeetingID, to epoch: Epoch) async throws(StoreError)
    /// Takes the meeting over under the next epoch (one more than the stored one) and
    /// returns it. From then on every append or snapshot under an older epoch is fenced, so
    /// a previous host, even one that was paused and wakes up, can commit nothing.
    func claimNextEpoch(_ meeting: MeetingID) async throws(StoreError) -> Epoch
    /// The named lease, or nil if it was never written. Its `remainingMs` is measured on the
    /// store's own clock.
    func lease(_ name: String) async throws(StoreError) -> StoredLease?
    /// Compare-and-set, decided by the store on its own clock: writes `claim` only if the
    /// stored lease has `expected`'s holder and term (nil: none stored), and either the
    /// claimer already holds it (a renewal) or it has lapsed. The new lease runs for
    /// `claim.durationMs` from the store's now. Returns whether it was written.
    func replaceLease(_ name: String, expected: LeaseVersion?, with claim: LeaseClaim) async throws(StoreError) -> Bool
    /// Appends committed entries, in one transaction for all meetings given. Each meeting's
    /// entries must continue its log without gaps.
    func append(_ batch: [MeetingID: [LogEntry]]) async throws(StoreError)
    func writeSnapshot(_ meeting: MeetingID, _ snapshot: Snapshot) async throws(StoreError)
    func recover(_ meeting: MeetingID, historyLimit: Int) async throws(StoreError) -> RecoveredMeeting
    /// Only the verified log after `seq`, for a standby copy that holds the meeting up to
    /// there: no snapshot is read (`snapshot` is nil) and `entries` starts at `seq + 1`.
    func recover(_ meeting: MeetingID, after seq: Seq) async throws(StoreError) -> RecoveredMeeting
    /// What `recover(meeting, historyLimit: 0)` would return, for a reader that is not the
    /// meeting's host (the web front checking who may upload): nothing is changed and
    /// nothing logged. A log that recovery would cut is read up to the cut and left as it
    /// is, for the host's recovery to quarantine.
    func peek(_ meeting: MeetingID) async throws(StoreError) -> RecoveredMeeting
    /// Counts one more crash of a process while it applied `op` of `participant`, and
    /// returns the op's count so far.
    func recordCrash(_ meeting: MeetingID, participant: ParticipantID, op: OpID, at: Millis) async throws(StoreError) -> Int
    /// The ops of `meeting` that have crashed a process, with how often.
    func crashes(_ meeting: MeetingID) async throws(StoreError) -> [OpCrashes]
    /// Appends joins and leaves to the attendance log.
    func recordAttendance(_ records: [Attendance]) async throws(StoreError)
    /// The attendance log in the order it was written: of one meeting, or of all.
    func attendance(_ meeting: MeetingID?) async throws(StoreError) -> [Attendance]
    /// Replaces what `machine`'s supervisor last published about its processes (each as the
    /// JSON of its status), stamped with the store's clock.
    func publishProcesses(machine: String, _ processes: [PublishedProcess]) async throws(StoreError)
    /// What every machine last published, with its age on the store's clock.
    func publishedProcesses() async throws(StoreError) -> [PublishedProcess]
}

/// One process as its machine's supervisor last published it, for a cluster-wide
/// `parley ctl status`.
public struct PublishedProcess: Equatable, Sendable {
    public var machine: String
    public var name: String
    /// The process's status, as JSON.
    public var status: String
    /// How long ago it was published, by the store's clock (0 when publishing).
    public var ageMs: Int64

    public init(machine: String, name: String, status: String, ageMs: Int64 = 0) {
        self.machine = machine
        self.name = name
        self.status = status
        self.ageMs = ageMs
    }
}


/// An op that crashed the processes applying it, `count` times.
public struct OpCrashes: Equatable, Sendable {
    public var participant: ParticipantID
    public var op: OpID
    public var count: Int

    public init(participant: ParticipantID, op: OpID, count: Int) {
        self.participant = participant
        self.op = op
        self.count = count
    }
}

/// A lease as the store keeps it: who holds it, where to reach them, under which term, and
/// how long it still runs. The zone's rules give it meaning; the store only reads and
/// compare-and-sets it, atomically, for every process sharing the store.
///
/// Expiry is kept and compared on the store's clock only (the database's `now()`): the
/// processes sharing a store may run on machines whose clocks differ, so no caller's clock
/// ever decides whether a lease has lapsed.
public struct StoredLease: Equatable, Sendable {
    public var holder: String
    public var address: String
    public var term: UInt64
    /// Milliseconds until the lease lapses, on the store's clock when it was read: it is
    /// valid through its last millisecond (0) and negative once it has lapsed.
    public var remainingMs: Int64

    public init(holder: String, address: String, term: UInt64, remainingMs: Int64) {
        self.holder = holder
        self.address = address
        self.term = term
        self.remainingMs = remainingMs
    }

    public var version: LeaseVersion { LeaseVersion(holder: holder, term: term) }
    /// Whether the lease still ran when it was read.
    public var isLive: Bool { remainingMs >= 0 }
}

/// What a compare-and-set on a lease expects to find.
public struct LeaseVersion: Equatable, Sendable {
    public var holder: String
    public var term: UInt64

    public init(holder: String, term: UInt64) {
        self.holder = holder
        self.term = term
    }
}

/// A lease to write: it runs `durationMs` from the store's now.
public struct LeaseClaim: Equatable, Sendable {
    public var holder: String
    public var address: String
    public var term: UInt64
    public var durationMs: Int64

    public init(holder: String, address: String, term: UInt64, durationMs: Int64) {
        self.holder = holder
        self.address = address
        self.term = term
        self.durationMs = durationMs
    }
}
