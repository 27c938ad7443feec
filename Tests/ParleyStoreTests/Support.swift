import ParleyTestSupport
import FoundationEssentials
import Logging
import Testing
import ParleyCore
@testable import ParleyStore

/// A fresh directory for one test's SQLite file, removed afterwards.
func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let directory = FileManager.default.temporaryDirectory.path + "/parley-store-" + UUID().uuidString
    defer { try? FileManager.default.removeItem(atPath: directory) }
    return try await body(directory)
}

/// Opens a store in a fresh directory (synchronous NORMAL: these tests check logic, not fsync).
func withStore<T>(_ body: (SQLiteStore, String) async throws -> T) async throws -> T {
    try await withTemporaryDirectory { directory in
        let store = try SQLiteStore(directory: directory, synchronous: .normal)
        return try await body(store, directory)
    }
}

/// The stores every contract test runs against.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, postgres
    var testDescription: String { rawValue }
}

/// What the contract tests need beyond the `Store`: raw SQL, to damage rows as a disk would.
protocol RawSQL: Sendable {
    func rawExecute(_ sql: String) async throws(StoreError)
    func rawInt(_ sql: String) async throws(StoreError) -> Int?
    /// `bytes` as a blob literal of this database's SQL.
    func blob(_ bytes: some Sequence<UInt8>) -> String
    /// The blob expressions joined end to end.
    func concatenated(_ parts: [String]) -> String
}

typealias TestedStore = ZoneStore & RawSQL

extension SQLiteStore: RawSQL {
    func blob(_ bytes: some Sequence<UInt8>) -> String { blobLiteral(bytes) }
    func concatenated(_ parts: [String]) -> String { "CAST(" + parts.joined(separator: " || ") + " AS BLOB)" }
}

extension PostgresStore: RawSQL {
    func blob(_ bytes: some Sequence<UInt8>) -> String {
        "'\\x" + bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
            + "'::bytea"
    }
    func concatenated(_ parts: [String]) -> String { "(" + parts.joined(separator: " || ") + ")" }
}

/// A fresh, empty store of `kind`. `another` opens one more store on the same database, as a
/// second process would.
func withStore<T: Sendable>(_ kind: StoreKind,
                            _ body: @Sendable (any TestedStore, _ another: @Sendable () async throws -> any TestedStore) async throws -> T)
    async throws -> T {
    switch kind {
    case .sqlite:
        return try await withTemporaryDirectory { directory in
            let store = try SQLiteStore(directory: directory, synchronous: .normal)
            return try await body(store) { try SQLiteStore(directory: directory, synchronous: .normal) }
        }
    case .postgres:
        let url = try await TestPostgres.shared.freshDatabase()
        guard case .postgres(let parsed) = try StoreLocation(url: url) else { preconditionFailure() }
        // Every store opened here runs its pools until the test ends.
        return try await withThrowingTaskGroup(of: Void.self) { group in
            defer { group.cancelAll() }
            let store = try await PostgresStore.open(parsed, logger: Logger(label: "test"))
            group.addTask { await store.run() }
            let opened = OpenedStores()
            do {
                let result = try await body(store) {
                    let another = try await PostgresStore.open(parsed, logger: Logger(label: "test"))
                    await opened.add(another)
                    return another
                }
                await opened.stop()
                return result
            } catch {
                await opened.stop()
                throw error
            }
        }
    }
}

/// Extra PostgreSQL stores a test opened; their pools run until `stop`.
actor OpenedStores {
    private var runs: [Task<Void, Never>] = []
    func add(_ store: PostgresStore) { runs.append(Task { await store.run() }) }
    func stop() async {
        for run in runs { run.cancel(); await run.value }
    }
}

let standup = MeetingRecord(id: "standup", title: "Standup", settings: MeetingSettings(), createdAt: 1_000)

func record(_ id: MeetingID) -> MeetingRecord {
    MeetingRecord(id: id, title: "Meeting \(id)", settings: MeetingSettings(), createdAt: 1_000)
}

/// A live hosting copy driven with real operations through `MeetingLog`, so the entries are
/// exactly what a host would commit.
struct LiveMeeting {
    private(set) var log: MeetingLog
    private(set) var entries: [LogEntry] = []
    private var clock: Millis = 10_000
    private var step = 0

    init(_ record: MeetingRecord, epoch: Epoch = Epoch(1)) {
        log = MeetingLog(meeting: Meeting(id: record.id, title: record.title, settings: record.settings), epoch: epoch)
    }

    /// Sequences and commits `count` more operations; returns their entries.
    @discardableResult
    mutating func play(_ count: Int) -> [LogEntry] {
        (0..<count).map { _ in next() }
    }

    private mutating func next() -> LogEntry {
        step += 1
        let alice = Issuer.participant("alice"), bob = Issuer.participant("bob")
        let (operation, issuer, opID): (MeetingOp, Issuer, OpID?) = switch step {
        case 1: (.join(participant: "alice", name: "Alice", role: .host), .system, nil)
        case 2: (.join(participant: "bob", name: "Bob", role: .attendee), .system, nil)
        case 3: (.addWhiteboard(id: "wb", title: "Ideas"), alice, "a-3")
        case 4: (.createPoll(id: "p1", question: "Lunch?", options: ["yes", "no"]), alice, "a-4")
        case 5: (.vote(poll: "p1", option: 1), bob, "b-5")
        default:
            switch step % 4 {
            case 0: (.chat(text: "message \(step)"), bob, OpID("b-\(step)"))
            case 1: (.draw(page: "wb.1", stroke: StrokeID("s\(step)"), tool: .pen, color: "#aa0000", width: 2,
                           points: [Point(x: 1, y: Double(step))], text: nil), alice, OpID("a-\(step)"))
            case 2: (.privateMessage(to: "bob", text: "psst \(step)"), alice, OpID("a-\(step)"))
            default: (.turnPage(to: "wb.1"), alice, nil)
            }
        }
        clock += 7
        guard case .sequenced(let entry) = log.submit(operation, by: issuer, opID: opID, at: clock) else {
            preconditionFailure("step \(step) was not sequenced")
        }
        _ = log.committed(through: entry.seq)
        entries.append(entry)
        return entry
    }
}

/// Rebuilds a hosting copy from what the store recovered, as a new host would.
func rebuild(_ recovered: RecoveredMeeting, epoch: Epoch) throws -> MeetingLog {
    let base = recovered.snapshot ?? Snapshot(
        meeting: Meeting(id: recovered.record.id, title: recovered.record.title, settings: recovered.record.settings),
        seq: 0, epoch: Epoch(0), outcomes: OpOutcomes(capacity: ResumeWindow().minEntries))
    return try MeetingLog(recovering: base, entries: recovered.entries, history: recovered.history, epoch: epoch)
}

/// `bytes` as an SQL blob literal.
func blobLiteral(_ bytes: some Sequence<UInt8>) -> String {
    let hex = "0123456789ABCDEF".map { $0 }
    return "X'" + String(bytes.flatMap { [hex[Int($0 >> 4)], hex[Int($0 & 0xF)]] }) + "'"
}
