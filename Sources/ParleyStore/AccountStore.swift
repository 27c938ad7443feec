import FoundationEssentials
import GRDB
import ParleyCore

/// A web-zone account. The password is kept only as a bcrypt hash.
public struct Account: Equatable, Sendable {
    public var id: String
    /// Lower-case, unique; what the user signs in with.
    public var username: String
    public var displayName: String
    public var passwordHash: String
    /// Failed sign-ins since the last success; reset by a success or the end of a lock.
    public var failedSignIns: Int
    public var lockedUntil: Millis?
    public var createdAt: Millis

    public init(id: String, username: String, displayName: String, passwordHash: String,
                failedSignIns: Int = 0, lockedUntil: Millis? = nil, createdAt: Millis) {
        self.id = id
        self.username = username
        self.displayName = displayName
        self.passwordHash = passwordHash
        self.failedSignIns = failedSignIns
        self.lockedUntil = lockedUntil
        self.createdAt = createdAt
    }
}

/// A meeting as the meeting center shows it: who owns it, when it is, who is invited, and
/// the guests' password (hashed).
/// A signed-in browser, as its owner may see it: named by the hash of its cookie (never the
/// cookie), with when it ends.
public struct WebSession: Equatable, Sendable {
    public var tokenHash: String
    public var expiresAt: Millis

    public init(tokenHash: String, expiresAt: Millis) {
        self.tokenHash = tokenHash
        self.expiresAt = expiresAt
    }
}

public struct MeetingListing: Equatable, Sendable {
    public var meeting: MeetingID
    public var owner: String
    public var scheduledAt: Millis?
    /// Usernames of invited accounts.
    public var attendees: [String]
    public var passwordHash: String?
    public var startedAt: Millis?
    public var createdAt: Millis

    public init(meeting: MeetingID, owner: String, scheduledAt: Millis?, attendees: [String], passwordHash: String?,
                startedAt: Millis?, createdAt: Millis) {
        self.meeting = meeting
        self.owner = owner
        self.scheduledAt = scheduledAt
        self.attendees = attendees
        self.passwordHash = passwordHash
        self.startedAt = startedAt
        self.createdAt = createdAt
    }
}

/// An account's sign-in state, as stored: failed attempts in a row, and a lock.
public struct SignInState: Equatable, Sendable {
    public var failures: Int
    public var lockedUntil: Millis?

    public init(failures: Int = 0, lockedUntil: Millis? = nil) {
        self.failures = failures
        self.lockedUntil = lockedUntil
    }
}

/// Accounts, sign-in sessions and meeting listings of the web zone, in the same database
/// as the meetings.
public protocol AccountStore: Sendable {
    /// False if the username is taken.
    func createAccount(_ account: Account) async throws(StoreError) -> Bool
    func account(username: String) async throws(StoreError) -> Account?
    func account(id: String) async throws(StoreError) -> Account?
    /// Applies `change` to the account's sign-in state in one atomic step: no other change
    /// to it comes between the read and the write, so sign-in attempts made at once all
    /// count. Returns what `change` returned; nil without such an account. The rule itself
    /// is the web's (`SignInLockout`); the store only makes it atomic.
    func changeSignInState<T: Sendable>(account: String, _ change: @escaping @Sendable (inout SignInState) -> T)
        async throws(StoreError) -> T?

    /// Sessions are stored by a hash of their cookie, so a copy of the database signs nobody in.
    func createSession(tokenHash: String, account: String, expiresAt: Millis) async throws(StoreError)
    /// The session's account, if the session exists and has not expired at `now`.
    func sessionAccount(tokenHash: String, now: Millis) async throws(StoreError) -> Account?
    func deleteSession(tokenHash: String) async throws(StoreError)
    /// The account's live sessions at `now`, the longest-lived first.
    func sessions(of account: String, now: Millis) async throws(StoreError) -> [WebSession]
    /// Ends the account's session with this hash (and nobody else's). Returns whether it was there.
    func deleteSession(tokenHash: String, of account: String) async throws(StoreError) -> Bool
    /// Ends every session of the account but `keeping`. Returns how many ended.
    func deleteSessions(of account: String, keeping: String) async throws(StoreError) -> Int

    func createListing(_ listing: MeetingListing) async throws(StoreError)
    func listing(_ meeting: MeetingID) async throws(StoreError) -> MeetingListing?
    /// Meetings the account owns or is invited to, soonest first.
    func listings(for account: Account) async throws(StoreError) -> [MeetingListing]
    func markStarted(_ meeting: MeetingID, at: Millis) async throws(StoreError)
}

extension SQLiteStore: AccountStore {
    public func createAccount(_ account: Account) async throws(StoreError) -> Bool {
        try await write { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM accounts WHERE username = ?", arguments: [account.username]) == nil
            else { return false }
            try db.execute(
                sql: """
                    INSERT INTO accounts (id, username, display_name, password_hash, failed_sign_ins, locked_until, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [account.id, account.username, account.displayName, account.passwordHash, account.failedSignIns,
                            account.lockedUntil, account.createdAt])
            return true
        }
    }

    public func account(username: String) async throws(StoreError) -> Account? {
        try await read { db in try Row.fetchOne(db, sql: "SELECT * FROM accounts WHERE username = ?", arguments: [username]).map(Self.account) }
    }

    public func account(id: String) async throws(StoreError) -> Account? {
        try await read { db in try Row.fetchOne(db, sql: "SELECT * FROM accounts WHERE id = ?", arguments: [id]).map(Self.account) }
    }

    public func changeSignInState<T: Sendable>(account: String, _ change: @escaping @Sendable (inout SignInState) -> T)
        async throws(StoreError) -> T?
    {
        // One write transaction: no other writer comes between the read and the write.
        try await write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT failed_sign_ins, locked_until FROM accounts WHERE id = ?", arguments: [account])
            else { return nil }
            var state = SignInState(failures: row["failed_sign_ins"], lockedUntil: row["locked_until"])
            let result = change(&state)
            try db.execute(sql: "UPDATE accounts SET failed_sign_ins = ?, locked_until = ? WHERE id = ?",
                           arguments: [state.failures, state.lockedUntil, account])
            return result
        }
    }

    public func createSession(tokenHash: String, account: String, expiresAt: Millis) async throws(StoreError) {
        try await write { db in
            // Expired sessions go whenever a new one is made, so the table stays small.
            try db.execute(sql: "DELETE FROM web_sessions WHERE expires_at < \(Self.nowMs)")
            try db.execute(sql: "INSERT INTO web_sessions (token_hash, account, expires_at) VALUES (?, ?, ?)",
                           arguments: [tokenHash, account, expiresAt])
        }
    }

    public func sessionAccount(tokenHash: String, now: Millis) async throws(StoreError) -> Account? {
        try await read { db in
            try Row.fetchOne(db, sql: """
                SELECT accounts.* FROM web_sessions JOIN accounts ON accounts.id = web_sessions.account
                WHERE web_sessions.token_hash = ? AND web_sessions.expires_at > ?
                """, arguments: [tokenHash, now]).map(Self.account)
        }
    }

    public func deleteSession(tokenHash: String) async throws(StoreError) {
        try await write { db in try db.execute(sql: "DELETE FROM web_sessions WHERE token_hash = ?", arguments: [tokenHash]) }
    }

    public func sessions(of account: String, now: Millis) async throws(StoreError) -> [WebSession] {
        try await read { db in
            try Row.fetchAll(db, sql: """
                SELECT token_hash, expires_at FROM web_sessions WHERE account = ? AND expires_at > ?
                ORDER BY expires_at DESC, token_hash
                """, arguments: [account, now]).map { WebSession(tokenHash: $0[0], expiresAt: $0[1]) }
        }
    }

    public func deleteSession(tokenHash: String, of account: String) async throws(StoreError) -> Bool {
        try await write { db in
            try db.execute(sql: "DELETE FROM web_sessions WHERE token_hash = ? AND account = ?", arguments: [tokenHash, account])
            return db.changesCount > 0
        }
    }

    public func deleteSessions(of account: String, keeping: String) async throws(StoreError) -> Int {
        try await write { db in
            try db.execute(sql: "DELETE FROM web_sessions WHERE account = ? AND token_hash <> ?", arguments: [account, keeping])
            return db.changesCount
        }
    }

    public func createListing(_ listing: MeetingListing) async throws(StoreError) {
        let attendees = String(decoding: try StoredForm.encode(listing.attendees), as: UTF8.self)
        try await write { db in
            try db.execute(
                sql: """
                    INSERT INTO meeting_listings (meeting, owner, scheduled_at, attendees, password_hash, started_at, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [listing.meeting.rawValue, listing.owner, listing.scheduledAt, attendees, listing.passwordHash,
                            listing.startedAt, listing.createdAt])
        }
    }

    public func listing(_ meeting: MeetingID) async throws(StoreError) -> MeetingListing? {
        try await read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM meeting_listings WHERE meeting = ?", arguments: [meeting.rawValue]).map(Self.listing)
        }
    }

    public func listings(for account: Account) async throws(StoreError) -> [MeetingListing] {
        try await read { db in
            // Invitations are by username inside a JSON array; json_each keeps the match exact.
            try Row.fetchAll(db, sql: """
                SELECT * FROM meeting_listings WHERE owner = ?
                   OR EXISTS (SELECT 1 FROM json_each(meeting_listings.attendees) WHERE json_each.value = ?)
                ORDER BY COALESCE(scheduled_at, started_at, created_at), meeting
                """, arguments: [account.id, account.username]).map(Self.listing)
        }
    }

    public func markStarted(_ meeting: MeetingID, at: Millis) async throws(StoreError) {
        try await write { db in
            try db.execute(sql: "UPDATE meeting_listings SET started_at = COALESCE(started_at, ?) WHERE meeting = ?",
                           arguments: [at, meeting.rawValue])
        }
    }

    static func account(_ row: Row) -> Account {
        Account(id: row["id"], username: row["username"], displayName: row["display_name"], passwordHash: row["password_hash"],
                failedSignIns: row["failed_sign_ins"], lockedUntil: row["locked_until"], createdAt: row["created_at"])
    }

    static func listing(_ row: Row) throws -> MeetingListing {
        let json: String = row["attendees"]
        let attendees = (try? JSONDecoder().decode([String].self, from: Data(json.utf8))) ?? []
        return MeetingListing(meeting: MeetingID(row["meeting"]), owner: row["owner"], scheduledAt: row["scheduled_at"],
                              attendees: attendees, passwordHash: row["password_hash"], startedAt: row["started_at"],
                              createdAt: row["created_at"])
    }
}
