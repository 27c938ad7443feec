import ParleyTestSupport
import Foundation
import Logging
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
