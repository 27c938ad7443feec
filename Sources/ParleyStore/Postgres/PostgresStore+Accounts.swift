import FoundationEssentials
import ParleyCore
import PostgresNIO

extension PostgresStore: AccountStore {
    private static let accountColumns = "id, username, display_name, password_hash, failed_sign_ins, locked_until, created_at"
    private static let listingColumns = "meeting, owner, scheduled_at, attendees, password_hash, started_at, created_at"

    public func createAccount(_ account: Account) async throws(StoreError) -> Bool {
        try await withConnection { connection in
            try await connection.query("""
                INSERT INTO accounts (id, username, display_name, password_hash, failed_sign_ins, locked_until, created_at)
                VALUES (\(account.id), \(account.username), \(account.displayName), \(account.passwordHash),
                        \(account.failedSignIns), \(account.lockedUntil), \(account.createdAt))
                ON CONFLICT (username) DO NOTHING RETURNING 1
                """).count == 1
        }
    }

    public func account(username: String) async throws(StoreError) -> Account? {
        try await accounts("SELECT \(unescaped: Self.accountColumns) FROM accounts WHERE username = \(username)").first
    }

    public func account(id: String) async throws(StoreError) -> Account? {
        try await accounts("SELECT \(unescaped: Self.accountColumns) FROM accounts WHERE id = \(id)").first
    }

    public func changeSignInState<T: Sendable>(account: String, _ change: @escaping @Sendable (inout SignInState) -> T)
        async throws(StoreError) -> T?
    {
        try await withTransaction { connection in
            // FOR UPDATE: concurrent changes of one account's state take turns here.
            var current: SignInState?
            for row in try await connection.query("SELECT failed_sign_ins, locked_until FROM accounts WHERE id = \(account) FOR UPDATE") {
                let (failures, lockedUntil) = try row.decode((Int, Int64?).self)
                current = SignInState(failures: failures, lockedUntil: lockedUntil)
            }
            guard var state = current else { return nil }
            let result = change(&state)
            try await connection.query(
                "UPDATE accounts SET failed_sign_ins = \(state.failures), locked_until = \(state.lockedUntil) WHERE id = \(account)")
            return result
        }
    }

    public func createSession(tokenHash: String, account: String, expiresAt: Millis) async throws(StoreError) {
        try await withTransaction { connection in
            // Expired sessions go whenever a new one is made, so the table stays small.
            try await connection.query("DELETE FROM web_sessions WHERE expires_at < \(unescaped: Self.nowMs)")
            try await connection.query(
                "INSERT INTO web_sessions (token_hash, account, expires_at) VALUES (\(tokenHash), \(account), \(expiresAt))")
        }
    }

    public func sessionAccount(tokenHash: String, now: Millis) async throws(StoreError) -> Account? {
        try await accounts("""
            SELECT accounts.id, username, display_name, password_hash, failed_sign_ins, locked_until, created_at
            FROM web_sessions JOIN accounts ON accounts.id = web_sessions.account
            WHERE web_sessions.token_hash = \(tokenHash) AND web_sessions.expires_at > \(now)
            """).first
    }

    public func deleteSession(tokenHash: String) async throws(StoreError) {
        try await withConnection { connection in
            try await connection.query("DELETE FROM web_sessions WHERE token_hash = \(tokenHash)")
        }
    }

    public func sessions(of account: String, now: Millis) async throws(StoreError) -> [WebSession] {
        try await withConnection { connection in
            var sessions: [WebSession] = []
            let rows = try await connection.query("""
                SELECT token_hash, expires_at FROM web_sessions WHERE account = \(account) AND expires_at > \(now)
                ORDER BY expires_at DESC, token_hash
                """)
            for row in rows {
                let (hash, expiresAt) = try row.decode((String, Int64).self)
                sessions.append(WebSession(tokenHash: hash, expiresAt: expiresAt))
            }
            return sessions
        }
    }

    public func deleteSession(tokenHash: String, of account: String) async throws(StoreError) -> Bool {
        try await withConnection { connection in
            let rows = try await connection.query(
                "DELETE FROM web_sessions WHERE token_hash = \(tokenHash) AND account = \(account) RETURNING token_hash")
            return !rows.isEmpty
        }
    }

    public func deleteSessions(of account: String, keeping: String) async throws(StoreError) -> Int {
        try await withConnection { connection in
            let rows = try await connection.query(
                "DELETE FROM web_sessions WHERE account = \(account) AND token_hash <> \(keeping) RETURNING token_hash")
            return rows.count
        }
    }

    public func createListing(_ listing: MeetingListing) async throws(StoreError) {
        let attendees = String(decoding: try StoredForm.encode(listing.attendees), as: UTF8.self)
        try await withConnection { connection in
            try await connection.query("""
                INSERT INTO meeting_listings (meeting, owner, scheduled_at, attendees, password_hash, started_at, created_at)
                VALUES (\(listing.meeting.rawValue), \(listing.owner), \(listing.scheduledAt), \(attendees), \(listing.passwordHash),
                        \(listing.startedAt), \(listing.createdAt))
                """)
        }
    }

    public func listing(_ meeting: MeetingID) async throws(StoreError) -> MeetingListing? {
        try await listings("SELECT \(unescaped: Self.listingColumns) FROM meeting_listings WHERE meeting = \(meeting.rawValue)").first
    }

    public func listings(for account: Account) async throws(StoreError) -> [MeetingListing] {
        // Invitations are by username inside a JSON array; matching elements keeps it exact.
        try await listings("""
            SELECT \(unescaped: Self.listingColumns) FROM meeting_listings WHERE owner = \(account.id)
               OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(attendees::jsonb) AS invited(name) WHERE invited.name = \(account.username))
            ORDER BY COALESCE(scheduled_at, started_at, created_at), meeting
            """)
    }

    public func markStarted(_ meeting: MeetingID, at: Millis) async throws(StoreError) {
        try await withConnection { connection in
            try await connection.query(
                "UPDATE meeting_listings SET started_at = COALESCE(started_at, \(at)) WHERE meeting = \(meeting.rawValue)")
        }
    }

    private func accounts(_ query: PostgresQuery) async throws(StoreError) -> [Account] {
        try await withConnection { connection in
            var accounts: [Account] = []
            for row in try await connection.query(query) {
                let (id, username, displayName, hash, failed, lockedUntil, createdAt)
                    = try row.decode((String, String, String, String, Int, Int64?, Int64).self)
                accounts.append(Account(id: id, username: username, displayName: displayName, passwordHash: hash,
                                        failedSignIns: failed, lockedUntil: lockedUntil, createdAt: createdAt))
            }
            return accounts
        }
    }

    private func listings(_ query: PostgresQuery) async throws(StoreError) -> [MeetingListing] {
        try await withConnection { connection in
            var listings: [MeetingListing] = []
            for row in try await connection.query(query) {
                let (meeting, owner, scheduledAt, attendees, hash, startedAt, createdAt)
                    = try row.decode((String, String, Int64?, String, String?, Int64?, Int64).self)
                listings.append(MeetingListing(
                    meeting: MeetingID(meeting), owner: owner, scheduledAt: scheduledAt,
                    attendees: (try? JSONDecoder().decode([String].self, from: Data(attendees.utf8))) ?? [],
                    passwordHash: hash, startedAt: startedAt, createdAt: createdAt))
            }
            return listings
        }
    }
}
