import Logging
import PostgresNIO

/// The PostgreSQL schema, as numbered migrations. A database remembers which it has in
/// `parley_schema`; opening a store applies the missing ones, in order, in one transaction
/// under an advisory lock, so machines starting together do not race. A database that has
/// a migration this binary does not know was written by a newer Parley and is refused.
enum PostgresSchema {
    struct Migration {
        var version: Int
        var name: String
        var sql: [String]
    }

    /// Never edit a migration that has shipped: add a new one.
    static let migrations: [Migration] = [
        Migration(version: 1, name: "meetings, log, snapshots, leases, crashes, attendance, accounts", sql: [
            """
            CREATE TABLE meetings (
                id text PRIMARY KEY,
                title text NOT NULL,
                settings text NOT NULL,
                created_at bigint NOT NULL,
                epoch bigint NOT NULL DEFAULT 0
            )
            """,
            """
            CREATE TABLE log (
                meeting text NOT NULL,
                seq bigint NOT NULL,
                epoch bigint NOT NULL,
                body bytea NOT NULL,
                checksum bytea NOT NULL,
                PRIMARY KEY (meeting, seq)
            )
            """,
            """
            CREATE TABLE snapshots (
                meeting text NOT NULL,
                seq bigint NOT NULL,
                epoch bigint NOT NULL,
                body bytea NOT NULL,
                checksum bytea NOT NULL,
                created_at bigint NOT NULL,
                PRIMARY KEY (meeting, seq)
            )
            """,
            """
            CREATE TABLE log_quarantine (
                meeting text NOT NULL,
                seq bigint NOT NULL,
                epoch bigint NOT NULL,
                body bytea NOT NULL,
                checksum bytea NOT NULL,
                quarantined_at bigint NOT NULL,
                PRIMARY KEY (meeting, seq)
            )
            """,
            // expires_at is on the database's clock (see PostgresStore.nowMs).
            """
            CREATE TABLE leases (
                name text PRIMARY KEY,
                holder text NOT NULL,
                address text NOT NULL,
                term bigint NOT NULL,
                expires_at bigint NOT NULL
            )
            """,
            """
            CREATE TABLE op_crashes (
                meeting text NOT NULL,
                participant text NOT NULL,
                op_id text NOT NULL,
                crashes integer NOT NULL,
                last_crash_at bigint NOT NULL,
                PRIMARY KEY (meeting, participant, op_id)
            )
            """,
            """
            CREATE TABLE attendance (
                id bigserial PRIMARY KEY,
                meeting text NOT NULL,
                participant text NOT NULL,
                name text NOT NULL,
                event text NOT NULL,
                server text NOT NULL,
                at bigint NOT NULL
            )
            """,
            "CREATE INDEX attendance_by_meeting ON attendance (meeting, id)",
            """
            CREATE TABLE accounts (
                id text PRIMARY KEY,
                username text NOT NULL UNIQUE,
                display_name text NOT NULL,
                password_hash text NOT NULL,
                failed_sign_ins integer NOT NULL DEFAULT 0,
                locked_until bigint,
                created_at bigint NOT NULL
            )
            """,
            """
            CREATE TABLE web_sessions (
                token_hash text PRIMARY KEY,
                account text NOT NULL REFERENCES accounts(id),
                expires_at bigint NOT NULL
            )
            """,
            """
            CREATE TABLE meeting_listings (
                meeting text PRIMARY KEY REFERENCES meetings(id),
                owner text NOT NULL REFERENCES accounts(id),
                scheduled_at bigint,
                attendees text NOT NULL,
                password_hash text,
                started_at bigint,
                created_at bigint NOT NULL
            )
            """,
            "CREATE INDEX listings_by_owner ON meeting_listings (owner)",
        ]),
        Migration(version: 2, name: "published processes, for a cluster-wide ctl status", sql: [
            """
            CREATE TABLE published_processes (
                machine text NOT NULL,
                name text NOT NULL,
                status text NOT NULL,
                published_at bigint NOT NULL,
                PRIMARY KEY (machine, name)
            )
            """,
        ]),
        Migration(version: 3, name: "documents and their page images, shared by every web front", sql: [
            """
            CREATE TABLE documents (
                meeting text NOT NULL,
                document text NOT NULL,
                manifest text NOT NULL,
                created_at bigint NOT NULL,
                PRIMARY KEY (meeting, document)
            )
            """,
            """
            CREATE TABLE document_pages (
                meeting text NOT NULL,
                page text NOT NULL,
                document text NOT NULL,
                content_type text NOT NULL,
                bytes bytea NOT NULL,
                PRIMARY KEY (meeting, page),
                FOREIGN KEY (meeting, document) REFERENCES documents (meeting, document) ON DELETE CASCADE
            )
            """,
        ]),
    ]

    /// Any fixed number: every Parley process takes this advisory lock to migrate.
    static let lockKey: Int64 = 0x7061_726c_6579

    /// Brings the schema up to date; returns the versions it applied.
    static func migrate(_ connection: PostgresSession) async throws -> [Int] {
        try await connection.transaction { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(\(lockKey))")
            try await connection.query("""
                CREATE TABLE IF NOT EXISTS parley_schema (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """)
            var applied = Set<Int>()
            for row in try await connection.query("SELECT version FROM parley_schema") {
                applied.insert(try row.decode(Int.self))
            }
            let known = migrations.map(\.version)
            if let newest = applied.max(), newest > known.max() ?? 0 {
                throw StoreError.unavailable(
                    "the database's schema is at version \(newest), newer than this Parley knows (\(known.max() ?? 0)); "
                        + "it was upgraded by a newer Parley: run that version, or restore a backup from before the upgrade")
            }
            var done: [Int] = []
            for migration in migrations where !applied.contains(migration.version) {
                for statement in migration.sql {
                    try await connection.query(PostgresQuery(unsafeSQL: statement))
                }
                try await connection.query(
                    "INSERT INTO parley_schema (version, name) VALUES (\(migration.version), \(migration.name))")
                done.append(migration.version)
            }
            return done
        }
    }
}
