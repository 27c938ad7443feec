import Foundation
import ParleyClient
import ParleyCore
import ParleyServer
import ParleyStore
import ParleyTestSupport
import Testing

/// A host whose store refuses a commit (a full disk, a database that fails over) must not
/// leave its clients waiting: it closes their connections, they reconnect at once and
/// resume from what the store holds, and what they sent is acknowledged once it can be stored.
@Suite("A commit the store refuses", MachineLoad.server, .timeLimit(.minutes(1)))
struct CommitFailureTests {
    @Test("the store refuses commits for a while: the clients are disconnected at once (not after their op answer timeout), resume, and every op is acknowledged once, in one history")
    func storeRefusesCommits() async throws {
        let url = try await TestPostgres.shared.freshDatabase()
        guard case .postgres(let parsed) = try StoreLocation(url: url) else { preconditionFailure() }
        let database = try #require(URL(string: url)?.path.dropFirst()).description
        let postgres = try await TestPostgres.shared.server()
        try await withServer({ $0.store = .postgres(parsed) }) { server in
            let base = URL(string: server.base)!
            let created = try await ParleyHTTP.createMeeting(server: base, title: "Refused commits")
            let bobToken = try await ParleyHTTP.issueToken(server: base, meeting: created.meeting.id, name: "Bob").token
            // So long that only the server closing the connection can bring a reconnect in time.
            let patience = Duration.seconds(45)
            var aliceOptions = EndToEndTests.options(.webSocket), bobOptions = EndToEndTests.options(.longPolling)
            aliceOptions.policy.opAnswerTimeout = patience
            bobOptions.policy.opAnswerTimeout = patience
            let alice = try MeetingClient(server: base, token: created.hostToken, options: aliceOptions)
            let bob = try MeetingClient(server: base, token: bobToken, options: bobOptions)
            try await alice.connect()
            try await bob.connect()
            let aliceSaw = Transcript(), bobSaw = Transcript()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await aliceSaw.record(alice.events) }
                group.addTask { await bobSaw.record(bob.events) }
                var acks: [Ack] = []
                for index in 0..<3 {
                    acks.append(try await alice.send(.chat(text: "alice-\(index)")))
                    acks.append(try await bob.send(.chat(text: "bob-\(index)")))
                }
                // From now on every write to the log fails, as on a full disk.
                try await postgres.psql("""
                    CREATE FUNCTION refuse_writes() RETURNS trigger LANGUAGE plpgsql AS $$
                        BEGIN RAISE EXCEPTION 'injected by the test: could not extend file (No space left on device)'; END $$;
                    CREATE TRIGGER refuse_writes BEFORE INSERT ON log FOR EACH STATEMENT EXECUTE FUNCTION refuse_writes();
                    """, database: database)
                let refusedAt = ContinuousClock.now
                let pending = Task { try await alice.send(.chat(text: "alice-refused")) }
                try await aliceSaw.waitForReconnects(1, timeout: patience / 3)
                try await bobSaw.waitForReconnects(1, timeout: patience / 3)
                let disconnectedAfter = ContinuousClock.now - refusedAt
                try await postgres.psql("DROP TRIGGER refuse_writes ON log", database: database)
                acks.append(try await pending.value)
                acks.append(try await bob.send(.chat(text: "bob-after")))
                try await aliceSaw.waitForChats(8, timeout: .seconds(20))
                try await bobSaw.waitForChats(8, timeout: .seconds(20))
                print("commit refused: both clients were disconnected \(disconnectedAfter) after the store began refusing")

                let aliceChats = await aliceSaw.chats, bobChats = await bobSaw.chats
                #expect(aliceChats == bobChats)
                #expect(aliceChats.map(\.text) == ["alice-0", "bob-0", "alice-1", "bob-1", "alice-2", "bob-2", "alice-refused", "bob-after"])
                #expect(zip(aliceChats, aliceChats.dropFirst()).allSatisfy { $0.seq < $1.seq })
                for ack in acks {
                    #expect(aliceChats.filter { $0.opID == ack.id }.map(\.seq) == [ack.seq], "op \(ack.id) acked at \(ack.seq)")
                }
                // The meeting was loaded again from the store, under a newer epoch.
                #expect(acks.last!.epoch > acks.first!.epoch)
                await alice.leave()
                await bob.leave()
                group.cancelAll()
            }
        }
    }
}
