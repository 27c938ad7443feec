import ParleyZone
import Testing

private let m1: NodeName = "manager-1"
private let m2: NodeName = "manager-2"
private let timing = ManagerElection.Timing(leaseMs: 1_000, pollMs: 200, safetyMs: 200)

private func lease(_ holder: NodeName, term: UInt64, until: Int64) -> ManagerLease {
    ManagerLease(holder: holder, address: "http://\(holder)", term: term, expiresAtMs: until)
}

@Suite("Manager election through a lease in the store")
struct ManagerElectionTests {
    @Test("with no lease stored, a manager claims term 1 and leads once the store confirms")
    func firstClaim() {
        var election = ManagerElection(me: m1, address: "http://manager-1", timing: timing)
        #expect(election.tick(nowMs: 0) == [.read])
        #expect(election.observed(nil, nowMs: 5) == [.claim(expected: nil, new: lease(m1, term: 1, until: 1_005))])
        #expect(election.claimed(lease(m1, term: 1, until: 1_005), nowMs: 10) == [.lead(term: 1)])
        #expect(election.role == .leader(term: 1, validUntilMs: 805))
    }

    @Test("the leader renews every poll under the same term, compare-and-set on what it last wrote")
    func renew() {
        var election = ManagerElection(me: m1, address: "http://manager-1", timing: timing)
        _ = election.tick(nowMs: 0)
        _ = election.observed(nil, nowMs: 0)
        _ = election.claimed(lease(m1, term: 1, until: 1_000), nowMs: 1)
        #expect(election.tick(nowMs: 100) == [], "not due yet")
        #expect(election.tick(nowMs: 200) == [.claim(expected: lease(m1, term: 1, until: 1_000), new: lease(m1, term: 1, until: 1_200))])
        #expect(election.claimed(lease(m1, term: 1, until: 1_200), nowMs: 210) == [])
        #expect(election.role == .leader(term: 1, validUntilMs: 1_000))
    }

    @Test("a standby does nothing while the lease is live, and takes it under the next term once it lapses")
    func takeOver() {
        var election = ManagerElection(me: m2, address: "http://manager-2", timing: timing)
        _ = election.tick(nowMs: 0)
        #expect(election.observed(lease(m1, term: 4, until: 1_000), nowMs: 0) == [])
        #expect(election.tick(nowMs: 200) == [.read])
        #expect(election.observed(lease(m1, term: 4, until: 1_000), nowMs: 1_000) == [], "valid through its last millisecond")
        _ = election.tick(nowMs: 1_200)
        #expect(election.observed(lease(m1, term: 4, until: 1_000), nowMs: 1_201) == [
            .claim(expected: lease(m1, term: 4, until: 1_000), new: lease(m2, term: 5, until: 2_201)),
        ])
        #expect(election.claimed(lease(m2, term: 5, until: 2_201), nowMs: 1_210) == [.lead(term: 5)])
    }

    @Test("losing the race for a lapsed lease leaves the manager a standby, and it reads again at once")
    func lostRace() {
        var election = ManagerElection(me: m2, address: "http://manager-2", timing: timing)
        _ = election.tick(nowMs: 0)
        _ = election.observed(nil, nowMs: 0)
        #expect(election.claimed(nil, nowMs: 5) == [])
        #expect(!election.isLeader)
        #expect(election.tick(nowMs: 6) == [.read])
    }

    @Test("a leader that cannot renew steps down before its lease lapses, so no standby can lead at the same time")
    func stepDownInTime() {
        var election = ManagerElection(me: m1, address: "http://manager-1", timing: timing)
        _ = election.tick(nowMs: 0)
        _ = election.observed(nil, nowMs: 0)
        _ = election.claimed(lease(m1, term: 1, until: 1_000), nowMs: 1)
        #expect(election.tick(nowMs: 200).count == 1)  // a renewal that never comes back (the store hangs)
        #expect(election.tick(nowMs: 799) == [])
        #expect(election.tick(nowMs: 800) == [.stepDown(reason: .renewalOverdue)])
        #expect(!election.isLeader)
    }

    @Test("a leader that finds another holder or term in the store steps down; a late renewal does not make it lead")
    func deposed() {
        var election = ManagerElection(me: m1, address: "http://manager-1", timing: timing)
        _ = election.tick(nowMs: 0)
        _ = election.observed(nil, nowMs: 0)
        _ = election.claimed(lease(m1, term: 1, until: 1_000), nowMs: 1)
        _ = election.tick(nowMs: 200)
        #expect(election.claimed(nil, nowMs: 250) == [.stepDown(reason: .renewalRefused)])
        #expect(election.tick(nowMs: 251) == [.read])
        #expect(election.observed(lease(m2, term: 2, until: 1_300), nowMs: 260) == [])
        // A renewal answered after its trust window has passed does not count either.
        var slow = ManagerElection(me: m1, address: "http://manager-1", timing: timing)
        _ = slow.tick(nowMs: 0)
        _ = slow.observed(nil, nowMs: 0)
        #expect(slow.claimed(lease(m1, term: 1, until: 1_000), nowMs: 900) == [])
        #expect(!slow.isLeader)
    }

    @Test("a manager restarted while its own lease is still live takes it again under a new term")
    func restartedLeader() {
        var election = ManagerElection(me: m1, address: "http://manager-1", timing: timing)
        _ = election.tick(nowMs: 5_000)
        #expect(election.observed(lease(m1, term: 3, until: 5_500), nowMs: 5_000) == [
            .claim(expected: lease(m1, term: 3, until: 5_500), new: lease(m1, term: 4, until: 6_000)),
        ])
    }
}
