import ParleyCore
@testable import ParleyStore
import Testing
import ParleyTestSupport

/// The rest of the contract: op crashes, attendance, and the web zone's accounts, sessions
/// and listings, on every store.
@Suite("Store contract: crashes, attendance, accounts", MachineLoad.server)
struct StoreRecordsTests {
    @Test("crash counts grow per op and are listed per meeting", arguments: StoreKind.allCases)
    func crashes(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            var counts: [Int] = []
            counts.append(try await store.recordCrash("m1", participant: "bob", op: "b-1", at: 10))
            counts.append(try await store.recordCrash("m1", participant: "bob", op: "b-1", at: 20))
            counts.append(try await store.recordCrash("m1", participant: "ann", op: "a-9", at: 30))
            counts.append(try await store.recordCrash("m2", participant: "bob", op: "b-1", at: 40))
            #expect(counts == [1, 2, 1, 1])
            let m1 = try await store.crashes("m1"), m3 = try await store.crashes("m3")
            #expect(m1 == [OpCrashes(participant: "ann", op: "a-9", count: 1), OpCrashes(participant: "bob", op: "b-1", count: 2)])
            #expect(m3 == [])
        }
    }

    @Test("attendance comes back in the order written, per meeting or all", arguments: StoreKind.allCases)
    func attendance(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            let records: [Attendance] = (0..<7).map { (index: Int) -> Attendance in
                let meeting: MeetingID = index % 2 == 0 ? "m1" : "m2"
                let event: Attendance.Event = index % 3 == 0 ? .left : .joined
                return Attendance(meeting: meeting, participant: ParticipantID("p\(index)"), name: "P \(index)",
                                  event: event, server: "collab-\(index)", at: Millis(1_000 - index))
            }
            try await store.recordAttendance(Array(records.prefix(4)))
            try await store.recordAttendance([])
            try await store.recordAttendance(Array(records.dropFirst(4)))
            #expect(try await store.attendance(nil) == records)
            #expect(try await store.attendance("m1") == records.filter { $0.meeting == "m1" })
        }
    }

    @Test("a change of the sign-in state is one atomic step: eight increments at once see 1 to 8, each once; nil without the account",
          arguments: StoreKind.allCases)
    func signInStateChangesAtomically(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            #expect(try await store.createAccount(Account(id: "acc-eve", username: "eve", displayName: "Eve", passwordHash: "h", createdAt: 1)))
            #expect(try await store.changeSignInState(account: "nobody") { $0.failures += 1 } == nil)
            let seen = try await withThrowingTaskGroup(of: Int?.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        try await store.changeSignInState(account: "acc-eve") { state in
                            state.failures += 1
                            if state.failures == 5 { state.lockedUntil = 61_000 }
                            return state.failures
                        }
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1!) }
            }
            #expect(seen.sorted() == Array(1...8), "each change saw the one before it")
            #expect(try await store.account(id: "acc-eve")?.failedSignIns == 8)
            #expect(try await store.account(id: "acc-eve")?.lockedUntil == 61_000)
        }
    }

    @Test("an account's live sessions are listed; one revokes its own sessions only, one or all but the one it keeps",
          arguments: StoreKind.allCases)
    func sessionsListedAndRevoked(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            for name in ["ada", "bob"] {
                #expect(try await store.createAccount(Account(id: "acc-\(name)", username: name, displayName: name, passwordHash: "h", createdAt: 1)))
            }
            // Far in the future: a store's own clean-up of expired sessions must leave these.
            let later: Millis = 4_000_000_000_000
            try await store.createSession(tokenHash: "a1", account: "acc-ada", expiresAt: later + 1)
            try await store.createSession(tokenHash: "a2", account: "acc-ada", expiresAt: later + 2)
            try await store.createSession(tokenHash: "a3", account: "acc-ada", expiresAt: later + 3)
            try await store.createSession(tokenHash: "b1", account: "acc-bob", expiresAt: later + 1)
            #expect(try await store.sessions(of: "acc-ada", now: later) == [
                WebSession(tokenHash: "a3", expiresAt: later + 3), WebSession(tokenHash: "a2", expiresAt: later + 2),
                WebSession(tokenHash: "a1", expiresAt: later + 1),
            ])
            #expect(try await store.sessions(of: "acc-ada", now: later + 2).map(\.tokenHash) == ["a3"], "expired ones are not listed")
            #expect(try await !store.deleteSession(tokenHash: "b1", of: "acc-ada"), "not Ada's to end")
            #expect(try await store.sessionAccount(tokenHash: "b1", now: later)?.id == "acc-bob")
            #expect(try await store.deleteSession(tokenHash: "a1", of: "acc-ada"))
            #expect(try await store.deleteSessions(of: "acc-ada", keeping: "a3") == 1)
            #expect(try await store.sessions(of: "acc-ada", now: later).map(\.tokenHash) == ["a3"])
            #expect(try await store.sessions(of: "acc-bob", now: later).map(\.tokenHash) == ["b1"])
        }
    }

    @Test("accounts are unique by username; sessions expire; listings show what an account owns or is invited to",
          arguments: StoreKind.allCases)
    func accounts(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            let ada = Account(id: "acc-ada", username: "ada", displayName: "Ada L.", passwordHash: "$2b$hash", createdAt: 5)
            let bob = Account(id: "acc-bob", username: "bob", displayName: "Bob", passwordHash: "$2b$other", createdAt: 6)
            #expect(try await store.createAccount(ada))
            #expect(try await store.createAccount(bob))
            #expect(try await store.createAccount(Account(id: "acc-2", username: "ada", displayName: "Imposter",
                                                          passwordHash: "x", createdAt: 7)) == false)
            #expect(try await store.account(username: "ada") == ada)
            #expect(try await store.account(id: "acc-bob") == bob)
            #expect(try await store.account(id: "nobody") == nil)

            _ = try await store.changeSignInState(account: "acc-ada") { $0 = SignInState(failures: 3, lockedUntil: 9_000) }
            #expect(try await store.account(id: "acc-ada")?.lockedUntil == 9_000)
            #expect(try await store.account(id: "acc-ada")?.failedSignIns == 3)

            try await store.createSession(tokenHash: "h1", account: "acc-ada", expiresAt: 50_000)
            #expect(try await store.sessionAccount(tokenHash: "h1", now: 49_999)?.id == "acc-ada")
            #expect(try await store.sessionAccount(tokenHash: "h1", now: 50_000) == nil, "expired at its time")
            try await store.deleteSession(tokenHash: "h1")
            #expect(try await store.sessionAccount(tokenHash: "h1", now: 1) == nil)

            for id in ["m1", "m2", "m3"] { try await store.createMeeting(record(MeetingID(id))) }
            let owned = MeetingListing(meeting: "m1", owner: "acc-ada", scheduledAt: 300, attendees: [], passwordHash: nil,
                                       startedAt: nil, createdAt: 1)
            let invited = MeetingListing(meeting: "m2", owner: "acc-bob", scheduledAt: 200, attendees: ["ada", "cy"],
                                         passwordHash: "$2b$guest", startedAt: nil, createdAt: 2)
            let notInvited = MeetingListing(meeting: "m3", owner: "acc-bob", scheduledAt: 100, attendees: ["adam"],
                                            passwordHash: nil, startedAt: nil, createdAt: 3)
            for listing in [owned, invited, notInvited] { try await store.createListing(listing) }
            #expect(try await store.listings(for: ada) == [invited, owned], "soonest first; 'adam' is not 'ada'")
            #expect(try await store.listing("m2") == invited)
            try await store.markStarted("m1", at: 400)
            try await store.markStarted("m1", at: 500)
            #expect(try await store.listing("m1")?.startedAt == 400, "the first start stays")
        }
    }

    @Test("each machine's published processes replace its previous ones, with their age on the store's clock",
          arguments: StoreKind.allCases)
    func publishedProcesses(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await store.publishProcesses(machine: "m2", [PublishedProcess(machine: "m2", name: "collab-2", status: "{}"),
                                                            PublishedProcess(machine: "m2", name: "manager-2", status: "{\"a\":1}")])
            try await store.publishProcesses(machine: "m3", [PublishedProcess(machine: "m3", name: "collab-3", status: "{}")])
            try await store.publishProcesses(machine: "m2", [PublishedProcess(machine: "m2", name: "collab-2", status: "{\"b\":2}")])
            let published = try await store.publishedProcesses()
            #expect(published.map { "\($0.machine)/\($0.name) \($0.status)" } == ["m2/collab-2 {\"b\":2}", "m3/collab-3 {}"])
            #expect(published.allSatisfy { (0..<10_000).contains($0.ageMs) }, "\(published.map(\.ageMs))")
        }
    }
}
