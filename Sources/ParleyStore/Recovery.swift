import FoundationEssentials
import GRDB
import ParleyCore

/// Reading a meeting back: verification and fallback. Nothing here trusts a stored byte
/// until its checksum matched and it decoded to what its row says it is.
enum Recovery {
    /// Where the log had to be cut: the first seq not recovered and what the store held at
    /// that seq when it was read (nil: nothing, the seq was missing).
    struct Cut: Sendable {
        var seq: Seq
        var checksumSeen: Data?
    }

    struct Scan: Sendable {
        var recovered: RecoveredMeeting
        var cut: Cut?
    }

    /// - Parameter after: read no snapshot, only the log after this seq (a standby copy
    ///   holds everything up to it); nil for a whole recovery.
    static func scan(_ db: Database, _ meeting: MeetingID, historyLimit: Int, after: Seq? = nil) throws -> Scan {
        guard let row = try Row.fetchOne(
            db, sql: "SELECT id, title, settings, created_at, epoch FROM meetings WHERE id = ?",
            arguments: [meeting.rawValue])
        else { throw StoreError.unknownMeeting(meeting) }
        let record = try SQLiteStore.record(row)
        let epoch = Epoch(UInt64(bitPattern: try row.decode(Int64.self, atIndex: 4)))
        var warnings: [String] = []

        // Snapshots, newest first: the first that verifies wins.
        var snapshot: Snapshot?
        var skipped: [String] = []
        // Decoding a snapshot grows with the meeting; a standby being promoted needs none.
        let snapshotRows = after != nil ? [] : try Row.fetchAll(
            db, sql: "SELECT seq, body, checksum FROM snapshots WHERE meeting = ? ORDER BY seq DESC",
            arguments: [meeting.rawValue])
        for row in snapshotRows {
            let seq = Seq(bitPattern: (try? row.decode(Int64.self, atIndex: 0)) ?? 0)
            switch open(Snapshot.self, row) {
            case .success(let candidate) where candidate.seq == seq && candidate.meeting.id == meeting:
                snapshot = candidate
            case .success:
                skipped.append("snapshot at seq \(seq) does not match its row")
            case .failure(let problem):
                skipped.append("snapshot at seq \(seq) \(problem)")
            }
            if snapshot != nil { break }
        }
        let fallback = snapshot.map { "the snapshot at seq \($0.seq)" } ?? "replaying the log from seq 1"
        warnings += skipped.map { "\($0); falling back to \(fallback)" }

        // The log after the snapshot, stopping at the first entry that is not what it must be.
        let base = after ?? snapshot?.seq ?? 0
        var entries: [LogEntry] = []
        var cut: Cut?
        let cursor = try Row.fetchCursor(
            db, sql: "SELECT seq, body, checksum FROM log WHERE meeting = ? AND seq > ? ORDER BY seq",
            arguments: [meeting.rawValue, Int64(bitPattern: base)])
        var expected = base + 1
        while let row = try cursor.next() {
            let seq = Seq(bitPattern: (try? row.decode(Int64.self, atIndex: 0)) ?? 0)
            let problem: String
            if seq != expected {
                problem = "is missing (the next stored entry is at seq \(seq))"
                cut = Cut(seq: expected, checksumSeen: nil)
            } else {
                switch open(LogEntry.self, row) {
                case .success(let entry) where entry.seq == seq:
                    entries.append(entry)
                    expected += 1
                    continue
                case .success(let entry):
                    problem = "holds the entry for seq \(entry.seq)"
                case .failure(let reason):
                    problem = reason.description
                }
                cut = Cut(seq: seq, checksumSeen: try? row.decode(Data.self, atIndex: 2))
            }
            let after = try Int.fetchOne(
                db, sql: "SELECT count(*) FROM log WHERE meeting = ? AND seq > ?",
                arguments: [meeting.rawValue, Int64(bitPattern: expected)]) ?? 0
            warnings.append(
                "log entry at seq \(expected) \(problem); the log is cut there and the \(after) stored entries "
                    + "after it are dropped (moved to quarantine); the meeting is recovered through seq \(expected - 1)")
            break
        }

        // History ends at the snapshot and must stay contiguous: walk back from the snapshot
        // and keep the verified suffix.
        var history: [LogEntry] = []
        if let snapshot, historyLimit > 0, snapshot.seq > 0 {
            let rows = try Row.fetchAll(
                db, sql: "SELECT seq, body, checksum FROM log WHERE meeting = ? AND seq <= ? ORDER BY seq DESC LIMIT ?",
                arguments: [meeting.rawValue, Int64(bitPattern: snapshot.seq), historyLimit])
            var want = snapshot.seq
            for row in rows {
                guard case .success(let entry) = open(LogEntry.self, row), entry.seq == want,
                      (try? row.decode(Int64.self, atIndex: 0)) == Int64(bitPattern: want)
                else { break }
                history.append(entry)
                if want == 1 { break }
                want -= 1
            }
            history.reverse()
        }

        return Scan(
            recovered: RecoveredMeeting(record: record, snapshot: snapshot, entries: entries, history: history,
                                        epoch: epoch, warnings: warnings),
            cut: cut)
    }

    /// Moves the log from `cut.seq` on to `log_quarantine`, unless the log changed at the
    /// cut since it was read (another recovery got there first and the log may already hold
    /// new, good entries). Returns whether it moved anything.
    static func quarantine(_ db: Database, _ meeting: MeetingID, _ cut: Cut) throws -> Bool {
        let now = try Data?.fetchOne(
            db, sql: "SELECT checksum FROM log WHERE meeting = ? AND seq = ?",
            arguments: [meeting.rawValue, Int64(bitPattern: cut.seq)]) ?? nil
        guard now == cut.checksumSeen else { return false }
        let arguments: StatementArguments = [meeting.rawValue, Int64(bitPattern: cut.seq)]
        try db.execute(
            sql: """
                INSERT OR REPLACE INTO log_quarantine (meeting, seq, epoch, body, checksum, quarantined_at)
                SELECT meeting, seq, epoch, body, checksum, \(Int64(Date().timeIntervalSince1970 * 1000))
                FROM log WHERE meeting = ? AND seq >= ?
                """,
            arguments: arguments)
        try db.execute(sql: "DELETE FROM log WHERE meeting = ? AND seq >= ?", arguments: arguments)
        return true
    }

    /// Verifies and decodes the `body`/`checksum` columns (1 and 2) of `row`; the failure
    /// is a phrase for a warning.
    static func open<T: Decodable>(_ type: T.Type, _ row: Row) -> Result<T, Problem> {
        guard let body = try? row.decode(Data.self, atIndex: 1),
              let checksum = try? row.decode(Data.self, atIndex: 2)
        else { return .failure(Problem("has no body or checksum")) }
        guard SQLiteStore.checksum(body) == checksum else { return .failure(Problem("failed its checksum")) }
        do {
            return .success(try JSONDecoder().decode(T.self, from: body))
        } catch {
            return .failure(Problem("does not decode (\(error))"))
        }
    }

    struct Problem: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}
