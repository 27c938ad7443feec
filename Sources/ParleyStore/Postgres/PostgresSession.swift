import NIOCore
import PostgresNIO

/// One PostgreSQL connection as the store uses it: every statement ends, with an error, once
/// the connection is closed, whoever closed it.
///
/// PostgresNIO loses a statement written to a connection that has just closed (by the server,
/// or by the store's deadline): the write is dropped, and its caller would wait forever. A
/// store call cannot then return, and a meeting's host stops answering without failing. So
/// each statement is followed, on the connection's event loop, by a look at the connection:
/// the loop runs the statement's write first, and if the connection is closed by then, the
/// statement will never be answered and fails here. A statement the connection took in
/// while open is failed by PostgresNIO itself when the connection closes.
struct PostgresSession: Sendable {
    let connection: PostgresConnection

    /// Runs `query` and returns all its rows.
    @discardableResult
    func query(_ query: PostgresQuery) async throws -> [PostgresRow] {
        let answer = connection.eventLoop.makePromise(of: [PostgresRow].self)
        // The future-based query: its write is queued on the event loop before it returns.
        let result: EventLoopFuture<PostgresQueryResult> = connection.query(query, logger: PostgresStore.quiet)
        result.whenComplete { answer.completeWith($0.map { Array($0.rows) }) }
        let connection = connection
        connection.eventLoop.execute {
            // Completing a completed promise does nothing: an answer that came first stands.
            if connection.isClosed { answer.fail(PostgresConnectionClosed()) }
        }
        return try await answer.futureResult.get()
    }

    /// `body` in one transaction begun by `begin`: committed if it returns, rolled back if it
    /// throws (a closed connection's transaction ended with it).
    func transaction<T: Sendable>(begin: PostgresQuery = "BEGIN",
                                  _ body: (PostgresSession) async throws -> T) async throws -> T {
        try await query(begin)
        let value: T
        do {
            value = try await body(self)
        } catch {
            if !connection.isClosed { _ = try? await query("ROLLBACK") }
            throw error
        }
        try await query("COMMIT")
        return value
    }
}

/// A statement's connection closed before it was answered.
struct PostgresConnectionClosed: Error, CustomStringConvertible {
    var description: String { "the connection to PostgreSQL closed before the statement was answered" }
}
