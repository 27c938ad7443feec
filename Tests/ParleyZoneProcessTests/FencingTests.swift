import Foundation
import ParleyClient
import ParleyCore
import ParleyServer
import ParleyStore
import Synchronization
import Testing
import ParleyTestSupport

/// A host that was presumed dead but wakes up (a paused process after SIGCONT, a partition
/// that heals) must not commit anything once another server took its meeting over. Run
/// in one process for determinism: two hosting servers on one data directory, and a front
/// whose locator the test points at one or the other.
@Suite("Fencing: a stale host has its commits refused", MachineLoad.server, .timeLimit(.minutes(1)))
struct FencingTests {
    @Test("the stale host's commit is fenced; its client is moved, resumes on the new host, and its op lands once")
    func staleHostFenced() async throws {
        let directory = try HarnessDirectory()
        defer { directory.remove() }
        let data = directory.path
        let target = Mutex<String>("")
        let servers = InProcessServers()
        try await withThrowingTaskGroup(of: Void.self) { group in
            let front = try await servers.start(in: &group, data: data, mode: .zoneFront(
                ZoneHooks(services: { _ in [] }),
                locate: { _ in .at(target.withLock { $0 }) }))
            let (a, aDirectory) = try await servers.startHost(in: &group, data: data)
            let (b, bDirectory) = try await servers.startHost(in: &group, data: data)

            let created = try await ParleyHTTP.createMeeting(server: front, title: "Fencing")
            let meeting = created.meeting.id
            let first = try await aDirectory.open(meeting)
            target.withLock { $0 = a.absoluteString }

            var options = MeetingClient.Options(policy: ConnectionPolicy(transport: .webSocket))
            options.policy.backoffInitial = .milliseconds(20)
            let alice = try MeetingClient(server: front, token: created.hostToken, options: options)
            let saw = Watcher()
            group.addTask { await saw.record(alice.events) }
            try await alice.connect()
            let one = try await alice.send(.chat(text: "one"))
            let two = try await alice.send(.chat(text: "two"))
            #expect(one.epoch == first && two.epoch == first)

            // B takes over while A still believes it hosts the meeting (A is "paused").
            let second = try await bDirectory.promote(meeting)
            #expect(second > first)
            target.withLock { $0 = b.absoluteString }

            // Alice is still attached to A. A sequences her op, the store refuses the commit
            // (fenced), A sends her to the locator, and her retry lands on B, once.
            let three = try await alice.send(.chat(text: "three"))
            #expect(three.epoch == second)
            #expect(three.seq > two.seq)
            try await saw.waitForChats(3, timeout: .seconds(10))
            #expect(await saw.chats.map(\.text) == ["one", "two", "three"])
            #expect(await saw.lastResumedAt != nil, "alice resumed on the new host")
            #expect(await !aDirectory.held().contains { $0.meeting == meeting }, "A released the meeting")

            // The store agrees: "three" was committed once, under the new epoch.
            let store = try SQLiteStore(directory: data)
            let recovered = try await store.recover(meeting, historyLimit: 100)
            let chats = recovered.entries.filter { if case .chat = $0.operation { true } else { false } }
            #expect(chats.map(\.epoch) == [first, first, second])
            // That is A's refused commit leaving no trace: no chat under A's epoch but the two it
            // acknowledged. Between "two" and "three" the log may hold Alice's presence changes
            // only: on a busy machine her link to A can time out before B takes over, and A then
            // logs them under its epoch, rightly (seen in a fresh-clone run).
            let between = recovered.entries.filter { $0.seq > two.seq && $0.seq < three.seq }
            #expect(between.allSatisfy { $0.operation.kind == "presence" }, "\(between.map { "\($0.seq) \($0.epoch) \($0.operation.kind)" })")
            await alice.close()
            group.cancelAll()
        }
    }
}

/// ParleyServers run as tasks of the test, each on a free loopback port.
struct InProcessServers {
    func start(in group: inout ThrowingTaskGroup<Void, any Error>, data: String, mode: ServerMode) async throws -> URL {
        let (ports, sink) = AsyncStream<Int>.makeStream()
        let configuration = ServerConfiguration(host: "127.0.0.1", port: 0, dataDirectory: data, fsyncEveryCommit: false)
        try TokenKeys.ensure(dataDirectory: data)
        group.addTask {
            try await ParleyServer(configuration: configuration, mode: mode, logger: .init(label: "test")).run { sink.yield($0) }
        }
        for await port in ports { return URL(string: "http://127.0.0.1:\(port)")! }
        throw HarnessFailure("the server did not start")
    }

    func startHost(in group: inout ThrowingTaskGroup<Void, any Error>, data: String) async throws -> (URL, MeetingDirectory) {
        let (directories, sink) = AsyncStream<MeetingDirectory>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let url = try await start(in: &group, data: data, mode: .zoneHost(ZoneHooks(
            services: { handle in
                sink.yield(handle.directory!)
                return []
            })))
        for await directory in directories { return (url, directory) }
        throw HarnessFailure("the server has no directory")
    }
}
