import Synchronization

/// What this web process has promised to each meeting's uploads in progress, so that two
/// uploads to one meeting at once cannot both pass its quota. Pure: the caller reads what
/// the store holds and hands it in.
///
/// A reading of the store is good only if no upload of this meeting finished (stored its
/// document, or gave up) and no document was deleted since it was taken: the caller takes
/// ``version(of:)`` before reading and hands it back, and a stale reading gets `.stale`
/// (read again). An upload's claim stands until ``end(_:)``, which comes after its
/// document is stored: at any moment, what the store holds plus the claims is never less
/// than what the meeting will hold.
///
/// Bounded: a meeting is tracked only while one of its uploads is in progress.
struct QuotaLedger: Sendable {
    enum Outcome: Equatable, Sendable {
        case fits
        /// It does not fit: this much is taken without it (stored, and others' claims).
        case exceeded(usedBytes: Int)
        /// The reading is older than a change; read the store again.
        case stale
    }

    private struct Tracked {
        var version = 0
        var claims: [Int: Int] = [:]
    }

    private var meetings: [String: Tracked] = [:]
    private var owners: [Int: String] = [:]

    /// Upload `upload` (an id unique in this process) starts on `meeting`, claiming nothing yet.
    mutating func begin(_ upload: Int, meeting: String) {
        precondition(owners[upload] == nil, "upload \(upload) began twice")
        owners[upload] = meeting
        meetings[meeting, default: Tracked()].claims[upload] = 0
    }

    func version(of meeting: String) -> Int { meetings[meeting]?.version ?? 0 }

    /// Sets `upload`'s claim to `bytes` if what `meeting` holds (`storedBytes`, read at
    /// `version`), the other uploads' claims and `bytes` fit in `limitBytes`; else leaves it.
    mutating func claim(_ upload: Int, bytes: Int, storedBytes: Int, readAt version: Int, limitBytes: Int) -> Outcome {
        guard let meeting = owners[upload], var tracked = meetings[meeting] else { preconditionFailure("upload \(upload) did not begin") }
        guard tracked.version == version else { return .stale }
        let others = tracked.claims.reduce(0) { $0 + ($1.key == upload ? 0 : $1.value) }
        let used = storedBytes + others
        guard used + bytes <= limitBytes else { return .exceeded(usedBytes: used) }
        tracked.claims[upload] = bytes
        meetings[meeting] = tracked
        return .fits
    }

    /// `upload` is over: its document is in the store, or it was refused or failed.
    mutating func end(_ upload: Int) {
        guard let meeting = owners.removeValue(forKey: upload) else { return }
        meetings[meeting]?.claims[upload] = nil
        changed(meeting)
        if meetings[meeting]?.claims.isEmpty == true { meetings[meeting] = nil }
    }

    /// What the store holds for `meeting` changed (a document was deleted).
    mutating func changed(_ meeting: String) {
        meetings[meeting]?.version += 1
    }

    /// Meetings tracked now (for tests: none once every upload has ended).
    var trackedMeetings: Int { meetings.count }
}

/// Each meeting's documents quota, across the uploads of this process: ``QuotaLedger``
/// behind a lock, with the store read outside it.
final class DocumentQuota: Sendable {
    let limitBytes: Int
    private let state = Mutex((ledger: QuotaLedger(), nextUpload: 0))

    /// A stale reading is read again this often at most (each retry means another upload of
    /// the same meeting finished meanwhile); then the upload is told to try again later.
    static let readings = 4

    init(limitBytes: Int) {
        self.limitBytes = limitBytes
    }

    func begin(meeting: String) -> Int {
        state.withLock { state in
            state.nextUpload += 1
            state.ledger.begin(state.nextUpload, meeting: meeting)
            return state.nextUpload
        }
    }

    /// Claims `bytes` for `upload` of `meeting`, whose stored documents `storedBytes` reads.
    func claim(_ upload: Int, meeting: String, bytes: Int,
               storedBytes: () async throws(DocumentError) -> Int) async throws(DocumentError) {
        for _ in 0..<Self.readings {
            let version = state.withLock { $0.ledger.version(of: meeting) }
            let stored = try await storedBytes()
            let outcome = state.withLock {
                $0.ledger.claim(upload, bytes: bytes, storedBytes: stored, readAt: version, limitBytes: limitBytes)
            }
            switch outcome {
            case .fits: return
            case .exceeded(let used): throw .quotaExceeded(limitBytes: limitBytes, usedBytes: used)
            case .stale: continue
            }
        }
        throw .tooManyUploads
    }

    func end(_ upload: Int) {
        state.withLock { $0.ledger.end(upload) }
    }

    func changed(meeting: String) {
        state.withLock { $0.ledger.changed(meeting) }
    }

    var trackedMeetings: Int { state.withLock { $0.ledger.trackedMeetings } }
}

/// Bounds the uploads in progress: each holds its body in memory until it is answered, so
/// this, not only the conversion slots, bounds the memory uploads take. Entered before the
/// body is read; a full gate refuses at once.
final class UploadGate: Sendable {
    let limit: Int
    /// What a full gate answers (a `server_busy` that says what is busy).
    let refusal: DocumentError
    private let inProgress = Mutex(0)

    init(limit: Int, refusal: DocumentError = .tooManyUploads) {
        precondition(limit >= 1)
        self.limit = limit
        self.refusal = refusal
    }

    /// Takes a place, or says there is none (`server_busy`).
    func enter() throws(DocumentError) {
        let entered = inProgress.withLock { count in
            guard count < limit else { return false }
            count += 1
            return true
        }
        guard entered else { throw refusal }
    }

    func leave() {
        inProgress.withLock { count in
            precondition(count > 0, "left an upload gate nobody entered")
            count -= 1
        }
    }

    var count: Int { inProgress.withLock { $0 } }
}
