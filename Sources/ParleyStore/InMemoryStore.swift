import FoundationEssentials
import Logging
import ParleyCore

/// Faults an ``InMemoryStore`` injects into the calls it serves, changed while it runs with
/// ``InMemoryStore/setFaults(_:)``. Each call reads the faults in effect when it runs (after
/// its latency).
public struct StoreFaults: Equatable, Sendable {
    /// How long every call waits, through the store's sleep, before it runs.
    public var latency: Duration
    /// Every `append` fails with ``StoreFaults/appendFailure``, the error a real store throws
    /// when its database cannot write (a full disk, a lost connection). Nothing is stored.
    public var failAppends: Bool
    /// Every `append` is fenced, even under the meeting's current epoch, as if another host
    /// had claimed the meeting (the stored epoch does not change). Nothing is stored.
    public var fenceAppends: Bool

    public init(latency: Duration = .zero, failAppends: Bool = false, fenceAppends: Bool = false) {
        self.latency = latency
        self.failAppends = failAppends
        self.fenceAppends = fenceAppends
    }

    /// No faults: every call runs at once and as a healthy store's would.
    public static let none = StoreFaults()
    /// What a failing `append` throws.
    public static let appendFailure = StoreError.io("injected fault: the log could not be written")
}

/// A `ZoneStore` kept in memory, for tests and the simulation: one actor holding what
/// SQLite and PostgreSQL keep in tables, under the same rules (fencing and contiguity by
/// `StoredForm`, recovery by `Recovery`, over rows stored as JSON beside their SHA-256).
///
/// Nothing survives the process. It has no clock of its own: lease expiry and the age of
/// published processes are measured on `now`, which stands for the database's clock, and
/// latency goes through `sleep`. Every call runs atomically once its latency has passed, so
/// several "processes" share one instance as they would share a database. Documents
/// (`DocumentRows`, PostgreSQL's alone) are not kept.
public actor InMemoryStore: Store, AccountStore {
    private let now: @Sendable () -> Int64
    private let sleep: @Sendable (Duration) async -> Void
    private let logger: Logger
    private var faults = StoreFaults.none

    private var stored: [MeetingID: StoredMeeting] = [:]
    private var leases: [String: (lease: LeaseClaim, expiresAtMs: Int64)] = [:]
    private var opCrashes: [OpCrashKey: Int] = [:]
    private var attendanceLog: [Attendance] = []
    private var published: [String: [(process: PublishedProcess, publishedAtMs: Int64)]] = [:]
    private var accounts: [String: Account] = [:]
    private var sessions: [String: (account: String, expiresAt: Millis)] = [:]
    private var listed: [MeetingID: MeetingListing] = [:]

    /// - Parameters:
    ///   - now: the store's clock in Unix milliseconds, as a database's `now()`: leases and
    ///     the age of published processes are measured on it, and web sessions that expired
    ///     by it are dropped.
    ///   - sleep: waits out a call's latency (``StoreFaults/latency``). It cannot throw: as
    ///     with a real store, a call that has started runs to its end, cancelled or not.
    public init(now: @escaping @Sendable () -> Int64,
                sleep: @escaping @Sendable (Duration) async -> Void = { try? await Task.sleep(for: $0) },
                logger: Logger = Logger(label: "parley.store")) {
        self.now = now
        self.sleep = sleep
        self.logger = logger
    }

    /// Replaces the faults; calls already past their latency are not affected.
    public func setFaults(_ faults: StoreFaults) {
        self.faults = faults
    }

    /// Waits out the latency in effect.
    private func delay() async {
        if faults.latency > .zero { await sleep(faults.latency) }
    }

    // MARK: - Store

    public func createMeeting(_ record: MeetingRecord) async throws(StoreError) {
        await delay()
        guard stored[record.id] == nil else { throw .meetingExists(record.id) }
        stored[record.id] = StoredMeeting(record: record)
    }

    public func meeting(_ id: MeetingID) async throws(StoreError) -> MeetingRecord? {
        await delay()
        return stored[id]?.record
    }

    public func meetings() async throws(StoreError) -> [MeetingRecord] {
        await delay()
        return stored.values.map(\.record).sorted { $0.id < $1.id }
    }

    public func advanceEpoch(_ meeting: MeetingID, to epoch: Epoch) async throws(StoreError) {
        await delay()
        guard let current = stored[meeting]?.epoch else { throw .unknownMeeting(meeting) }
        guard epoch > current else { throw .fenced(meeting, epoch: epoch, current: current) }
        stored[meeting]?.epoch = epoch
    }

    public func claimNextEpoch(_ meeting: MeetingID) async throws(StoreError) -> Epoch {
        await delay()
        guard let current = stored[meeting]?.epoch else { throw .unknownMeeting(meeting) }
        let next = Epoch(current.rawValue + 1)
        stored[meeting]?.epoch = next
        return next
    }

    public func lease(_ name: String) async throws(StoreError) -> StoredLease? {
        await delay()
        return storedLease(name)
    }

    public func replaceLease(_ name: String, expected: LeaseVersion?, with claim: LeaseClaim) async throws(StoreError) -> Bool {
        await delay()
        let current = storedLease(name)
        guard current?.version == expected else { return false }
        if let current, current.holder != claim.holder, current.isLive { return false }
        leases[name] = (claim, now() + claim.durationMs)
        return true
    }

    private func storedLease(_ name: String) -> StoredLease? {
        leases[name].map { stored in
            StoredLease(holder: stored.lease.holder, address: stored.lease.address, term: stored.lease.term,
                        remainingMs: stored.expiresAtMs - now())
        }
    }

    /// Checked as SQLite and PostgreSQL check it (`StoredForm.checkAppend`), for every meeting
    /// before anything is stored, so a refused batch leaves the store as it was. An injected
    /// failure comes before the checks, as a database that cannot write refuses everything.
    public func append(_ batch: [MeetingID: [LogEntry]]) async throws(StoreError) {
        await delay()
        let rows = try StoredForm.rows(batch)
        guard !rows.isEmpty else { return }
        if faults.failAppends { throw StoreFaults.appendFailure }
        var checked: [(MeetingID, [StoredForm.EncodedEntry], newest: Epoch)] = []
        for (meeting, entries) in rows {
            guard let current = stored[meeting] else { throw .unknownMeeting(meeting) }
            if faults.fenceAppends { throw .fenced(meeting, epoch: entries[0].epoch, current: current.epoch) }
            let newest = try StoredForm.checkAppend(meeting, entries, current: current.epoch, lastSeq: current.lastSeq)
            checked.append((meeting, entries, newest))
        }
        for (meeting, entries, newest) in checked {
            stored[meeting]?.log += entries.map { StoredRow(seq: $0.seq, body: $0.body, checksum: $0.checksum) }
            stored[meeting]?.epoch = newest
        }
    }

    /// Checked as the others check it (`StoredForm.checkSnapshot`); keeps the newest
    /// `SQLiteStore.snapshotsKept`.
    public func writeSnapshot(_ meeting: MeetingID, _ snapshot: Snapshot) async throws(StoreError) {
        await delay()
        let (body, checksum) = try StoredForm.sealed(snapshot)
        guard let current = stored[meeting] else { throw .unknownMeeting(meeting) }
        try StoredForm.checkSnapshot(meeting, snapshot, current: current.epoch, lastSeq: current.lastSeq)
        var snapshots = current.snapshots.filter { $0.seq != snapshot.seq }
        snapshots.append(StoredRow(seq: snapshot.seq, body: body, checksum: checksum))
        snapshots.sort { $0.seq > $1.seq }
        stored[meeting]?.snapshots = Array(snapshots.prefix(SQLiteStore.snapshotsKept))
    }

    public func recover(_ meeting: MeetingID, historyLimit: Int) async throws(StoreError) -> RecoveredMeeting {
        await delay()
        return try await recover(meeting, historyLimit: historyLimit, after: nil)
    }

    public func recover(_ meeting: MeetingID, after seq: Seq) async throws(StoreError) -> RecoveredMeeting {
        await delay()
        return try await recover(meeting, historyLimit: 0, after: seq)
    }

    public func peek(_ meeting: MeetingID) async throws(StoreError) -> RecoveredMeeting {
        await delay()
        do {
            return try await Recovery.scan(InMemoryReads(meeting: stored[meeting]), meeting, historyLimit: 0).recovered
        } catch let error as StoreError {
            throw error
        } catch {
            throw .io(String(describing: error))
        }
    }

    /// Reads one moment's copy of the meeting (its arrays are values), as the others read in
    /// one transaction; a cut log is quarantined as in `SQLiteStore.recover`.
    private func recover(_ meeting: MeetingID, historyLimit: Int, after: Seq?) async throws(StoreError) -> RecoveredMeeting {
        let scan: Recovery.Scan
        do {
            scan = try await Recovery.scan(InMemoryReads(meeting: stored[meeting]), meeting,
                                           historyLimit: max(0, historyLimit), after: after)
        } catch let error as StoreError {
            throw error
        } catch {
            throw .io(String(describing: error))
        }
        // Decided here, on the actor, rather than in a closure `Recovery.finish` calls off it.
        let quarantined = scan.cut.map { quarantine(meeting, $0) } ?? false
        return try await Recovery.finish(scan, meeting, logger: logger) { _ in quarantined }
    }

    /// Moves the log from `cut.seq` on to the quarantine, unless the log changed at the cut
    /// since it was read. Returns whether it moved anything.
    private func quarantine(_ meeting: MeetingID, _ cut: Recovery.Cut) -> Bool {
        guard var current = stored[meeting], current.log.first(where: { $0.seq == cut.seq })?.checksum == cut.checksumSeen
        else { return false }
        for row in current.log where row.seq >= cut.seq { current.quarantine[row.seq] = row }
        current.log.removeAll { $0.seq >= cut.seq }
        stored[meeting] = current
        return true
    }

    public func recordCrash(_ meeting: MeetingID, participant: ParticipantID, op: OpID, at: Millis) async throws(StoreError) -> Int {
        await delay()
        let key = OpCrashKey(meeting: meeting, participant: participant, op: op)
        opCrashes[key, default: 0] += 1
        return opCrashes[key]!
    }

    public func crashes(_ meeting: MeetingID) async throws(StoreError) -> [OpCrashes] {
        await delay()
        return opCrashes.filter { $0.key.meeting == meeting }
            .map { OpCrashes(participant: $0.key.participant, op: $0.key.op, count: $0.value) }
            .sorted { ($0.participant.rawValue, $0.op.rawValue) < ($1.participant.rawValue, $1.op.rawValue) }
    }

    public func recordAttendance(_ records: [Attendance]) async throws(StoreError) {
        await delay()
        attendanceLog += records
    }

    public func attendance(_ meeting: MeetingID?) async throws(StoreError) -> [Attendance] {
        await delay()
        guard let meeting else { return attendanceLog }
        return attendanceLog.filter { $0.meeting == meeting }
    }

    public func publishProcesses(machine: String, _ processes: [PublishedProcess]) async throws(StoreError) {
        await delay()
        let at = now()
        published[machine] = processes.map { process in
            (PublishedProcess(machine: machine, name: process.name, status: process.status), at)
        }
    }

    public func publishedProcesses() async throws(StoreError) -> [PublishedProcess] {
        await delay()
        let at = now()
        return published.values.joined()
            .map { stored in
                var process = stored.process
                process.ageMs = at - stored.publishedAtMs
                return process
            }
            .sorted { ($0.machine, $0.name) < ($1.machine, $1.name) }
    }

    // MARK: - AccountStore
    //
    // The others' constraints hold here too, and break the same way (`.io`): an account id
    // or a session used twice, a session or listing naming an account or meeting that is not
    // stored.

    public func createAccount(_ account: Account) async throws(StoreError) -> Bool {
        await delay()
        guard !accounts.values.contains(where: { $0.username == account.username }) else { return false }
        guard accounts[account.id] == nil else { throw Self.constraint("account \(account.id) already exists") }
        accounts[account.id] = account
        return true
    }

    public func account(username: String) async throws(StoreError) -> Account? {
        await delay()
        return accounts.values.first { $0.username == username }
    }

    public func account(id: String) async throws(StoreError) -> Account? {
        await delay()
        return accounts[id]
    }

    public func changeSignInState<T: Sendable>(account: String, _ change: @escaping @Sendable (inout SignInState) -> T)
        async throws(StoreError) -> T?
    {
        await delay()
        guard var record = accounts[account] else { return nil }
        var state = SignInState(failures: record.failedSignIns, lockedUntil: record.lockedUntil)
        let result = change(&state)
        (record.failedSignIns, record.lockedUntil) = (state.failures, state.lockedUntil)
        accounts[account] = record
        return result
    }

    public func createSession(tokenHash: String, account: String, expiresAt: Millis) async throws(StoreError) {
        await delay()
        // Expired sessions go whenever a new one is made, so the table stays small.
        let at = now()
        sessions = sessions.filter { $0.value.expiresAt >= at }
        guard sessions[tokenHash] == nil else { throw Self.constraint("a session with this token hash already exists") }
        guard accounts[account] != nil else { throw Self.constraint("a session names account \(account), which does not exist") }
        sessions[tokenHash] = (account, expiresAt)
    }

    public func sessionAccount(tokenHash: String, now: Millis) async throws(StoreError) -> Account? {
        await delay()
        guard let session = sessions[tokenHash], session.expiresAt > now else { return nil }
        return accounts[session.account]
    }

    public func deleteSession(tokenHash: String) async throws(StoreError) {
        await delay()
        sessions[tokenHash] = nil
    }

    public func sessions(of account: String, now: Millis) async throws(StoreError) -> [WebSession] {
        await delay()
        return sessions.filter { $0.value.account == account && $0.value.expiresAt > now }
            .map { WebSession(tokenHash: $0.key, expiresAt: $0.value.expiresAt) }
            .sorted { ($0.expiresAt, $1.tokenHash) > ($1.expiresAt, $0.tokenHash) }
    }

    public func deleteSession(tokenHash: String, of account: String) async throws(StoreError) -> Bool {
        await delay()
        guard sessions[tokenHash]?.account == account else { return false }
        sessions[tokenHash] = nil
        return true
    }

    public func deleteSessions(of account: String, keeping: String) async throws(StoreError) -> Int {
        await delay()
        let ending = sessions.filter { $0.value.account == account && $0.key != keeping }.map(\.key)
        for hash in ending { sessions[hash] = nil }
        return ending.count
    }

    public func createListing(_ listing: MeetingListing) async throws(StoreError) {
        await delay()
        guard listed[listing.meeting] == nil else { throw Self.constraint("meeting \(listing.meeting) is already listed") }
        guard stored[listing.meeting] != nil else { throw Self.constraint("a listing names meeting \(listing.meeting), which does not exist") }
        guard accounts[listing.owner] != nil else { throw Self.constraint("a listing names owner \(listing.owner), which does not exist") }
        listed[listing.meeting] = listing
    }

    public func listing(_ meeting: MeetingID) async throws(StoreError) -> MeetingListing? {
        await delay()
        return listed[meeting]
    }

    public func listings(for account: Account) async throws(StoreError) -> [MeetingListing] {
        await delay()
        return listed.values.filter { $0.owner == account.id || $0.attendees.contains(account.username) }
            .sorted { ($0.scheduledAt ?? $0.startedAt ?? $0.createdAt, $0.meeting) < ($1.scheduledAt ?? $1.startedAt ?? $1.createdAt, $1.meeting) }
    }

    public func markStarted(_ meeting: MeetingID, at: Millis) async throws(StoreError) {
        await delay()
        // The first start stays.
        if listed[meeting]?.startedAt == nil { listed[meeting]?.startedAt = at }
    }

    private static func constraint(_ problem: String) -> StoreError { .io("constraint failed: \(problem)") }

    // MARK: - Raw access, for tests (as SQLiteStore's `rawExecute`)

    /// The tables of rows a database would keep on disk, which tests damage.
    enum RawTable: String, Sendable {
        case log, snapshots
        case quarantine = "log_quarantine"
    }

    /// Every row of `table`, of every meeting.
    func rawRows(_ table: RawTable) -> [StoredRow] {
        stored.values.flatMap { meeting in
            switch table {
            case .log: meeting.log
            case .snapshots: meeting.snapshots
            case .quarantine: Array(meeting.quarantine.values)
            }
        }
    }

    /// Rewrites the rows of `table` at `seq` (every row with nil), bypassing every check:
    /// `edit` returns the row to keep in its place, or nil to delete it.
    func rawEdit(_ table: RawTable, seq: Seq?, _ edit: @Sendable (StoredRow) -> StoredRow?) {
        func edited(_ rows: [StoredRow]) -> [StoredRow] {
            rows.compactMap { row in seq == nil || row.seq == seq ? edit(row) : row }
        }
        for (id, var meeting) in stored {
            switch table {
            case .log: meeting.log = edited(meeting.log)
            case .snapshots: meeting.snapshots = edited(meeting.snapshots)
            case .quarantine:
                meeting.quarantine = Dictionary(uniqueKeysWithValues: edited(Array(meeting.quarantine.values)).map { ($0.seq, $0) })
            }
            stored[id] = meeting
        }
    }
}

/// One meeting as the store keeps it: what SQLite keeps in its `meetings`, `log`,
/// `snapshots` and `log_quarantine` tables.
private struct StoredMeeting {
    var record: MeetingRecord
    var epoch = Epoch(0)
    /// In seq order; contiguous unless damaged.
    var log: [StoredRow] = []
    /// Newest first.
    var snapshots: [StoredRow] = []
    var quarantine: [Seq: StoredRow] = [:]

    /// The newest seq stored, as `SELECT max(seq)` (0 for an empty log).
    var lastSeq: Seq { log.last?.seq ?? 0 }
}

private struct OpCrashKey: Hashable {
    var meeting: MeetingID
    var participant: ParticipantID
    var op: OpID
}

/// Recovery's reads, from one moment's copy of a meeting.
private struct InMemoryReads: RecoveryReads {
    let meeting: StoredMeeting?

    func meeting(_ id: MeetingID) async throws -> (MeetingRecord, Epoch)? {
        meeting.map { ($0.record, $0.epoch) }
    }

    func snapshots(_ id: MeetingID) async throws -> [StoredRow] {
        meeting?.snapshots ?? []
    }

    func log(_ id: MeetingID, after seq: Seq) async throws -> [StoredRow] {
        meeting?.log.filter { $0.seq > seq } ?? []
    }

    func log(_ id: MeetingID, through seq: Seq, limit: Int) async throws -> [StoredRow] {
        Array((meeting?.log.filter { $0.seq <= seq } ?? []).reversed().prefix(limit))
    }
}
