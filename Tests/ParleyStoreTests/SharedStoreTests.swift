import ParleyCore
@testable import ParleyStore
import Testing
import ParleyTestSupport

/// Several processes of a zone, on one machine or several, open the same database; two
/// store instances on it stand in for them here.
@Suite("Store shared by several processes: epoch fencing and leases", MachineLoad.server)
struct SharedStoreTests {
    @Test("claiming the next epoch fences the previous host, even one using its own connection", arguments: StoreKind.allCases)
    func claimFencesTheOldHost(_ kind: StoreKind) async throws {
        try await withStore(kind) { oldHost, another in
            let newHost = try await another()
            try await oldHost.createMeeting(standup)
            var live = LiveMeeting(standup, epoch: Epoch(1))
            try await oldHost.advanceEpoch(standup.id, to: Epoch(1))
            try await oldHost.append([standup.id: live.play(3)])

            #expect(try await newHost.claimNextEpoch(standup.id) == Epoch(2))
            // The old host wakes up and tries to commit under epoch 1: refused, nothing written.
            let late = live.play(1)
            await #expect(throws: StoreError.fenced(standup.id, epoch: Epoch(1), current: Epoch(2))) {
                try await oldHost.append([standup.id: late])
            }
            let recovered = try await newHost.recover(standup.id, historyLimit: 100)
            #expect(recovered.entries.map(\.seq) == [1, 2, 3])
            #expect(recovered.epoch == Epoch(2))
            #expect(try await oldHost.claimNextEpoch(standup.id) == Epoch(3), "epochs only grow")
            await #expect(throws: StoreError.unknownMeeting("nope")) { try await newHost.claimNextEpoch("nope") }
        }
    }

    @Test("racing appends and epoch claims from two connections: every append either lands before the claim or is fenced",
          arguments: StoreKind.allCases)
    func appendsRaceAClaim(_ kind: StoreKind) async throws {
        try await withStore(kind) { oldHost, another in
            let newHost = try await another()
            try await oldHost.createMeeting(standup)
            try await oldHost.advanceEpoch(standup.id, to: Epoch(1))
            var live = LiveMeeting(standup, epoch: Epoch(1))
            let batches = (0..<20).map { _ in live.play(2) }
            async let appended: Int = {
                var landed = 0
                for batch in batches {
                    do {
                        try await oldHost.append([standup.id: batch])
                        landed += 1
                    } catch {
                        // (A typed `catch .fenced` here crashes Swift 6.3.1's SILGen: swiftlang/swift#89787.)
                        guard case StoreError.fenced = error else { throw error }
                        break
                    }
                }
                return landed
            }()
            async let claimed = newHost.claimNextEpoch(standup.id)
            let (landed, epoch) = try await (appended, claimed)
            #expect(epoch == Epoch(2))
            let recovered = try await newHost.recover(standup.id, historyLimit: 0)
            #expect(recovered.entries == Array(batches.prefix(landed).joined()), "exactly the appends that returned are stored")
            await #expect(throws: StoreError.fenced(standup.id, epoch: Epoch(1), current: Epoch(2))) {
                try await oldHost.append([standup.id: live.play(1)])
            }
        }
    }

    @Test("a lease is compare-and-set: of two claimers racing from separate connections exactly one wins",
          arguments: StoreKind.allCases)
    func leaseRace(_ kind: StoreKind) async throws {
        try await withStore(kind) { first, another in
            let second = try await another()
            #expect(try await first.lease("manager") == nil)
            let a = LeaseClaim(holder: "manager-1", address: "http://a", term: 1, durationMs: 60_000)
            let b = LeaseClaim(holder: "manager-2", address: "http://b", term: 1, durationMs: 60_000)
            async let wonA = first.replaceLease("manager", expected: nil, with: a)
            async let wonB = second.replaceLease("manager", expected: nil, with: b)
            let results = try await [wonA, wonB]
            #expect(results.filter { $0 }.count == 1)
            let winner = results[0] ? a : b, loser = results[0] ? b : a
            let stored = try #require(try await second.lease("manager"))
            #expect(stored.version == LeaseVersion(holder: winner.holder, term: 1))
            #expect(stored.address == winner.address)
            #expect(stored.isLive && stored.remainingMs <= 60_000 && stored.remainingMs > 50_000,
                    "timed on the store's clock: \(stored.remainingMs) ms left")

            // A stale expectation is refused; the holder renews under its version.
            let renewal = LeaseClaim(holder: winner.holder, address: winner.address, term: 1, durationMs: 90_000)
            #expect(try await first.replaceLease("manager", expected: LeaseVersion(holder: loser.holder, term: 1), with: renewal) == false)
            #expect(try await first.replaceLease("manager", expected: stored.version, with: renewal))
            #expect(try await second.lease("manager")?.remainingMs ?? 0 > 60_000)
            #expect(try await second.lease("other") == nil, "leases are named")
        }
    }

    @Test("another manager takes a lease only once it has lapsed on the store's clock", arguments: StoreKind.allCases)
    func takeOverOnlyAfterLapse(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, another in
            let other = try await another()
            let holder = LeaseClaim(holder: "manager-1", address: "http://a", term: 4, durationMs: 60_000)
            #expect(try await store.replaceLease("manager", expected: nil, with: holder))
            let version = LeaseVersion(holder: "manager-1", term: 4)
            let takeover = LeaseClaim(holder: "manager-2", address: "http://b", term: 5, durationMs: 60_000)
            // Whatever the claimer's own clock says, the store's says the lease still runs.
            #expect(try await other.replaceLease("manager", expected: version, with: takeover) == false)
            #expect(try await other.lease("manager")?.holder == "manager-1")

            // The holder writes a lease that has already run out (a negative duration), as if
            // its last renewal had been a minute ago: now it is free.
            let lapsed = LeaseClaim(holder: "manager-1", address: "http://a", term: 4, durationMs: -1_000)
            #expect(try await store.replaceLease("manager", expected: version, with: lapsed))
            let seen = try #require(try await other.lease("manager"))
            #expect(!seen.isLive && seen.remainingMs <= -1_000)
            #expect(try await other.replaceLease("manager", expected: version, with: takeover))
            let now = try #require(try await store.lease("manager"))
            #expect(now.version == LeaseVersion(holder: "manager-2", term: 5) && now.isLive)
            // The old holder's renewal under its old version is refused.
            #expect(try await store.replaceLease("manager", expected: version, with: holder) == false)
        }
    }
}
