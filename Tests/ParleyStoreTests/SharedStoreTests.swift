import ParleyCore
import ParleyStore
import Testing

/// Several processes of a zone open the same SQLite file; two store instances on one file
/// stand in for them here.
@Suite("Store shared by several processes: epoch fencing and leases")
struct SharedStoreTests {
    @Test("claiming the next epoch fences the previous host, even one using its own connection to the file")
    func claimFencesTheOldHost() async throws {
        try await withStore { oldHost, directory in
            let newHost = try SQLiteStore(directory: directory, synchronous: .normal)
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

    @Test("a lease is compare-and-set: of two claimers racing from separate connections exactly one wins")
    func leaseRace() async throws {
        try await withStore { first, directory in
            let second = try SQLiteStore(directory: directory, synchronous: .normal)
            #expect(try await first.lease("manager") == nil)
            let a = StoredLease(holder: "manager-1", address: "http://a", term: 1, expiresAtMs: 1_000)
            let b = StoredLease(holder: "manager-2", address: "http://b", term: 1, expiresAtMs: 1_000)
            async let wonA = first.replaceLease("manager", expected: nil, with: a)
            async let wonB = second.replaceLease("manager", expected: nil, with: b)
            let results = try await [wonA, wonB]
            #expect(results.filter { $0 }.count == 1)
            let stored = try #require(try await second.lease("manager"))
            #expect(stored == (results[0] ? a : b))
            // A stale expectation is refused; the current one succeeds.
            let renewal = StoredLease(holder: stored.holder, address: stored.address, term: 1, expiresAtMs: 2_000)
            #expect(try await first.replaceLease("manager", expected: results[0] ? b : a, with: renewal) == false)
            #expect(try await first.replaceLease("manager", expected: stored, with: renewal))
            #expect(try await second.lease("manager") == renewal)
            #expect(try await second.lease("other") == nil, "leases are named")
        }
    }
}
