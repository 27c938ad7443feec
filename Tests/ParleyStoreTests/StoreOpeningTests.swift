import ParleyTestSupport
import Foundation
import Logging
import ParleyTelemetry
@testable import ParleyStore
import Testing

/// Choosing and opening a store: URLs, and one clear line for each way it can go wrong.
@Suite("Opening a store", MachineLoad.server)
struct StoreOpeningTests {
    @Test("store URLs: SQLite, PostgreSQL with several hosts and options; the password never printed")
    func urls() throws {
        #expect(try StoreLocation(url: "sqlite:") == .sqlite(directory: nil))
        #expect(try StoreLocation(url: "sqlite:///c") == .sqlite(directory: "/c"))
        let location = try StoreLocation(url: "postgres://parley:s3cr%40t@db1:5433,db2/meetings?sslmode=require&statement_timeout=3")
        guard case .postgres(let url) = location else { Issue.record("not postgres"); return }
        #expect(url.user == "parley" && url.password == "s3cr@t" && url.database == "meetings")
        #expect(url.hosts == [.init(name: "db1", port: 5433), .init(name: "db2", port: 5432)])
        #expect(url.tls == .require && url.requiresWritable && url.statementTimeoutSeconds == 3)
        #expect(location.description == "postgres://parley:***@db1:5433,db2:5432/meetings")
    }

    @Test("a malformed store URL is refused with what is wrong, and without the password",
          arguments: [
              ("mysql://x/y", "expected sqlite:, sqlite:///directory or postgres://user:password@host:port/database"),
              ("postgres://u:pw@host:99999/db", "bad port in host:99999"),
              ("postgres://u:pw@host", "no database name"),
              ("postgres://u:pw@host/db?sslmode=maybe", "sslmode must be disable, prefer or require"),
              ("postgres://u:pw@host/db?colour=blue", "unknown option colour"),
              ("sqlite://relative", "an SQLite URL names an absolute directory"),
          ])
    func malformed(_ url: String, _ problem: String) {
        #expect {
            _ = try StoreLocation(url: url)
        } throws: { error in
            guard case .misconfigured(let message) = error as? StoreError else { return false }
            return message.contains(problem) && !message.contains(":pw@")
        }
    }

    @Test("an unreachable host, a wrong password and a missing database each give one line naming the problem")
    func unavailable() async throws {
        let server = try await TestPostgres.shared.server()
        let port = try freeLoopbackPort()
        let cases: [(String, String)] = [
            ("postgres://postgres:\(server.password)@127.0.0.1:\(port)/postgres?sslmode=disable&connect_timeout=2",
             "127.0.0.1:\(port): "),
            ("postgres://postgres:wrong@127.0.0.1:\(server.port)/postgres?sslmode=disable",
             "password authentication failed for user \"postgres\" (SQLSTATE 28P01)"),
            (server.url(database: "no_such_db"), "database \"no_such_db\" does not exist (SQLSTATE 3D000)"),
        ]
        for (url, problem) in cases {
            guard case .postgres(let parsed) = try StoreLocation(url: url) else { Issue.record("not postgres"); continue }
            await #expect {
                _ = try await PostgresStore.open(parsed, logger: Logger(label: "test"))
            } throws: { error in
                guard case .unavailable(let message) = error as? StoreError else { return false }
                let ok = message.hasPrefix("cannot use the PostgreSQL store postgres://postgres:***@")
                    && message.contains(problem) && !message.contains("\n") && !message.contains(":wrong@")
                if !ok { Issue.record("message: \(message)") }
                return ok
            }
        }
    }

    @Test("the pools' connects are counted: the first, and the reconnect after the database drops every connection")
    func reconnectsCounted() async throws {
        let url = try await TestPostgres.shared.freshDatabase()
        guard case .postgres(let parsed) = try StoreLocation(url: url) else { Issue.record("not postgres"); return }
        let metrics = ProcessMetrics.prometheus()
        let store = try await PostgresStore.open(parsed, logger: Logger(label: "test"), metrics: metrics)
        let killer = try await PostgresStore.open(parsed, logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await store.run() }
            group.addTask { await killer.run() }
            defer { group.cancelAll() }
            _ = try await store.publishedProcesses()
            let connected = Self.count(metrics, "parley_store_connects_total{outcome=\"attempted\"}")
            #expect(connected >= 1)
            // Every other connection to this database goes, as in a database restart.
            let others = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            try await killer.rawExecute(others)
            // The pool notices and connects again; a call may fail once on the dead connection.
            let deadline = ContinuousClock.now + .seconds(15)
            var answered = false
            while !answered, ContinuousClock.now < deadline {
                answered = (try? await store.publishedProcesses()) != nil
                    && Self.count(metrics, "parley_store_connects_total{outcome=\"attempted\"}") > connected
                if !answered { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(answered, "no reconnect counted: \(metrics.exposition())")
            #expect(Self.count(metrics, "parley_store_connections_closed_total") >= 1)
        }
    }

    @Test("a caller that gives up on a store call is not held until the database answers: the connection is closed under it")
    func cancelledCallEndsAtOnce() async throws {
        let url = try await TestPostgres.shared.freshDatabase()
        // A statement timeout far longer than the test: only the cancellation can end the call.
        guard case .postgres(let parsed) = try StoreLocation(url: url + "&statement_timeout=60") else { Issue.record("not postgres"); return }
        let store = try await PostgresStore.open(parsed, logger: Logger(label: "test"))
        let watcher = try await PostgresStore.open(parsed, logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await store.run() }
            group.addTask { await watcher.run() }
            defer { group.cancelAll() }
            let call = Task { try await store.rawExecute("SELECT pg_sleep(30)") }
            // Cancel once the query is running in the database, not before.
            let running = "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'"
            let deadline = ContinuousClock.now + .seconds(10)
            while try await watcher.rawInt(running) != 1, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            #expect(try await watcher.rawInt(running) == 1)
            let cancelled = ContinuousClock.now
            call.cancel()
            _ = await call.result
            let took = ContinuousClock.now - cancelled
            #expect(took < .seconds(3), "the cancelled call ended after \(took)")
            // The pool is still usable.
            _ = try await store.publishedProcesses()
        }
    }

    /// A counter's value in the exposition text (0 when absent).
    static func count(_ metrics: ProcessMetrics, _ series: String) -> Int {
        metrics.exposition().split(separator: "\n").first { $0.hasPrefix(series + " ") }
            .flatMap { Double($0.split(separator: " ").last ?? "") }.map { Int($0) } ?? 0
    }

    @Test("a database whose schema is newer than this binary is refused", arguments: [StoreKind.sqlite, .postgres])
    func newerSchema(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, another in
            switch kind {
            case .sqlite: try await store.rawExecute("INSERT INTO grdb_migrations (identifier) VALUES ('v99: from the future')")
            case .postgres: try await store.rawExecute("INSERT INTO parley_schema (version, name) VALUES (99, 'from the future')")
            case .memory: Issue.record("a store in memory has no schema")
            }
            await #expect {
                _ = try await another()
            } throws: { error in
                guard case .unavailable(let message) = error as? StoreError else { return false }
                return message.contains("newer")
            }
        }
    }

    @Test("PostgreSQL: migrations are numbered and recorded; opening again applies nothing")
    func migrationsRecorded() async throws {
        try await withStore(.postgres) { store, another in
            #expect(try await store.rawInt("SELECT max(version) FROM parley_schema") == PostgresSchema.migrations.last?.version)
            _ = try await another()
            #expect(try await store.rawInt("SELECT count(*) FROM parley_schema") == PostgresSchema.migrations.count)
        }
    }
}
