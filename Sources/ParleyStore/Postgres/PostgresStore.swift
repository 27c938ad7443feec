import FoundationEssentials
import Logging
import ParleyTelemetry
import NIOCore
import NIOSSL
import ParleyCore
import PostgresNIO
import Synchronization

/// The `Store` for a zone that spans machines: a PostgreSQL database they all share.
///
/// Rows are the same as SQLite's: every log entry and snapshot is JSON beside its SHA-256.
/// Time comparisons between machines (lease expiry) use the database's clock only.
///
/// Connections come from one pool per host of the URL. Every call goes to the host that
/// last accepted writes; when a call fails for want of a connection, the next call looks
/// for the writable host again (after a promotion, the replica). A call that takes longer
/// than the URL's `statement_timeout` fails, and its connection is closed, so a commit whose
/// outcome is unknown is never acknowledged: the meeting's host stops and its clients
/// resume from what the database holds.
///
/// The pools run inside ``run()``; use ``StoreLocation/withStore(dataDirectory:synchronous:logger:_:)``,
/// which runs them for as long as the store is used.
public final class PostgresStore: Store, Sendable {
    public let url: PostgresURL
    private let clients: [PostgresClient]
    /// The index of the host that last accepted writes, nil when it must be looked for.
    private let writable: Mutex<Int?>
    private let logger: Logger

    /// The database's clock, in Unix milliseconds.
    static let nowMs = "(extract(epoch from clock_timestamp()) * 1000)::bigint"

    /// Connects to the first usable host, checks the credentials and the database, and brings
    /// the schema up to date.
    /// - Throws: ``StoreError/unavailable(_:)`` with one line naming the problem: no host
    ///   reachable, a wrong password, no such database, only read-only standbys, a schema newer
    ///   than this binary.
    /// - Parameter metrics: where the pools' connects and closes are counted.
    public static func open(_ url: PostgresURL, logger: Logger, metrics: ProcessMetrics = .off) async throws(StoreError) -> PostgresStore {
        var problems: [String] = []
        for (index, host) in url.hosts.enumerated() {
            do {
                let connection = try await PostgresConnection.connect(
                    configuration: try connectionConfiguration(url, host), id: index, logger: quiet)
                let session = PostgresSession(connection: connection)
                do {
                    if url.requiresWritable && url.hosts.count > 1 {
                        let standby = try await session.query("SELECT pg_is_in_recovery()").first?.decode(Bool.self) ?? false
                        if standby {
                            problems.append("\(host.name):\(host.port) is a read-only standby")
                            try? await connection.close()
                            continue
                        }
                    }
                    let applied = try await PostgresSchema.migrate(session)
                    if !applied.isEmpty {
                        logger.notice("PostgreSQL schema migrated", metadata: [
                            "versions": "\(applied.map(String.init).joined(separator: ","))", "store": "\(url)",
                        ])
                    }
                    try? await connection.close()
                } catch {
                    try? await connection.close()
                    throw error
                }
                return PostgresStore(url: url, writable: index, logger: logger, metrics: metrics)
            } catch {
                let mapped = storeError(error)
                // A schema problem is the database's, not the host's: no other host will do better.
                if case .unavailable = mapped { throw mapped }
                problems.append("\(host.name):\(host.port): \(describe(error))")
            }
        }
        throw .unavailable("cannot use the PostgreSQL store \(url): " + problems.joined(separator: "; "))
    }

    private init(url: PostgresURL, writable: Int, logger: Logger, metrics: ProcessMetrics) {
        self.url = url
        self.logger = logger
        self.writable = Mutex(writable)
        clients = url.hosts.map { host in
            var configuration = PostgresClient.Configuration(
                host: host.name, port: host.port, username: url.user, password: url.password, database: url.database,
                tls: Self.clientTLS(url.tls))
            configuration.options.connectTimeout = .seconds(url.connectTimeoutSeconds)
            configuration.options.maximumConnections = url.poolSize
            configuration.options.keepAliveBehavior = .init(frequency: .seconds(10))
            configuration.options.additionalStartupParameters = Self.sessionSettings(url)
            return PostgresClient(configuration: configuration, backgroundLogger: PoolEvents.logger(metrics))
        }
    }

    /// Runs the connection pools until cancelled.
    public func run() async {
        await withDiscardingTaskGroup { group in
            for client in clients { group.addTask { await client.run() } }
        }
    }

    // MARK: - Store

    public func createMeeting(_ record: MeetingRecord) async throws(StoreError) {
        let settings = String(decoding: try StoredForm.encode(record.settings), as: UTF8.self)
        let inserted = try await withConnection { connection in
            try await connection.query("""
                INSERT INTO meetings (id, title, settings, created_at, epoch)
                VALUES (\(record.id.rawValue), \(record.title), \(settings), \(record.createdAt), 0)
                ON CONFLICT (id) DO NOTHING RETURNING 1
                """).count
        }
        if inserted == 0 { throw .meetingExists(record.id) }
    }

    public func meeting(_ id: MeetingID) async throws(StoreError) -> MeetingRecord? {
        try await withConnection { connection in
            try await PostgresReads(connection: connection).meeting(id)?.0
        }
    }

    public func meetings() async throws(StoreError) -> [MeetingRecord] {
        try await withConnection { connection in
            var records: [MeetingRecord] = []
            for row in try await connection.query("SELECT id, title, settings, created_at FROM meetings ORDER BY id") {
                let (id, title, settings, createdAt) = try row.decode((String, String, String, Int64).self)
                records.append(MeetingRecord(id: MeetingID(id), title: title,
                                             settings: try StoredForm.settings(settings, of: MeetingID(id)), createdAt: createdAt))
            }
            return records
        }
    }

    public func advanceEpoch(_ meeting: MeetingID, to epoch: Epoch) async throws(StoreError) {
        try await withTransaction { connection in
            guard let current = try await Self.lockedEpoch(connection, meeting) else { throw StoreError.unknownMeeting(meeting) }
            guard epoch > current else { throw StoreError.fenced(meeting, epoch: epoch, current: current) }
            try await connection.query(
                "UPDATE meetings SET epoch = \(Int64(bitPattern: epoch.rawValue)) WHERE id = \(meeting.rawValue)")
        }
    }

    public func claimNextEpoch(_ meeting: MeetingID) async throws(StoreError) -> Epoch {
        let next = try await withConnection { connection in
            try await connection.query(
                "UPDATE meetings SET epoch = epoch + 1 WHERE id = \(meeting.rawValue) RETURNING epoch"
            ).first?.decode(Int64.self)
        }
        guard let next else { throw .unknownMeeting(meeting) }
        return Epoch(UInt64(bitPattern: next))
    }

    public func lease(_ name: String) async throws(StoreError) -> StoredLease? {
        try await withConnection { connection in
            try await connection.query(
                "SELECT holder, address, term, expires_at - \(unescaped: Self.nowMs) FROM leases WHERE name = \(name)"
            ).first.map { row in
                let (holder, address, term, remaining) = try row.decode((String, String, Int64, Int64).self)
                return StoredLease(holder: holder, address: address, term: UInt64(bitPattern: term), remainingMs: remaining)
            }
        }
    }

    public func replaceLease(_ name: String, expected: LeaseVersion?, with claim: LeaseClaim) async throws(StoreError) -> Bool {
        let term = Int64(bitPattern: claim.term)
        return try await withConnection { connection in
            // One statement each way, so the check and the write are one atomic step on the
            // database, which alone decides whether the lease has lapsed.
            let written: Int
            if let expected {
                written = try await connection.query("""
                    UPDATE leases SET holder = \(claim.holder), address = \(claim.address), term = \(term),
                        expires_at = \(unescaped: Self.nowMs) + \(claim.durationMs)
                    WHERE name = \(name) AND holder = \(expected.holder) AND term = \(Int64(bitPattern: expected.term))
                      AND (holder = \(claim.holder) OR expires_at < \(unescaped: Self.nowMs))
                    RETURNING 1
                    """).count
            } else {
                written = try await connection.query("""
                    INSERT INTO leases (name, holder, address, term, expires_at)
                    VALUES (\(name), \(claim.holder), \(claim.address), \(term), \(unescaped: Self.nowMs) + \(claim.durationMs))
                    ON CONFLICT (name) DO NOTHING RETURNING 1
                    """).count
            }
            return written == 1
        }
    }

    /// One transaction for the whole batch: the meetings' rows are locked first, so a
    /// concurrent `claimNextEpoch` either commits before (and this append is fenced) or waits
    /// until this one has committed.
    public func append(_ batch: [MeetingID: [LogEntry]]) async throws(StoreError) {
        let rows = try StoredForm.rows(batch)
        guard !rows.isEmpty else { return }
        try await withTransaction { connection in
            let ids = rows.map(\.0.rawValue)
            var stored: [String: (epoch: Epoch, last: Seq)] = [:]
            for row in try await connection.query("""
                SELECT m.id, m.epoch, (SELECT seq FROM log WHERE meeting = m.id ORDER BY seq DESC LIMIT 1)
                FROM meetings m WHERE m.id = ANY(\(ids)) ORDER BY m.id FOR UPDATE OF m
                """) {
                let (id, epoch, last) = try row.decode((String, Int64, Int64?).self)
                stored[id] = (Epoch(UInt64(bitPattern: epoch)), Seq(bitPattern: last ?? 0))
            }
            var meetings: [String] = [], seqs: [Int64] = [], epochs: [Int64] = []
            var bodies: [ByteBuffer] = [], checksums: [ByteBuffer] = []
            var raised: [String] = [], raisedTo: [Int64] = []
            for (meeting, entries) in rows {
                guard let (current, last) = stored[meeting.rawValue] else { throw StoreError.unknownMeeting(meeting) }
                let newest = try StoredForm.checkAppend(meeting, entries, current: current, lastSeq: last)
                for entry in entries {
                    meetings.append(meeting.rawValue)
                    seqs.append(Int64(bitPattern: entry.seq))
                    epochs.append(Int64(bitPattern: entry.epoch.rawValue))
                    bodies.append(ByteBuffer(bytes: entry.body))
                    checksums.append(ByteBuffer(bytes: entry.checksum))
                }
                if newest > current {
                    raised.append(meeting.rawValue)
                    raisedTo.append(Int64(bitPattern: newest.rawValue))
                }
            }
            try await connection.query("""
                INSERT INTO log (meeting, seq, epoch, body, checksum)
                SELECT * FROM unnest(\(meetings)::text[], \(seqs)::bigint[], \(epochs)::bigint[], \(bodies)::bytea[], \(checksums)::bytea[])
                """)
            if !raised.isEmpty {
                try await connection.query("""
                    UPDATE meetings SET epoch = raised.epoch
                    FROM unnest(\(raised)::text[], \(raisedTo)::bigint[]) AS raised(id, epoch) WHERE meetings.id = raised.id
                    """)
            }
        }
    }

    public func writeSnapshot(_ meeting: MeetingID, _ snapshot: Snapshot) async throws(StoreError) {
        let (body, checksum) = try StoredForm.sealed(snapshot)
        try await withTransaction { connection in
            guard let current = try await Self.lockedEpoch(connection, meeting) else { throw StoreError.unknownMeeting(meeting) }
            let last = try await connection.query(
                "SELECT seq FROM log WHERE meeting = \(meeting.rawValue) ORDER BY seq DESC LIMIT 1"
            ).first?.decode(Int64.self) ?? 0
            try StoredForm.checkSnapshot(meeting, snapshot, current: current, lastSeq: Seq(bitPattern: last))
            let seq = Int64(bitPattern: snapshot.seq)
            try await connection.query("""
                INSERT INTO snapshots (meeting, seq, epoch, body, checksum, created_at)
                VALUES (\(meeting.rawValue), \(seq), \(Int64(bitPattern: snapshot.epoch.rawValue)), \(body), \(checksum),
                        \(unescaped: Self.nowMs))
                ON CONFLICT (meeting, seq) DO UPDATE SET epoch = excluded.epoch, body = excluded.body,
                    checksum = excluded.checksum, created_at = excluded.created_at
                """)
            try await connection.query("""
                DELETE FROM snapshots WHERE meeting = \(meeting.rawValue) AND seq NOT IN
                    (SELECT seq FROM snapshots WHERE meeting = \(meeting.rawValue) ORDER BY seq DESC LIMIT \(SQLiteStore.snapshotsKept))
                """)
        }
    }

    public func recover(_ meeting: MeetingID, historyLimit: Int) async throws(StoreError) -> RecoveredMeeting {
        try await recover(meeting, historyLimit: historyLimit, after: nil)
    }

    public func recover(_ meeting: MeetingID, after seq: Seq) async throws(StoreError) -> RecoveredMeeting {
        try await recover(meeting, historyLimit: 0, after: seq)
    }

    /// In one read-only transaction, like `recover`'s reading.
    public func peek(_ meeting: MeetingID) async throws(StoreError) -> RecoveredMeeting {
        try await withConnection { connection in
            try await connection.transaction(begin: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") { connection in
                try await Recovery.scan(PostgresReads(connection: connection), meeting, historyLimit: 0).recovered
            }
        }
    }

    /// Reads in one repeatable-read transaction, so the log and snapshots are one moment's.
    /// A cut log is quarantined as in `SQLiteStore.recover`.
    private func recover(_ meeting: MeetingID, historyLimit: Int, after: Seq?) async throws(StoreError) -> RecoveredMeeting {
        let scan = try await withConnection { connection in
            try await connection.transaction(begin: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") { connection in
                try await Recovery.scan(PostgresReads(connection: connection), meeting, historyLimit: max(0, historyLimit), after: after)
            }
        }
        return try await Recovery.finish(scan, meeting, logger: logger) { cut throws(StoreError) in
            try await withTransaction { connection in
                let id = meeting.rawValue, seq = Int64(bitPattern: cut.seq)
                let now = try await connection.query(
                    "SELECT checksum FROM log WHERE meeting = \(id) AND seq = \(seq) FOR UPDATE"
                ).first?.decode(Data.self)
                guard now == cut.checksumSeen else { return false }
                try await connection.query("""
                    INSERT INTO log_quarantine (meeting, seq, epoch, body, checksum, quarantined_at)
                    SELECT meeting, seq, epoch, body, checksum, \(unescaped: Self.nowMs) FROM log WHERE meeting = \(id) AND seq >= \(seq)
                    ON CONFLICT (meeting, seq) DO UPDATE SET epoch = excluded.epoch, body = excluded.body,
                        checksum = excluded.checksum, quarantined_at = excluded.quarantined_at
                    """)
                try await connection.query("DELETE FROM log WHERE meeting = \(id) AND seq >= \(seq)")
                return true
            }
        }
    }

    public func recordCrash(_ meeting: MeetingID, participant: ParticipantID, op: OpID, at: Millis) async throws(StoreError) -> Int {
        try await withConnection { connection in
            try await connection.query("""
                INSERT INTO op_crashes (meeting, participant, op_id, crashes, last_crash_at)
                VALUES (\(meeting.rawValue), \(participant.rawValue), \(op.rawValue), 1, \(at))
                ON CONFLICT (meeting, participant, op_id)
                DO UPDATE SET crashes = op_crashes.crashes + 1, last_crash_at = excluded.last_crash_at
                RETURNING crashes
                """).first?.decode(Int.self) ?? 1
        }
    }

    public func crashes(_ meeting: MeetingID) async throws(StoreError) -> [OpCrashes] {
        try await withConnection { connection in
            var crashes: [OpCrashes] = []
            for row in try await connection.query(
                "SELECT participant, op_id, crashes FROM op_crashes WHERE meeting = \(meeting.rawValue) ORDER BY participant, op_id"
            ) {
                let (participant, op, count) = try row.decode((String, String, Int).self)
                crashes.append(OpCrashes(participant: ParticipantID(participant), op: OpID(op), count: count))
            }
            return crashes
        }
    }

    public func recordAttendance(_ records: [Attendance]) async throws(StoreError) {
        guard !records.isEmpty else { return }
        try await withConnection { connection in
            try await connection.query("""
                INSERT INTO attendance (meeting, participant, name, event, server, at)
                SELECT meeting, participant, name, event, server, at FROM unnest(\(records.map(\.meeting.rawValue))::text[], \(records.map(\.participant.rawValue))::text[],
                    \(records.map(\.name))::text[], \(records.map(\.event.rawValue))::text[], \(records.map(\.server))::text[],
                    \(records.map(\.at))::bigint[]) WITH ORDINALITY AS r(meeting, participant, name, event, server, at, n)
                ORDER BY n
                """)
        }
    }

    public func attendance(_ meeting: MeetingID?) async throws(StoreError) -> [Attendance] {
        try await withConnection { connection in
            let rows = if let meeting {
                try await connection.query("""
                    SELECT meeting, participant, name, event, server, at FROM attendance WHERE meeting = \(meeting.rawValue) ORDER BY id
                    """)
            } else {
                try await connection.query("SELECT meeting, participant, name, event, server, at FROM attendance ORDER BY id")
            }
            var records: [Attendance] = []
            for row in rows {
                let (meeting, participant, name, event, server, at) = try row.decode((String, String, String, String, String, Int64).self)
                guard let event = Attendance.Event(rawValue: event) else { continue }
                records.append(Attendance(meeting: MeetingID(meeting), participant: ParticipantID(participant), name: name,
                                          event: event, server: server, at: at))
            }
            return records
        }
    }

    public func publishProcesses(machine: String, _ processes: [PublishedProcess]) async throws(StoreError) {
        try await withTransaction { connection in
            try await connection.query("DELETE FROM published_processes WHERE machine = \(machine)")
            try await connection.query("""
                INSERT INTO published_processes (machine, name, status, published_at)
                SELECT \(machine), name, status, \(unescaped: Self.nowMs)
                FROM unnest(\(processes.map(\.name))::text[], \(processes.map(\.status))::text[]) AS p(name, status)
                """)
        }
    }

    public func publishedProcesses() async throws(StoreError) -> [PublishedProcess] {
        try await withConnection { connection in
            var processes: [PublishedProcess] = []
            for row in try await connection.query("""
                SELECT machine, name, status, \(unescaped: Self.nowMs) - published_at FROM published_processes ORDER BY machine, name
                """) {
                let (machine, name, status, age) = try row.decode((String, String, String, Int64).self)
                processes.append(PublishedProcess(machine: machine, name: name, status: status, ageMs: age))
            }
            return processes
        }
    }

    // MARK: - Raw access, for tests and repair tools

    func rawExecute(_ sql: String) async throws(StoreError) {
        try await withConnection { connection in
            try await connection.query(PostgresQuery(unsafeSQL: sql))
        }
    }

    func rawInt(_ sql: String) async throws(StoreError) -> Int? {
        try await withConnection { connection in
            try await connection.query(PostgresQuery(unsafeSQL: sql)).first?.decode(Int?.self)
        }
    }

    // MARK: - Connections

    static let quiet = Logger(label: "parley.store.postgres", factory: { _ in SwiftLogNoOpLogHandler() })

    /// The meeting's epoch, its row locked until the transaction ends.
    static func lockedEpoch(_ connection: PostgresSession, _ meeting: MeetingID) async throws -> Epoch? {
        try await connection.query("SELECT epoch FROM meetings WHERE id = \(meeting.rawValue) FOR UPDATE")
            .first.map { Epoch(UInt64(bitPattern: try $0.decode(Int64.self))) }
    }

    /// Runs `body` in one transaction on the writable host.
    @discardableResult
    func withTransaction<T: Sendable>(_ body: @escaping @Sendable (PostgresSession) async throws -> T) async throws(StoreError) -> T {
        try await withConnection { connection in try await connection.transaction(body) }
    }

    /// Runs `body` on a connection to the writable host, within the statement timeout: when
    /// it runs out, the connection is closed under `body`, which then fails.
    @discardableResult
    func withConnection<T: Sendable>(_ body: @escaping @Sendable (PostgresSession) async throws -> T) async throws(StoreError) -> T {
        let index = try await writableHost()
        let client = clients[index]
        let limit = Duration.seconds(url.statementTimeoutSeconds)
        let leased = LeasedConnection()
        let result: Result<T, any Error> = await withTaskGroup(of: Result<T, any Error>?.self) { group in
            group.addTask {
                do {
                    return .success(try await client.withConnection { connection in
                        leased.started(on: connection)
                        let result: Result<T, any Error>
                        do {
                            result = .success(try await body(PostgresSession(connection: connection)))
                        } catch {
                            result = .failure(error)
                        }
                        // Closed under us: make sure it is closed before the pool takes it back.
                        if let closing = leased.finished() { try? await closing.close() }
                        return try result.get()
                    })
                } catch {
                    return .failure(error)
                }
            }
            group.addTask {
                do {
                    try await Task.sleep(for: limit)
                } catch {
                    // Cancelled. If `body` is still on its connection, the caller gave up on
                    // it: close the connection so that `body` fails now rather than the
                    // caller waiting out a query nobody wants (a finished `body` has let go).
                    if let connection = leased.takeForClosing() { try? await connection.close() }
                    return nil
                }
                if let connection = leased.takeForClosing() { try? await connection.close() }
                return .failure(StoreError.io("the database did not answer within \(limit) (statement_timeout)"))
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? .failure(CancellationError())
        }
        switch result {
        case .success(let value):
            return value
        case .failure(let error):
            let mapped = Self.storeError(error)
            if case .io = mapped, url.hosts.count > 1, Self.isConnectionLoss(error) {
                // Perhaps a failover: find the writable host again on the next call.
                writable.withLock { if $0 == index { $0 = nil } }
            }
            throw mapped
        }
    }

    /// The host to use. When it is not known (after a connection loss), every host is asked
    /// at once, on a connection of its own, so that a dead one (refusing, or silent until
    /// `connect_timeout`) does not delay finding the live one; the first, in URL order, that
    /// accepts writes wins.
    private func writableHost() async throws(StoreError) -> Int {
        if let index = writable.withLock({ $0 }) { return index }
        let url = url
        let answers = await withTaskGroup(of: (Int, Result<Bool, any Error>).self) { group in
            for (index, host) in url.hosts.enumerated() {
                group.addTask { (index, await Self.probe(url, host)) }
            }
            var answers = [Result<Bool, any Error>?](repeating: nil, count: url.hosts.count)
            for await (index, answer) in group {
                answers[index] = answer
                // Done once every host before the first usable one has answered.
                guard let first = answers.firstIndex(where: { Self.usable($0, url) }) else { continue }
                if answers[..<first].allSatisfy({ $0 != nil }) {
                    group.cancelAll()
                    break
                }
            }
            return answers
        }
        if let index = answers.firstIndex(where: { Self.usable($0, url) }) {
            writable.withLock { $0 = index }
            let host = url.hosts[index]
            logger.notice("using PostgreSQL host \(host.name):\(host.port)", metadata: ["store": "\(url)"])
            return index
        }
        let problems = zip(url.hosts, answers).map { host, answer in
            switch answer {
            case .success: "\(host.name):\(host.port) is a read-only standby"
            case .failure(let error): "\(host.name):\(host.port): \(Self.describe(error))"
            case nil: "\(host.name):\(host.port): no answer"
            }
        }
        throw .io("no writable PostgreSQL host: " + problems.joined(separator: "; "))
    }

    private static func usable(_ answer: Result<Bool, any Error>?, _ url: PostgresURL) -> Bool {
        if case .success(let standby) = answer { return !standby || !url.requiresWritable }
        return false
    }

    /// Whether `host` is a standby (`pg_is_in_recovery()`), on a fresh connection.
    private static func probe(_ url: PostgresURL, _ host: PostgresURL.Host) async -> Result<Bool, any Error> {
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(configuration: try connectionConfiguration(url, host), id: 0, logger: quiet)
        } catch {
            return .failure(error)
        }
        let answer: Result<Bool, any Error>
        do {
            let rows = try await PostgresSession(connection: connection).query("SELECT pg_is_in_recovery()")
            answer = .success(try rows.first?.decode(Bool.self) ?? false)
        } catch {
            answer = .failure(error)
        }
        try? await connection.close()
        return answer
    }

    /// Settings for every session, sent at connection. A host cut off from the database
    /// mid-transaction cannot end it, and the database cannot tell a silent client from a slow
    /// one: without these, its row locks (its meetings' rows) would be held until TCP gave up
    /// on it, hours later, and no other host could claim those meetings. So the database ends
    /// a session idle inside a transaction for longer than the statement timeout (the client
    /// has given up on it by then), and any statement that runs longer.
    static func sessionSettings(_ url: PostgresURL) -> [(String, String)] {
        let ms = "\(url.statementTimeoutSeconds * 1_000)"
        // The server's own statement_timeout is twice the store's deadline, so this side always
        // gives up (and closes the connection) first: a COMMIT that PostgreSQL cancels while it
        // waits for a synchronous replica is reported as a success ("canceling wait for
        // synchronous replication"), committed on the primary alone, and must never be taken
        // for an acknowledgement.
        let serverMs = "\(url.statementTimeoutSeconds * 2_000)"
        return [("idle_in_transaction_session_timeout", ms), ("statement_timeout", serverMs),
                ("tcp_keepalives_idle", "5"), ("tcp_keepalives_interval", "2"), ("tcp_keepalives_count", "3")]
    }

    private static func connectionConfiguration(_ url: PostgresURL, _ host: PostgresURL.Host) throws -> PostgresConnection.Configuration {
        var configuration = PostgresConnection.Configuration(
            host: host.name, port: host.port, username: url.user, password: url.password, database: url.database,
            tls: try connectionTLS(url.tls))
        configuration.options.connectTimeout = .seconds(Int64(url.connectTimeoutSeconds))
        configuration.options.additionalStartupParameters = sessionSettings(url)
        return configuration
    }

    private static func connectionTLS(_ mode: PostgresURL.TLSMode) throws -> PostgresConnection.Configuration.TLS {
        switch mode {
        case .disable: .disable
        case .prefer: .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
        case .require: .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
        }
    }

    private static func clientTLS(_ mode: PostgresURL.TLSMode) -> PostgresClient.Configuration.TLS {
        switch mode {
        case .disable: .disable
        case .prefer: .prefer(.makeClientConfiguration())
        case .require: .require(.makeClientConfiguration())
        }
    }

    // MARK: - Errors

    static func storeError(_ error: any Error) -> StoreError {
        switch error {
        case let error as StoreError: return error
        default: return .io(describe(error))
        }
    }

    /// Whether the error means the connection or the server went away, rather than the
    /// statement being refused.
    static func isConnectionLoss(_ error: any Error) -> Bool {
        switch error {
        case is PostgresConnectionClosed:
            return true
        case let error as PSQLError:
            if let state = error.serverInfo?[.sqlState] {
                // Read-only transaction (a demoted primary), admin shutdown, cannot connect now.
                return ["25006", "57P01", "57P02", "57P03"].contains(state)
            }
            return [.connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed]
                .contains(error.code)
        case let error as StoreError:
            if case .io = error { return true }
            return false
        default:
            return false
        }
    }

    /// One line for an operator: the server's own message when it sent one.
    static func describe(_ error: any Error) -> String {
        switch error {
        case let error as PSQLError:
            if let message = error.serverInfo?[.message] {
                return message + (error.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? "")
            }
            if let underlying = error.underlying {
                let text = "\(underlying)"
                if text.contains("Connection refused") { return "connection refused: nothing listens there (is PostgreSQL running?)" }
                if text.contains("imed out") || text.contains("connectTimeout") { return "no answer to the connection attempt (timed out)" }
                if text.contains("DNS") || text.contains("resolve") { return "cannot resolve the host name" }
                return "\(error.code): \(text)"
            }
            return "\(error.code)"
        case let error as StoreError:
            return error.description
        default:
            return String(describing: error)
        }
    }
}

/// The connection a call is using, for the timer that may have to close it.
/// The connection a call is running on, and whether someone means to close it under the
/// call. Closing goes through here so that it can never reach a connection already handed
/// back to the pool (and perhaps leased to the next caller): only while the call holds it.
final class LeasedConnection: Sendable {
    private enum State { case idle, running(PostgresConnection), closing(PostgresConnection) }
    private let state = Mutex<State>(.idle)

    func started(on connection: PostgresConnection) { state.withLock { $0 = .running(connection) } }

    /// The connection to close, if the call is still on it (marked so that it is not handed back open).
    func takeForClosing() -> PostgresConnection? {
        state.withLock { state in
            guard case .running(let connection) = state else { return nil }
            state = .closing(connection)
            return connection
        }
    }

    /// The call is done with its connection: returns it if it was marked for closing, so that
    /// the call closes it before the pool gets it back.
    func finished() -> PostgresConnection? {
        state.withLock { state in
            defer { state = .idle }
            if case .closing(let connection) = state { return connection }
            return nil
        }
    }
}

/// Recovery's reads on one connection, inside the caller's transaction.
struct PostgresReads: RecoveryReads {
    let connection: PostgresSession

    func meeting(_ id: MeetingID) async throws -> (MeetingRecord, Epoch)? {
        guard let row = try await connection.query(
            "SELECT title, settings, created_at, epoch FROM meetings WHERE id = \(id.rawValue)"
        ).first else { return nil }
        let (title, settings, createdAt, epoch) = try row.decode((String, String, Int64, Int64).self)
        return (MeetingRecord(id: id, title: title, settings: try StoredForm.settings(settings, of: id), createdAt: createdAt),
                Epoch(UInt64(bitPattern: epoch)))
    }

    func snapshots(_ id: MeetingID) async throws -> [StoredRow] {
        try await rows("SELECT seq, body, checksum FROM snapshots WHERE meeting = \(id.rawValue) ORDER BY seq DESC")
    }

    func log(_ id: MeetingID, after seq: Seq) async throws -> [StoredRow] {
        try await rows("""
            SELECT seq, body, checksum FROM log WHERE meeting = \(id.rawValue) AND seq > \(Int64(bitPattern: seq)) ORDER BY seq
            """)
    }

    func log(_ id: MeetingID, through seq: Seq, limit: Int) async throws -> [StoredRow] {
        try await rows("""
            SELECT seq, body, checksum FROM log WHERE meeting = \(id.rawValue) AND seq <= \(Int64(bitPattern: seq))
            ORDER BY seq DESC LIMIT \(limit)
            """)
    }

    private func rows(_ query: PostgresQuery) async throws -> [StoredRow] {
        var rows: [StoredRow] = []
        for row in try await connection.query(query) {
            let (seq, body, checksum) = try row.decode((Int64, Data?, Data?).self)
            rows.append(StoredRow(seq: Seq(bitPattern: seq), body: body, checksum: checksum))
        }
        return rows
    }
}
