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

/// PostgreSQL's own high availability, as the README describes it: a primary in
/// `root/primary` and a synchronous streaming replica in `root/replica`, a database `parley`,
/// returned once the replica is synchronous (until then every commit waits for it). Both
/// stop by themselves when the test process is gone.
public func synchronousPair(in root: String) async throws -> (primary: LocalPostgres, replica: LocalPostgres) {
    let primary = try await LocalPostgres.start(in: root + "/primary", port: try freeLoopbackPort(), durable: true)
    try primary.stopWhenGone(pid: getpid())
    try await primary.createDatabase("parley")
    let replica = try await LocalPostgres.replica(of: primary, in: root + "/replica", port: try freeLoopbackPort())
    try replica.stopWhenGone(pid: getpid())
    try await primary.psql("ALTER SYSTEM SET synchronous_standby_names = '*'")
    try await primary.psql("ALTER SYSTEM SET synchronous_commit = on")
    try await primary.psql("SELECT pg_reload_conf()")
    let deadline = ContinuousClock.now + .seconds(60)
    while try await primary.psql("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")
        .trimmingCharacters(in: .whitespacesAndNewlines) != "1" {
        guard ContinuousClock.now < deadline else { throw SynchronousPairError() }
        try await Task.sleep(for: .milliseconds(50))
    }
    return (primary, replica)
}

public struct SynchronousPairError: Error, CustomStringConvertible {
    public var description: String { "the replica did not become synchronous within 60 s" }
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
