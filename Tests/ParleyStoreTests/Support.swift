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
    case sqlite, postgres, memory
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

/// The damage tests' SQL, on the rows an `InMemoryStore` keeps where a database keeps its
/// tables: exactly the statements they write, with SQLite's meaning, and nothing else (any
/// other statement throws, naming itself):
/// - `SELECT count(*) FROM table`, `SELECT min(seq) FROM table`;
/// - `UPDATE table SET body = value[, checksum = value] [WHERE seq = n]`, each value a blob
///   literal, `substr(column, from[, length])` (`length` may be `length(column) / 2`), or
///   several of these joined with `||`;
/// - `DELETE FROM table WHERE seq = n`.
extension InMemoryStore: RawSQL {
    func rawExecute(_ sql: String) async throws(StoreError) {
        let words = try RowSQL.words(sql)
        switch words.first {
        case "UPDATE":
            let (table, assignments, seq) = try RowSQL.update(words, sql)
            // Parsed up front, so a statement this does not understand changes nothing.
            var values: [(column: String, value: RowSQL.Value)] = []
            for (column, expression) in assignments { values.append((column, try RowSQL.value(expression, sql))) }
            rawEdit(table, seq: seq) { [values] row in
                var row = row
                for (column, value) in values {
                    let new = value(row)
                    if column == "body" { row.body = new } else { row.checksum = new }
                }
                return row
            }
        case "DELETE":
            guard words.count == 7, words[1] == "FROM", words[3] == "WHERE", words[4] == "seq", words[5] == "=",
                  let seq = Seq(words[6]) else { throw RowSQL.unsupported(sql) }
            rawEdit(try RowSQL.table(words[2], sql), seq: seq) { _ in nil }
        default:
            throw RowSQL.unsupported(sql)
        }
    }

    func rawInt(_ sql: String) async throws(StoreError) -> Int? {
        let words = try RowSQL.words(sql)
        guard words.count == 4, words[0] == "SELECT", words[2] == "FROM" else { throw RowSQL.unsupported(sql) }
        let rows = rawRows(try RowSQL.table(words[3], sql))
        switch words[1] {
        case "count(*)": return rows.count
        case "min(seq)": return rows.map { Int($0.seq) }.min()
        default: throw RowSQL.unsupported(sql)
        }
    }

    nonisolated func blob(_ bytes: some Sequence<UInt8>) -> String { blobLiteral(bytes) }
    nonisolated func concatenated(_ parts: [String]) -> String { parts.joined(separator: " || ") }
}

/// Reading the statements `InMemoryStore.rawExecute` and `rawInt` take.
enum RowSQL {
    /// A value computed from the row it is written into.
    typealias Value = @Sendable (StoredRow) -> Data?

    static func unsupported(_ sql: String) -> StoreError {
        .misconfigured("InMemoryStore does not take this SQL (see its RawSQL conformance): \(sql)")
    }

    /// The statement's words, split at spaces outside parentheses.
    static func words(_ sql: String) throws(StoreError) -> [String] {
        try split(sql.split(whereSeparator: \.isWhitespace).joined(separator: " "), at: " ", sql)
    }

    static func table(_ name: String, _ sql: String) throws(StoreError) -> InMemoryStore.RawTable {
        guard let table = InMemoryStore.RawTable(rawValue: name) else { throw unsupported(sql) }
        return table
    }

    /// `UPDATE table SET column = value[, column = value] [WHERE seq = n]`.
    static func update(_ words: [String], _ sql: String) throws(StoreError)
        -> (InMemoryStore.RawTable, assignments: [(column: String, expression: String)], seq: Seq?) {
        guard words.count >= 4, words[2] == "SET" else { throw unsupported(sql) }
        var rest = Array(words[3...])
        var seq: Seq?
        if let at = rest.firstIndex(of: "WHERE") {
            guard rest.count == at + 4, rest[at + 1] == "seq", rest[at + 2] == "=", let number = Seq(rest[at + 3]) else {
                throw unsupported(sql)
            }
            seq = number
            rest.removeSubrange(at...)
        }
        var assignments: [(column: String, expression: String)] = []
        for assignment in try split(rest.joined(separator: " "), at: ",", sql) {
            let parts = assignment.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, ["body", "checksum"].contains(parts[0]) else { throw unsupported(sql) }
            assignments.append((parts[0], parts[1]))
        }
        return (try table(words[1], sql), assignments, seq)
    }

    /// A blob literal, `substr(column, from[, length])`, or several joined with `||`.
    static func value(_ expression: String, _ sql: String) throws(StoreError) -> Value {
        let parts = try split(expression, at: "|", sql).filter { !$0.isEmpty }
        if parts.count > 1 {
            let values = try parts.map { part throws(StoreError) in try value(part, sql) }
            return { row in values.reduce(into: Data()) { $0 += $1(row) ?? Data() } }
        }
        if expression.hasPrefix("X'"), expression.hasSuffix("'") {
            let hex = Array(expression.dropFirst(2).dropLast().utf8)
            guard hex.count % 2 == 0 else { throw unsupported(sql) }
            var bytes = Data()
            for index in stride(from: 0, to: hex.count, by: 2) {
                guard let byte = UInt8(String(decoding: hex[index...index + 1], as: UTF8.self), radix: 16) else { throw unsupported(sql) }
                bytes.append(byte)
            }
            return { [bytes] _ in bytes }
        }
        guard expression.hasPrefix("substr("), expression.hasSuffix(")") else { throw unsupported(sql) }
        let arguments = try split(String(expression.dropFirst("substr(".count).dropLast()), at: ",", sql)
        guard (2...3).contains(arguments.count), let column = column(arguments[0]) else { throw unsupported(sql) }
        let from = try count(arguments[1], sql), length = try arguments.count == 3 ? count(arguments[2], sql) : nil
        return { row in
            // SQLite's substr on a blob: bytes, counted from 1.
            guard let bytes = column(row) else { return nil }
            let start = min(bytes.count, max(0, from(row) - 1))
            let end = length.map { min(bytes.count, start + max(0, $0(row))) } ?? bytes.count
            return Data(bytes[bytes.startIndex + start ..< bytes.startIndex + end])
        }
    }

    /// A whole number, or `length(column) / 2`.
    private static func count(_ expression: String, _ sql: String) throws(StoreError) -> @Sendable (StoredRow) -> Int {
        if let number = Int(expression) { return { _ in number } }
        let words = expression.split(separator: " ")
        guard words.count == 3, words[0].hasPrefix("length("), words[0].hasSuffix(")"), words[1] == "/", let divisor = Int(words[2]),
              let column = column(String(words[0].dropFirst("length(".count).dropLast()))
        else { throw unsupported(sql) }
        return { row in (column(row)?.count ?? 0) / divisor }
    }

    private static func column(_ name: String) -> Value? {
        switch name {
        case "body": { $0.body }
        case "checksum": { $0.checksum }
        default: nil
        }
    }

    /// `text` split at `separator` outside parentheses and quotes, each part trimmed.
    private static func split(_ text: String, at separator: Character, _ sql: String) throws(StoreError) -> [String] {
        var parts: [String] = [], part = "", depth = 0, quoted = false
        for character in text {
            switch character {
            case "'": quoted.toggle()
            case "(" where !quoted: depth += 1
            case ")" where !quoted: depth -= 1
            case separator where depth == 0 && !quoted:
                parts.append(part.trimmingCharacters(in: .whitespaces))
                part = ""
                continue
            default: break
            }
            part.append(character)
        }
        guard depth == 0, !quoted else { throw unsupported(sql) }
        return parts + [part.trimmingCharacters(in: .whitespaces)]
    }
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
    case .memory:
        // Every process of a zone shares one store, as they share a database.
        let store = InMemoryStore(now: { Int64((Date().timeIntervalSince1970 * 1000).rounded()) })
        return try await body(store) { store }
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
