import Logging

/// Everything a zone keeps: meetings, and the web zone's accounts in the same database.
public typealias ZoneStore = Store & AccountStore

extension StoreLocation {
    /// The store URL in effect: an explicit one (`--store`, `store.url`), else
    /// `PARLEY_STORE_URL` from `environment`, else SQLite in the data directory.
    /// - Throws: ``StoreError/misconfigured(_:)`` for a URL that does not parse.
    public static func resolve(explicit: String?, environment: [String: String]) throws(StoreError) -> StoreLocation {
        if let explicit, !explicit.isEmpty { return try StoreLocation(url: explicit) }
        if let url = environment[environmentKey], !url.isEmpty { return try StoreLocation(url: url) }
        return .sqlite(directory: nil)
    }

    /// Opens the store, keeps what it runs (PostgreSQL's connection pools) going while `body`
    /// uses it, and stops them after.
    /// - Parameters:
    ///   - dataDirectory: where `sqlite:` keeps its file.
    ///   - synchronous: SQLite's durability; PostgreSQL always commits durably.
    /// - Throws: ``StoreError/unavailable(_:)`` or ``StoreError/misconfigured(_:)`` when the store
    ///   cannot be opened (never falls back to another store), or what `body` throws.
    public func withStore<T: Sendable>(dataDirectory: String, synchronous: Synchronous = .full, logger: Logger,
                                       _ body: @Sendable (any ZoneStore) async throws -> T) async throws -> T {
        switch self {
        case .sqlite(let directory):
            return try await body(try SQLiteStore(directory: directory ?? dataDirectory, synchronous: synchronous, logger: logger))
        case .postgres(let url):
            let store = try await PostgresStore.open(url, logger: logger)
            return try await withThrowingTaskGroup(of: T?.self) { group in
                group.addTask {
                    await store.run()
                    return nil
                }
                defer { group.cancelAll() }
                return try await body(store)
            }
        }
    }
}
