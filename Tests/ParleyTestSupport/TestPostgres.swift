import Foundation
import ParleySupervisor

/// Test support shared by the test targets.
///
/// One throwaway PostgreSQL server for this test process, started on first use; each test
/// gets a database of its own. The server stops by itself when the test process is gone.
public actor TestPostgres {
    public static let shared = TestPostgres()

    private var started: Task<LocalPostgres, any Error>?
    private var databases = 0

    public func server() async throws -> LocalPostgres {
        if started == nil {
            started = Task {
                let directory = FileManager.default.temporaryDirectory.path + "/parley-pg-" + UUID().uuidString.prefix(8)
                let server = try await LocalPostgres.start(in: directory, port: try freeLoopbackPort())
                try server.stopWhenGone(pid: getpid())
                return server
            }
        }
        return try await started!.value
    }

    /// The URL of a new, empty database.
    public func freshDatabase() async throws -> String {
        let server = try await server()
        databases += 1
        let name = "test_\(getpid())_\(databases)"
        try await server.createDatabase(name)
        return server.url(database: name)
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
public func freeLoopbackPort() throws -> Int { try LocalPostgres.freePort() }

/// Chromium aborts page loads when the machine's network interfaces change
/// (`net::ERR_NETWORK_CHANGED`), and the cluster tests make and remove interfaces (network
/// namespaces, a bridge). Tests of either kind hold this while they run, so they never
/// overlap; all the test targets run in one process.
public actor NetworkChanges {
    public static let lock = NetworkChanges()

    private var held = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    /// Runs `body` with no other holder running.
    public func exclusively<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        if held {
            await withCheckedContinuation { waiting.append($0) }
        }
        held = true
        defer {
            if waiting.isEmpty { held = false } else { waiting.removeFirst().resume() }
        }
        return try await body()
    }
}
