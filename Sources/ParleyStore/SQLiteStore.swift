import FoundationEssentials
import GRDB
import Logging
import ParleyCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How hard SQLite works to make a commit durable (SQLite's `PRAGMA synchronous`, in WAL mode).
public enum Synchronous: String, Sendable {
    /// Every commit is fsynced: it survives kill -9 and power loss.
    case full = "FULL"
    /// Commits reach the OS but the WAL is fsynced only at checkpoints: survives kill -9 of
    /// the process, not a power loss or kernel crash. For tests and benchmarks.
    case normal = "NORMAL"
}

/// The embedded `Store`: one SQLite file (`parley.sqlite`) in WAL mode, written by one
/// connection and read by a pool.
///
/// Every log entry and snapshot is stored as JSON beside its SHA-256, so recovery can tell
/// a damaged row from a good one and fall back instead of rebuilding a wrong meeting.
///
/// Writes do not react to task cancellation: a transaction that has started runs to its
/// end, so a caller that goes away never leaves the outcome of its commit in doubt for the
/// others sharing it (see `GroupCommitLog`).
public final class SQLiteStore: Store, Sendable {
    private let pool: DatabasePool
    private let logger: Logger

    /// Opens (creating if needed) `directory/parley.sqlite` and brings its schema up to date.
    public init(directory: String, synchronous: Synchronous = .full,
                logger: Logger = Logger(label: "parley.store")) throws(StoreError) {
        self.logger = logger
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let path = directory.hasSuffix("/") ? directory + "parley.sqlite" : directory + "/parley.sqlite"
            var configuration = Configuration()
            configuration.busyMode = .timeout(5)
            pool = try DatabasePool(path: path, configuration: configuration)
            // GRDB sets NORMAL while switching to WAL, after any `prepareDatabase` hook, so
            // the durability level goes on the one writer connection afterwards.
            try pool.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA synchronous = \(synchronous.rawValue)")
            }
            if try pool.read({ db in try Self.migrator.hasBeenSuperseded(db) }) {
                throw StoreError.unavailable(
                    "the schema of \(path) was written by a newer Parley (it has migrations this one does not know); "
                        + "run that version, or restore a backup from before the upgrade")
            }
            // The processes of a zone may open a new store at the same moment; a migration that
            // lost the race sees the winner's schema on the next attempt.
            var attempt = 0
            while true {
                do {
                    try Self.migrator.migrate(pool)
                    break
                } catch where attempt < 20 {
                    attempt += 1
                    usleep(50_000)
                }
            }
        } catch let error as StoreError {
            throw error
        } catch {
            throw .io("cannot open the store in \(directory): \(error)")
        }
    }

    // MARK: - Store

    public func createMeeting(_ record: MeetingRecord) async throws(StoreError) {
        let settings = try StoredForm.encode(record.settings)
        try await write { db in
            if try Self.storedEpoch(db, record.id) != nil { throw StoreError.meetingExists(record.id) }
            try db.execute(
                sql: "INSERT INTO meetings (id, title, settings, created_at, epoch) VALUES (?, ?, ?, ?, 0)",
                arguments: [record.id.rawValue, record.title, String(decoding: settings, as: UTF8.self),
                            record.createdAt])
        }
    }

    public func meeting(_ id: MeetingID) async throws(StoreError) -> MeetingRecord? {
        try await read { db in
            try Row.fetchOne(db, sql: "SELECT id, title, settings, created_at FROM meetings WHERE id = ?",
                             arguments: [id.rawValue]).map(Self.record)
        }
    }

    public func meetings() async throws(StoreError) -> [MeetingRecord] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT id, title, settings, created_at FROM meetings ORDER BY id")
                .map(Self.record)
        }
    }

    public func advanceEpoch(_ meeting: MeetingID, to epoch: Epoch) async throws(StoreError) {
        try await write { db in
            guard let current = try Self.storedEpoch(db, meeting) else { throw StoreError.unknownMeeting(meeting) }
            guard epoch > current else { throw StoreError.fenced(meeting, epoch: epoch, current: current) }
            try db.execute(sql: "UPDATE meetings SET epoch = ? WHERE id = ?",
                           arguments: [Int64(bitPattern: epoch.rawValue), meeting.rawValue])
        }
    }

    public func claimNextEpoch(_ meeting: MeetingID) async throws(StoreError) -> Epoch {
        try await write { db in
            guard let current = try Self.storedEpoch(db, meeting) else { throw StoreError.unknownMeeting(meeting) }
            let next = Epoch(current.rawValue + 1)
            try db.execute(sql: "UPDATE meetings SET epoch = ? WHERE id = ?",
                           arguments: [Int64(bitPattern: next.rawValue), meeting.rawValue])
            return next
        }
    }

    public func lease(_ name: String) async throws(StoreError) -> StoredLease? {
        try await read { db in try Self.storedLease(db, name) }
    }

    public func replaceLease(_ name: String, expected: LeaseVersion?, with claim: LeaseClaim) async throws(StoreError) -> Bool {
        try await write { db in
            let stored = try Self.storedLease(db, name)
            guard stored?.version == expected else { return false }
            if let stored, stored.holder != claim.holder, stored.isLive { return false }
            try db.execute(
                sql: """
                    INSERT INTO leases (name, holder, address, term, expires_at) VALUES (?, ?, ?, ?, \(Self.nowMs) + ?)
                    ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, address = excluded.address,
                        term = excluded.term, expires_at = excluded.expires_at
                    """,
                arguments: [name, claim.holder, claim.address, Int64(bitPattern: claim.term), claim.durationMs])
            return true
        }
    }

    /// SQLite's clock, in Unix milliseconds: the store's clock for leases. One machine
    /// shares an SQLite file, so this is that machine's clock.
    static let nowMs = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"

    public func recordCrash(_ meeting: MeetingID, participant: ParticipantID, op: OpID, at: Millis) async throws(StoreError) -> Int {
        try await write { db in
            try db.execute(
                sql: """
                    INSERT INTO op_crashes (meeting, participant, op_id, crashes, last_crash_at) VALUES (?, ?, ?, 1, ?)
                    ON CONFLICT(meeting, participant, op_id) DO UPDATE SET crashes = crashes + 1, last_crash_at = excluded.last_crash_at
                    """,
                arguments: [meeting.rawValue, participant.rawValue, op.rawValue, at])
            return try Int.fetchOne(db, sql: "SELECT crashes FROM op_crashes WHERE meeting = ? AND participant = ? AND op_id = ?",
                                    arguments: [meeting.rawValue, participant.rawValue, op.rawValue]) ?? 1
        }
    }

    public func crashes(_ meeting: MeetingID) async throws(StoreError) -> [OpCrashes] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT participant, op_id, crashes FROM op_crashes WHERE meeting = ? ORDER BY participant, op_id",
                             arguments: [meeting.rawValue])
                .map { OpCrashes(participant: ParticipantID($0["participant"]), op: OpID($0["op_id"]), count: $0["crashes"]) }
        }
    }

    public func recordAttendance(_ records: [Attendance]) async throws(StoreError) {
        guard !records.isEmpty else { return }
        try await write { db in
            for record in records {
                try db.execute(
                    sql: "INSERT INTO attendance (meeting, participant, name, event, server, at) VALUES (?, ?, ?, ?, ?, ?)",
                    arguments: [record.meeting.rawValue, record.participant.rawValue, record.name, record.event.rawValue,
                                record.server, record.at])
            }
        }
    }

    public func attendance(_ meeting: MeetingID?) async throws(StoreError) -> [Attendance] {
        try await read { db in
            let rows = if let meeting {
                try Row.fetchAll(db, sql: "SELECT * FROM attendance WHERE meeting = ? ORDER BY id", arguments: [meeting.rawValue])
            } else {
                try Row.fetchAll(db, sql: "SELECT * FROM attendance ORDER BY id")
            }
            return rows.compactMap { row in
                Attendance.Event(rawValue: row["event"]).map {
                    Attendance(meeting: MeetingID(row["meeting"]), participant: ParticipantID(row["participant"]), name: row["name"],
                               event: $0, server: row["server"], at: row["at"])
                }
            }
        }
    }

    public func publishProcesses(machine: String, _ processes: [PublishedProcess]) async throws(StoreError) {
        try await write { db in
            try db.execute(sql: "DELETE FROM published_processes WHERE machine = ?", arguments: [machine])
            for process in processes {
                try db.execute(
                    sql: "INSERT INTO published_processes (machine, name, status, published_at) VALUES (?, ?, ?, \(Self.nowMs))",
                    arguments: [machine, process.name, process.status])
            }
        }
    }

    public func publishedProcesses() async throws(StoreError) -> [PublishedProcess] {
        try await read { db in
            try Row.fetchAll(db, sql: """
                SELECT machine, name, status, \(Self.nowMs) - published_at FROM published_processes ORDER BY machine, name
                """).map { PublishedProcess(machine: $0[0], name: $0[1], status: $0[2], ageMs: $0[3]) }
        }
    }

    private static func storedLease(_ db: Database, _ name: String) throws -> StoredLease? {
        try Row.fetchOne(db, sql: "SELECT holder, address, term, expires_at - \(nowMs) FROM leases WHERE name = ?",
                         arguments: [name])
            .map { row in
                StoredLease(holder: row[0], address: row[1], term: UInt64(bitPattern: row[2] as Int64), remainingMs: row[3])
            }
    }

    /// See `StoredForm.checkAppend` for the checks, made inside the write transaction.
    public func append(_ batch: [MeetingID: [LogEntry]]) async throws(StoreError) {
        // Encode and hash before taking the write lock.
        let rows = try StoredForm.rows(batch)
        guard !rows.isEmpty else { return }
        try await write { [rows] db in
            let insert = try db.cachedStatement(
                sql: "INSERT INTO log (meeting, seq, epoch, body, checksum) VALUES (?, ?, ?, ?, ?)")
            for (meeting, entries) in rows {
                guard let current = try Self.storedEpoch(db, meeting) else { throw StoreError.unknownMeeting(meeting) }
                let newest = try StoredForm.checkAppend(meeting, entries, current: current, lastSeq: try Self.lastSeq(db, meeting))
                for entry in entries {
                    try insert.execute(arguments: [meeting.rawValue, Int64(bitPattern: entry.seq),
                                                   Int64(bitPattern: entry.epoch.rawValue), entry.body, entry.checksum])
                }
                if newest > current {
                    try db.execute(sql: "UPDATE meetings SET epoch = ? WHERE id = ?",
                                   arguments: [Int64(bitPattern: newest.rawValue), meeting.rawValue])
                }
            }
        }
    }

    /// Fails with `.fenced` if `snapshot.epoch` is older than the meeting's epoch, and with
    /// `.notContiguous(expected: lastLoggedSeq, found: snapshot.seq)` if the snapshot claims
    /// entries the log does not hold. Keeps the two newest snapshots.
    public func writeSnapshot(_ meeting: MeetingID, _ snapshot: Snapshot) async throws(StoreError) {
        let (body, checksum) = try StoredForm.sealed(snapshot)
        try await write { db in
            guard let current = try Self.storedEpoch(db, meeting) else { throw StoreError.unknownMeeting(meeting) }
            try StoredForm.checkSnapshot(meeting, snapshot, current: current, lastSeq: try Self.lastSeq(db, meeting))
            try db.execute(
                sql: """
                    INSERT OR REPLACE INTO snapshots (meeting, seq, epoch, body, checksum, created_at)
                    VALUES (?, ?, ?, ?, ?, \(Self.nowMs))
                    """,
                arguments: [meeting.rawValue, Int64(bitPattern: snapshot.seq),
                            Int64(bitPattern: snapshot.epoch.rawValue), body, checksum])
            try db.execute(
                sql: """
                    DELETE FROM snapshots WHERE meeting = ? AND seq NOT IN
                        (SELECT seq FROM snapshots WHERE meeting = ? ORDER BY seq DESC LIMIT \(Self.snapshotsKept))
                    """,
                arguments: [meeting.rawValue, meeting.rawValue])
        }
    }

    /// Reads the newest snapshot that verifies and the verified log after it; see
    /// `RecoveredMeeting`.
    ///
    /// When the log has to be cut (an entry fails its checksum or does not decode, or a seq
    /// is missing), the entries from the cut on are moved to the `log_quarantine` table, so
    /// the next host can append at the cut and an operator can still inspect them.
    public func recover(_ meeting: MeetingID, historyLimit: Int) async throws(StoreError) -> RecoveredMeeting {
        try await recover(meeting, historyLimit: historyLimit, after: nil)
    }

    public func recover(_ meeting: MeetingID, after seq: Seq) async throws(StoreError) -> RecoveredMeeting {
        try await recover(meeting, historyLimit: 0, after: seq)
    }

    public func peek(_ meeting: MeetingID) async throws(StoreError) -> RecoveredMeeting {
        do {
            return try await Recovery.scan(SQLiteReads(pool: pool), meeting, historyLimit: 0).recovered
        } catch {
            throw Self.storeError(error)
        }
    }

    private func recover(_ meeting: MeetingID, historyLimit: Int, after: Seq?) async throws(StoreError) -> RecoveredMeeting {
        let scan: Recovery.Scan
        do {
            scan = try await Recovery.scan(SQLiteReads(pool: pool), meeting, historyLimit: max(0, historyLimit), after: after)
        } catch {
            throw Self.storeError(error)
        }
        return try await Recovery.finish(scan, meeting, logger: logger) { cut throws(StoreError) in
            try await write { db in try Self.quarantine(db, meeting, cut) }
        }
    }

    // MARK: - Raw access, for tests and repair tools

    /// Runs `sql` in a write transaction, bypassing every check.
    func rawExecute(_ sql: String) async throws(StoreError) {
        try await write { db in try db.execute(sql: sql) }
    }

    /// The first column of the first row of `sql`, as an integer.
    func rawInt(_ sql: String) async throws(StoreError) -> Int? {
        try await write { db in try Int.fetchOne(db, sql: sql) }
    }

    // MARK: - Internals

    static let snapshotsKept = 2

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE meetings (
                    id TEXT PRIMARY KEY NOT NULL,
                    title TEXT NOT NULL,
                    settings TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    epoch INTEGER NOT NULL DEFAULT 0
                );
                CREATE TABLE log (
                    meeting TEXT NOT NULL,
                    seq INTEGER NOT NULL,
                    epoch INTEGER NOT NULL,
                    body BLOB NOT NULL,
                    checksum BLOB NOT NULL,
                    PRIMARY KEY (meeting, seq)
                ) WITHOUT ROWID;
                CREATE TABLE snapshots (
                    meeting TEXT NOT NULL,
                    seq INTEGER NOT NULL,
                    epoch INTEGER NOT NULL,
                    body BLOB NOT NULL,
                    checksum BLOB NOT NULL,
                    created_at INTEGER NOT NULL,
                    PRIMARY KEY (meeting, seq)
                ) WITHOUT ROWID;
                CREATE TABLE log_quarantine (
                    meeting TEXT NOT NULL,
                    seq INTEGER NOT NULL,
                    epoch INTEGER NOT NULL,
                    body BLOB NOT NULL,
                    checksum BLOB NOT NULL,
                    quarantined_at INTEGER NOT NULL,
                    PRIMARY KEY (meeting, seq)
                ) WITHOUT ROWID;
                """)
        }
        migrator.registerMigration("v2: leases") { db in
            try db.execute(sql: """
                CREATE TABLE leases (
                    name TEXT PRIMARY KEY NOT NULL,
                    holder TEXT NOT NULL,
                    address TEXT NOT NULL,
                    term INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL
                );
                """)
        }
        migrator.registerMigration("v3: op crashes") { db in
            try db.execute(sql: """
                CREATE TABLE op_crashes (
                    meeting TEXT NOT NULL,
                    participant TEXT NOT NULL,
                    op_id TEXT NOT NULL,
                    crashes INTEGER NOT NULL,
                    last_crash_at INTEGER NOT NULL,
                    PRIMARY KEY (meeting, participant, op_id)
                ) WITHOUT ROWID;
                """)
        }
        migrator.registerMigration("v4: attendance") { db in
            try db.execute(sql: """
                CREATE TABLE attendance (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    meeting TEXT NOT NULL,
                    participant TEXT NOT NULL,
                    name TEXT NOT NULL,
                    event TEXT NOT NULL,
                    server TEXT NOT NULL,
                    at INTEGER NOT NULL
                );
                CREATE INDEX attendance_by_meeting ON attendance (meeting, id);
                """)
        }
        migrator.registerMigration("v5: web accounts") { db in
            try db.execute(sql: """
                CREATE TABLE accounts (
                    id TEXT PRIMARY KEY NOT NULL,
                    username TEXT NOT NULL UNIQUE,
                    display_name TEXT NOT NULL,
                    password_hash TEXT NOT NULL,
                    failed_sign_ins INTEGER NOT NULL DEFAULT 0,
                    locked_until INTEGER,
                    created_at INTEGER NOT NULL
                );
                CREATE TABLE web_sessions (
                    token_hash TEXT PRIMARY KEY NOT NULL,
                    account TEXT NOT NULL REFERENCES accounts(id),
                    expires_at INTEGER NOT NULL
                ) WITHOUT ROWID;
                CREATE TABLE meeting_listings (
                    meeting TEXT PRIMARY KEY NOT NULL REFERENCES meetings(id),
                    owner TEXT NOT NULL REFERENCES accounts(id),
                    scheduled_at INTEGER,
                    attendees TEXT NOT NULL,
                    password_hash TEXT,
                    started_at INTEGER,
                    created_at INTEGER NOT NULL
                );
                CREATE INDEX listings_by_owner ON meeting_listings (owner);
                """)
        }
        migrator.registerMigration("v6: published processes") { db in
            try db.execute(sql: """
                CREATE TABLE published_processes (
                    machine TEXT NOT NULL,
                    name TEXT NOT NULL,
                    status TEXT NOT NULL,
                    published_at INTEGER NOT NULL,
                    PRIMARY KEY (machine, name)
                ) WITHOUT ROWID;
                """)
        }
        return migrator
    }

    static func storedEpoch(_ db: Database, _ meeting: MeetingID) throws -> Epoch? {
        try Int64.fetchOne(db, sql: "SELECT epoch FROM meetings WHERE id = ?", arguments: [meeting.rawValue])
            .map { Epoch(UInt64(bitPattern: $0)) }
    }

    static func lastSeq(_ db: Database, _ meeting: MeetingID) throws -> Seq {
        let last = try Int64.fetchOne(
            db, sql: "SELECT seq FROM log WHERE meeting = ? ORDER BY seq DESC LIMIT 1", arguments: [meeting.rawValue])
        return last.map { Seq(bitPattern: $0) } ?? 0
    }

    static func record(_ row: Row) throws -> MeetingRecord {
        let id = MeetingID(try row.decode(String.self, atIndex: 0))
        return MeetingRecord(id: id, title: try row.decode(String.self, atIndex: 1),
                             settings: try StoredForm.settings(try row.decode(String.self, atIndex: 2), of: id),
                             createdAt: try row.decode(Int64.self, atIndex: 3))
    }

    /// Moves the log from `cut.seq` on to `log_quarantine`, unless the log changed at the
    /// cut since it was read (another recovery got there first and the log may already hold
    /// new, good entries). Returns whether it moved anything.
    static func quarantine(_ db: Database, _ meeting: MeetingID, _ cut: Recovery.Cut) throws -> Bool {
        let now = try Data?.fetchOne(
            db, sql: "SELECT checksum FROM log WHERE meeting = ? AND seq = ?",
            arguments: [meeting.rawValue, Int64(bitPattern: cut.seq)]) ?? nil
        guard now == cut.checksumSeen else { return false }
        let arguments: StatementArguments = [meeting.rawValue, Int64(bitPattern: cut.seq)]
        try db.execute(
            sql: """
                INSERT OR REPLACE INTO log_quarantine (meeting, seq, epoch, body, checksum, quarantined_at)
                SELECT meeting, seq, epoch, body, checksum, \(nowMs) FROM log WHERE meeting = ? AND seq >= ?
                """,
            arguments: arguments)
        try db.execute(sql: "DELETE FROM log WHERE meeting = ? AND seq >= ?", arguments: arguments)
        return true
    }

    /// Runs `updates` in one write transaction; rolls back if it throws.
    /// Deliberately not cancellable (see the type's doc comment).
    func write<T: Sendable>(_ updates: @escaping @Sendable (Database) throws -> T) async throws(StoreError) -> T {
        let result: Result<T, StoreError> = await withCheckedContinuation { continuation in
            pool.asyncWrite(updates) { _, result in
                continuation.resume(returning: result.mapError(Self.storeError))
            }
        }
        return try result.get()
    }

    func read<T: Sendable>(_ value: @escaping @Sendable (Database) throws -> T) async throws(StoreError) -> T {
        do { return try await pool.read(value) } catch { throw Self.storeError(error) }
    }

    static func storeError(_ error: any Error) -> StoreError {
        switch error {
        case let error as StoreError: error
        case let error as DatabaseError: .io(error.description)
        default: .io(String(describing: error))
        }
    }
}

/// Recovery's reads, each in its own read transaction of the pool. A concurrent append
/// between them can only add entries after those read; the log is never rewritten in place.
struct SQLiteReads: RecoveryReads {
    let pool: DatabasePool

    func meeting(_ id: MeetingID) async throws -> (MeetingRecord, Epoch)? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT id, title, settings, created_at, epoch FROM meetings WHERE id = ?",
                             arguments: [id.rawValue])
                .map { row in (try SQLiteStore.record(row), Epoch(UInt64(bitPattern: try row.decode(Int64.self, atIndex: 4)))) }
        }
    }

    func snapshots(_ id: MeetingID) async throws -> [StoredRow] {
        try await rows("SELECT seq, body, checksum FROM snapshots WHERE meeting = ? ORDER BY seq DESC", [id.rawValue])
    }

    func log(_ id: MeetingID, after seq: Seq) async throws -> [StoredRow] {
        try await rows("SELECT seq, body, checksum FROM log WHERE meeting = ? AND seq > ? ORDER BY seq",
                       [id.rawValue, Int64(bitPattern: seq)])
    }

    func log(_ id: MeetingID, through seq: Seq, limit: Int) async throws -> [StoredRow] {
        try await rows("SELECT seq, body, checksum FROM log WHERE meeting = ? AND seq <= ? ORDER BY seq DESC LIMIT ?",
                       [id.rawValue, Int64(bitPattern: seq), limit])
    }

    private func rows(_ sql: String, _ arguments: StatementArguments) async throws -> [StoredRow] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in
                StoredRow(seq: Seq(bitPattern: (try? row.decode(Int64.self, atIndex: 0)) ?? 0),
                          body: try? row.decode(Data.self, atIndex: 1), checksum: try? row.decode(Data.self, atIndex: 2))
            }
        }
    }
}
