import Crypto
import FoundationEssentials
import Logging
import ParleyCore

/// A stored log entry or snapshot as it comes off the disk: its row's seq and the raw
/// `body`/`checksum` columns, not yet trusted.
struct StoredRow: Sendable {
    var seq: Seq
    var body: Data?
    var checksum: Data?
}

/// What a store must read for a recovery. Each store answers from its own database; the
/// rules of what to trust (``Recovery``) are the same for all.
protocol RecoveryReads {
    /// The meeting's record and stored epoch, or nil if there is no such meeting.
    func meeting(_ id: MeetingID) async throws -> (MeetingRecord, Epoch)?
    /// Every stored snapshot of the meeting, newest first.
    func snapshots(_ id: MeetingID) async throws -> [StoredRow]
    /// The log after `seq`, in seq order.
    func log(_ id: MeetingID, after seq: Seq) async throws -> [StoredRow]
    /// Up to `limit` log rows at or before `seq`, newest first.
    func log(_ id: MeetingID, through seq: Seq, limit: Int) async throws -> [StoredRow]
}

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
    static func scan(_ reads: some RecoveryReads, _ meeting: MeetingID, historyLimit: Int, after: Seq? = nil) async throws -> Scan {
        guard let (record, epoch) = try await reads.meeting(meeting) else { throw StoreError.unknownMeeting(meeting) }
        var warnings: [String] = []

        // Snapshots, newest first: the first that verifies wins. Decoding a snapshot grows with
        // the meeting; a standby being promoted needs none.
        var snapshot: Snapshot?
        var skipped: [String] = []
        for row in after != nil ? [] : try await reads.snapshots(meeting) {
            switch open(Snapshot.self, row) {
            case .success(let candidate) where candidate.seq == row.seq && candidate.meeting.id == meeting:
                snapshot = candidate
            case .success:
                skipped.append("snapshot at seq \(row.seq) does not match its row")
            case .failure(let problem):
                skipped.append("snapshot at seq \(row.seq) \(problem)")
            }
            if snapshot != nil { break }
        }
        let fallback = snapshot.map { "the snapshot at seq \($0.seq)" } ?? "replaying the log from seq 1"
        warnings += skipped.map { "\($0); falling back to \(fallback)" }

        // The log after the snapshot, stopping at the first entry that is not what it must be.
        let base = after ?? snapshot?.seq ?? 0
        let rows = try await reads.log(meeting, after: base)
        var entries: [LogEntry] = []
        var cut: Cut?
        var expected = base + 1
        for (index, row) in rows.enumerated() {
            let problem: String
            if row.seq != expected {
                problem = "is missing (the next stored entry is at seq \(row.seq))"
                cut = Cut(seq: expected, checksumSeen: nil)
            } else {
                switch open(LogEntry.self, row) {
                case .success(let entry) where entry.seq == row.seq:
                    entries.append(entry)
                    expected += 1
                    continue
                case .success(let entry):
                    problem = "holds the entry for seq \(entry.seq)"
                case .failure(let reason):
                    problem = reason.description
                }
                cut = Cut(seq: row.seq, checksumSeen: row.checksum)
            }
            let dropped = rows[index...].count { $0.seq > expected }
            warnings.append(
                "log entry at seq \(expected) \(problem); the log is cut there and the \(dropped) stored entries "
                    + "after it are dropped (moved to quarantine); the meeting is recovered through seq \(expected - 1)")
            break
        }

        // History ends at the snapshot and must stay contiguous: walk back from the snapshot
        // and keep the verified suffix.
        var history: [LogEntry] = []
        if let snapshot, historyLimit > 0, snapshot.seq > 0 {
            var want = snapshot.seq
            for row in try await reads.log(meeting, through: snapshot.seq, limit: historyLimit) {
                guard row.seq == want, case .success(let entry) = open(LogEntry.self, row), entry.seq == want else { break }
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

    /// Quarantines the cut log (if the scan cut it) with the store's `quarantine`, which
    /// answers whether the log was still as read, and logs what recovery found.
    static func finish(_ scan: Scan, _ meeting: MeetingID, logger: Logger,
                       quarantine: (Cut) async throws(StoreError) -> Bool) async throws(StoreError) -> RecoveredMeeting {
        var recovered = scan.recovered
        if let cut = scan.cut, try await !quarantine(cut) {
            recovered.warnings.append("the log of \(meeting) changed at seq \(cut.seq) during recovery; nothing was quarantined")
        }
        for warning in recovered.warnings {
            logger.warning("recovery: \(warning)", metadata: ["meeting": "\(meeting)"])
        }
        return recovered
    }

    /// Verifies and decodes a stored row; the failure is a phrase for a warning.
    static func open<T: Decodable>(_ type: T.Type, _ row: StoredRow) -> Result<T, Problem> {
        guard let body = row.body, let checksum = row.checksum else { return .failure(Problem("has no body or checksum")) }
        guard StoredForm.checksum(body) == checksum else { return .failure(Problem("failed its checksum")) }
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

/// How every store writes values: sorted-key JSON beside its SHA-256, so recovery can tell a
/// damaged row from a good one.
enum StoredForm {
    static func encode(_ value: some Encodable) throws(StoreError) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        do { return try encoder.encode(value) } catch { throw .io("cannot encode \(type(of: value)): \(error)") }
    }

    /// The JSON body and its SHA-256.
    static func sealed(_ value: some Encodable) throws(StoreError) -> (body: Data, checksum: Data) {
        let body = try encode(value)
        return (body, checksum(body))
    }

    static func checksum(_ body: Data) -> Data { Data(SHA256.hash(data: body)) }

    static func settings(_ json: String, of meeting: MeetingID) throws(StoreError) -> MeetingSettings {
        guard let settings = try? JSONDecoder().decode(MeetingSettings.self, from: Data(json.utf8)) else {
            throw .io("meeting \(meeting): its stored settings do not decode")
        }
        return settings
    }

    /// Entries encoded and hashed, per meeting in a deterministic order, ready for one append.
    static func rows(_ batch: [MeetingID: [LogEntry]]) throws(StoreError) -> [(MeetingID, [EncodedEntry])] {
        var rows: [(MeetingID, [EncodedEntry])] = []
        for (meeting, entries) in batch.sorted(by: { $0.key < $1.key }) where !entries.isEmpty {
            var encoded: [EncodedEntry] = []
            encoded.reserveCapacity(entries.count)
            for entry in entries {
                let (body, checksum) = try sealed(entry)
                encoded.append(EncodedEntry(seq: entry.seq, epoch: entry.epoch, body: body, checksum: checksum))
            }
            rows.append((meeting, encoded))
        }
        return rows
    }

    struct EncodedEntry: Sendable {
        var seq: Seq
        var epoch: Epoch
        var body: Data
        var checksum: Data
    }

    /// Checks one meeting's part of an append against what the store holds: fencing before
    /// contiguity, so a replaced host learns that it must stop. Returns the newest epoch
    /// among the entries, which the store raises its stored epoch to if it is newer, so that
    /// `recover` never reports an epoch older than one already in the log.
    static func checkAppend(_ meeting: MeetingID, _ entries: [EncodedEntry], current: Epoch, lastSeq: Seq) throws(StoreError) -> Epoch {
        var expected = lastSeq + 1
        var newest = current
        for entry in entries {
            guard entry.epoch >= current else { throw .fenced(meeting, epoch: entry.epoch, current: current) }
            guard entry.seq == expected else { throw .notContiguous(meeting, expected: expected, found: entry.seq) }
            expected += 1
            newest = max(newest, entry.epoch)
        }
        return newest
    }

    /// A snapshot may be written under the meeting's epoch or a newer one, and only for a
    /// seq the log already holds.
    static func checkSnapshot(_ meeting: MeetingID, _ snapshot: Snapshot, current: Epoch, lastSeq: Seq) throws(StoreError) {
        guard snapshot.epoch >= current else { throw .fenced(meeting, epoch: snapshot.epoch, current: current) }
        guard snapshot.seq <= lastSeq else { throw .notContiguous(meeting, expected: lastSeq, found: snapshot.seq) }
    }
}
