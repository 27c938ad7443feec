import ParleyTestSupport
import Foundation
import Logging
import ParleyCore
@testable import ParleyStore
import ParleySupervisor
import Testing

/// PostgreSQL's own high availability, which Parley rides through: a primary with a
/// synchronous streaming replica; the primary is killed (SIGKILL) and the replica promoted
/// (`pg_ctl promote`). The store, given both hosts and `target_session_attrs=read-write`,
/// finds the new primary, and a host that recovers from it loses no acknowledged entry.
@Suite("PostgreSQL failover", MachineLoad.processes, .serialized)
struct PostgresFailoverTests {
    @Test("kill -9 of the primary, promotion of the synchronous replica: every acknowledged entry survives, in order")
    func primaryKilledReplicaPromoted() async throws {
        let root = FileManager.default.temporaryDirectory.path + "/parley-pg-ha-" + UUID().uuidString.prefix(8)
        let (primary, replica) = try await synchronousPair(in: root)
        let url = "postgres://postgres:\(primary.password)@\(primary.host):\(primary.port),\(replica.host):\(replica.port)/parley"
            + "?sslmode=disable&target_session_attrs=read-write&connect_timeout=5&statement_timeout=3"
        guard case .postgres(let parsed) = try StoreLocation(url: url) else { preconditionFailure() }

        let report = try await StoreLocation.postgres(parsed).withStore(dataDirectory: root, logger: Logger(label: "test")) { store in
            try await Self.writeThroughFailover(store) {
                kill(primary.pid ?? 0, SIGKILL)
                try await replica.promote()
            }
        }
        #expect(report.ackedAfterFailover >= 50)
        #expect(report.lost.isEmpty, "acknowledged entries missing after the failover: \(report.lost)")
        print("PostgreSQL failover: \(report.ackedBefore) entries acknowledged before the kill, \(report.ackedAfterFailover) after; "
              + "the first commit after the kill succeeded \(report.outage.formatted(.units(allowed: [.milliseconds]))) after it; "
              + "the kill and pg_ctl promote took \(report.promotion.formatted(.units(allowed: [.milliseconds])))")
        try? await replica.stop(mode: "immediate")
        try? FileManager.default.removeItem(atPath: root)
    }

    @Test("the database restarts under a running store: commits fail while it is down, none is acknowledged, and they succeed again once it is back")
    func databaseRestart() async throws {
        // Durable: an immediate stop is a crash, and this test relies on what was committed.
        try await Self.withOwnServer(durable: true) { server, store, _ in
            try await store.createMeeting(standup)
            var live = LiveMeeting(standup)
            let first = live.play(10)
            try await store.append([standup.id: first])

            try await server.stop(mode: "immediate")
            let lost = live.play(1)
            await #expect(throws: StoreError.self) { try await store.append([standup.id: lost]) }
            await #expect(throws: StoreError.self) { _ = try await store.meetings() }

            try await server.startServer()
            // The pool reconnects by itself; the caller only retries as a new host would.
            let clock = ContinuousClock()
            let back = clock.now
            var recovered: RecoveredMeeting?
            while recovered == nil, clock.now - back < .seconds(30) {
                recovered = try? await store.recover(standup.id, historyLimit: 0)
                if recovered == nil { try await Task.sleep(for: .milliseconds(100)) }
            }
            let entries = try #require(recovered).entries
            #expect(entries == first + (entries.count > first.count ? lost : []), "the unacknowledged entry is there or not, whole")
            var host = try rebuild(try #require(recovered), epoch: try await store.claimNextEpoch(standup.id))
            guard case .sequenced(let next) = host.submit(.chat(text: "after the restart"), by: .participant("bob"),
                                                          opID: "restart-1", at: 200_000)
            else { Issue.record("not sequenced"); return }
            try await store.append([standup.id: [next]])
            #expect(try await store.recover(standup.id, historyLimit: 0).entries.last == next)
        }
    }

    @Test("a COMMIT the database never answers (it waits for a synchronous standby that is not there) fails at the store's deadline; the call does not wait for it",
          .timeLimit(.minutes(1)))
    func commitNeverAnswered() async throws {
        // One connection, so that the check below sees the very session the appends use.
        try await Self.withOwnServer(durable: false, options: "&pool_size=1") { server, store, url in
            try await store.createMeeting(standup)
            var live = LiveMeeting(standup)
            try await store.append([standup.id: live.play(3)])
            // From now on every COMMIT that writes waits for a standby that never comes.
            try await server.psql("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
            try await server.psql("ALTER SYSTEM SET synchronous_commit = on")
            try await server.psql("SELECT pg_reload_conf()")
            // A reload reaches each session at its own pace: wait until the store's sees it.
            let reloaded = ContinuousClock.now + .seconds(20)
            while try await (store as? PostgresStore)?.rawInt(
                "SELECT (current_setting('synchronous_standby_names') = 'nobody')::int") != 1 {
                guard ContinuousClock.now < reloaded else { throw StoreError.io("the setting never reached the session") }
                try await Task.sleep(for: .milliseconds(20))
            }
            let clock = ContinuousClock()
            for attempt in 1...2 {
                let started = clock.now
                await #expect(throws: StoreError.self) { try await store.append([standup.id: live.play(1)]) }
                let took = clock.now - started
                #expect(took < .seconds(url.statementTimeoutSeconds) + .milliseconds(900),
                        "attempt \(attempt): the append returned \(took) after it began; the store's deadline is \(url.statementTimeoutSeconds) s")
            }
        }
    }

    /// A PostgreSQL server of the test's own (its settings are the test's to change) with a
    /// database `parley`, and a store on it with short deadlines (1 s to connect, 2 s a call).
    static func withOwnServer(durable: Bool, options: String = "",
                              _ body: @Sendable (LocalPostgres, any ZoneStore, PostgresURL) async throws -> Void) async throws {
        let root = FileManager.default.temporaryDirectory.path + "/parley-pg-own-" + UUID().uuidString.prefix(8)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let server = try await LocalPostgres.start(in: root + "/db", port: try freeLoopbackPort(), durable: durable)
        try server.stopWhenGone(pid: getpid())
        try await server.createDatabase("parley")
        guard case .postgres(let url) = try StoreLocation(url: server.url(database: "parley",
                                                                          options: "sslmode=disable&connect_timeout=1&statement_timeout=2" + options))
        else { preconditionFailure() }
        try await StoreLocation.postgres(url).withStore(dataDirectory: root, logger: Logger(label: "test")) { store in
            try await body(server, store, url)
        }
        try? await server.stop(mode: "immediate")
    }

    struct Report {
        var ackedBefore: Int
        var ackedAfterFailover: Int
        /// From the kill until commits succeed again.
        var outage: Duration
        /// From the kill until `pg_ctl promote` returned.
        var promotion: Duration
        var lost: [Seq]
    }

    /// One meeting's host committing chat entries one by one. `fail` is called after 200
    /// acknowledgements. When a commit fails, the host does what a real one does: it stops,
    /// and a new host claims the next epoch and recovers the meeting from the store (retrying
    /// until the store answers), then goes on. Ends 100 acknowledgements after the failover.
    static func writeThroughFailover(_ store: any ZoneStore, fail: @Sendable () async throws -> Void) async throws -> Report {
        let clock = ContinuousClock()
        try await store.createMeeting(standup)
        try await store.advanceEpoch(standup.id, to: Epoch(1))
        var live = LiveMeeting(standup, epoch: Epoch(1))
        var acked = live.play(5)
        try await store.append([standup.id: acked])
        var host = live.log
        var failedAt: ContinuousClock.Instant?
        var outage: Duration?
        var before = 0
        var promoted: Duration = .zero
        var step = 0
        let deadline = clock.now + .seconds(90)
        while clock.now < deadline {
            step += 1
            if step == 200 {
                before = acked.count
                failedAt = clock.now
                try await fail()
                promoted = clock.now - failedAt!
            }
            guard case .sequenced(let entry) = host.submit(.chat(text: "message \(step)"), by: .participant("bob"),
                                                           opID: OpID("failover-\(step)"), at: Millis(100_000 + step))
            else { Issue.record("chat \(step) was not sequenced"); break }
            do {
                try await store.append([standup.id: [entry]])
                _ = host.committed(through: entry.seq)
                acked.append(entry)
                if let failedAt, outage == nil { outage = clock.now - failedAt }
                if outage != nil, acked.count >= before + 100 { break }
            } catch {
                // Outcome unknown: this host stops. The next one takes over from what is stored.
                while clock.now < deadline {
                    do {
                        let epoch = try await store.claimNextEpoch(standup.id)
                        host = try rebuild(try await store.recover(standup.id, historyLimit: 0), epoch: epoch)
                        break
                    } catch {
                        try await Task.sleep(for: .milliseconds(50))
                    }
                }
            }
        }
        let stored = try await store.recover(standup.id, historyLimit: 0).entries
        let bySeq = Dictionary(stored.map { ($0.seq, $0) }, uniquingKeysWith: { first, _ in first })
        let lost = acked.filter { bySeq[$0.seq] != $0 }.map(\.seq)
        #expect(stored.map(\.seq) == Array(1...Seq(stored.count)), "the stored log is contiguous")
        return Report(ackedBefore: before, ackedAfterFailover: acked.count - before, outage: outage ?? .seconds(999),
                      promotion: promoted, lost: lost)
    }
}
