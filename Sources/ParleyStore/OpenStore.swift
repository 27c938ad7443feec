import Logging
import ParleyTelemetry

/// Everything a zone keeps: meetings, and the web zone's accounts in the same database.
public typealias ZoneStore = Store & AccountStore

extension StoreLocation {
    /// Checks that the store can be used, as a process starting on it will: opens it (a
    /// PostgreSQL store is connected to, its credentials and schema checked and migrated),
    /// and lets it go.
    public func check(dataDirectory: String, logger: Logger) async throws(StoreError) {
        _ = try await open(dataDirectory: dataDirectory, logger: logger)
    }

    /// Opens the store. A PostgreSQL store's pools must then run (``PostgresStore/run()``)
    /// for as long as it is used; ``withStore(dataDirectory:synchronous:logger:_:)`` does that.
    /// - Throws: ``StoreError/unavailable(_:)`` or ``StoreError/misconfigured(_:)``; never
    ///   falls back to another store.
    public func open(dataDirectory: String, synchronous: Synchronous = .full, logger: Logger,
                     metrics: ProcessMetrics = .off) async throws(StoreError) -> any ZoneStore {
        switch self {
        case .sqlite(let directory):
            try SQLiteStore(directory: directory ?? dataDirectory, synchronous: synchronous, logger: logger)
        case .postgres(let url):
            try await PostgresStore.open(url, logger: logger, metrics: metrics)
        }
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
