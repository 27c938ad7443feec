import Foundation
import ParleyCore
import ParleyProtocol
import ParleyServer
import ParleyStore
import ParleyTestSupport
import Testing

/// A real server on an `InMemoryStore` whose faults the test sets while it runs: what the
/// clients are told, and what is acknowledged, when the store is slow, cannot write, or
/// fences the host.
@Suite("A server on an in-memory store with injected faults", MachineLoad.server, .timeLimit(.minutes(1)))
struct InMemoryStoreServerTests {
    @Test("ops are acknowledged once stored, and a client joining later is welcomed with them")
    func opsAreAcknowledgedAndWelcomed() async throws {
        let store = InMemoryStore(now: Self.wallClockMs)
        try await withServer(store: store) { endpoint in
            let meeting = try await endpoint.createMeeting()
            let hostFrames = try await withRawSocket(endpoint) { host -> [ServerFrame] in
                _ = try await host.join(token: meeting.hostToken)
                for (index, text) in ["one", "two", "three"].enumerated() {
                    try await host.send(.op(id: OpID("c\(index)"), operation: .chat(text: text)))
                }
                return try await host.receive { if case .ack(let id, _, _) = $0 { id == "c2" } else { false } }
            }
            #expect(hostFrames.filter(\.isAck) == [
                .ack(id: "c0", epoch: Epoch(1), seq: 2), .ack(id: "c1", epoch: Epoch(1), seq: 3), .ack(id: "c2", epoch: Epoch(1), seq: 4),
            ])
            let stored = try await store.recover(MeetingID(meeting.meeting.id), historyLimit: 0).entries
            #expect(stored.compactMap(\.chatLine) == ["2 one", "3 two", "4 three"])

            let bob = try await endpoint.issueToken(meeting: meeting.meeting.id, name: "Bob")
            let welcome = try await withRawSocket(endpoint) { try await $0.join(token: bob.token) }
            #expect(welcome.mode == .snapshot)
            #expect(welcome.epoch == Epoch(1))
            #expect(welcome.state?.chat.map { "\($0.seq) \($0.text)" } == ["2 one", "3 two", "4 three"])
        }
    }

    @Test("a store that cannot write: every client's connection is closed with a fatal internal_error, the op is not acknowledged, and a later client finds only what was stored")
    func failingAppendClosesConnections() async throws {
        let outcome = try await Self.commit(under: StoreFaults(failAppends: true))
        #expect(outcome.sender == ["event 2", "event 3", "ack before at 3", "fatal internal_error"])
        #expect(outcome.bystander == ["event 1", "event 2", "event 3", "fatal internal_error"])
        #expect(outcome.stored == ["3 before"])
        #expect(outcome.newcomer.state?.chat.map { "\($0.seq) \($0.text)" } == ["3 before"])
        // Loaded again from the store, under the next epoch.
        #expect(outcome.newcomer.epoch == Epoch(2))
    }

    @Test("a store that fences the host even under its current epoch: every client is told moved, fatally, and the op is not acknowledged")
    func forcedFenceMovesClients() async throws {
        let outcome = try await Self.commit(under: StoreFaults(fenceAppends: true))
        #expect(outcome.sender == ["event 2", "event 3", "ack before at 3", "fatal moved"])
        #expect(outcome.bystander == ["event 1", "event 2", "event 3", "fatal moved"])
        #expect(outcome.stored == ["3 before"])
        #expect(outcome.newcomer.state?.chat.map { "\($0.seq) \($0.text)" } == ["3 before"])
        #expect(outcome.newcomer.epoch == Epoch(2))
    }

    @Test("faults change while the store runs: a call waits out the latency through the injected sleep, a failing append throws the store's I/O error, a forced fence throws fenced under the current epoch, and neither stores anything")
    func faultsAtTheStore() async throws {
        let sleeps = Sleeps()
        let store = InMemoryStore(now: { 0 }, sleep: { await sleeps.take($0) })
        let meeting: MeetingID = "m-faults"
        try await store.createMeeting(MeetingRecord(id: meeting, title: "Faults", settings: MeetingSettings(), createdAt: 0))
        let epoch = try await store.claimNextEpoch(meeting)
        let chat = { (seq: Seq) in
            [meeting: [LogEntry(seq: seq, epoch: epoch, at: 0, issuer: .participant("ada"), opID: OpID("a-\(seq)"),
                                operation: .chat(text: "chat \(seq)"))]]
        }
        try await store.append(chat(1))
        #expect(await sleeps.taken == [], "no latency, no sleep")

        await store.setFaults(StoreFaults(latency: .milliseconds(40), failAppends: true))
        await #expect(throws: StoreFaults.appendFailure) { try await store.append(chat(2)) }
        #expect(await sleeps.taken == [.milliseconds(40)])
        await store.setFaults(StoreFaults(fenceAppends: true))
        await #expect(throws: StoreError.fenced(meeting, epoch: epoch, current: epoch)) { try await store.append(chat(2)) }
        #expect(try await store.recover(meeting, historyLimit: 0).entries.map(\.seq) == [1])

        await store.setFaults(.none)
        try await store.append(chat(2))
        #expect(try await store.recover(meeting, historyLimit: 0).entries.map(\.seq) == [1, 2])
        #expect(await sleeps.taken == [.milliseconds(40)])
    }

    // MARK: - Helpers

    /// What the clients saw when a commit met the store's faults, each frame as its `gist`.
    struct FaultedCommit {
        /// Bob's frames after his welcome: he sent "before" (stored), then "refused".
        var sender: [String]
        /// Ada's, who only watched.
        var bystander: [String]
        /// The chat the store holds afterwards, as "seq text".
        var stored: [String]
        /// The welcome of a client joining once the faults are cleared.
        var newcomer: Welcome
    }

    /// Ada (the host) and Bob join; Bob's first chat is stored with no faults, his second
    /// meets `faults`.
    static func commit(under faults: StoreFaults) async throws -> FaultedCommit {
        let store = InMemoryStore(now: wallClockMs)
        return try await withServer(store: store) { endpoint in
            let meeting = try await endpoint.createMeeting()
            let bobToken = try await endpoint.issueToken(meeting: meeting.meeting.id, name: "Bob").token
            let (bystander, sender) = try await withRawSocket(endpoint) { ada -> ([ServerFrame], [ServerFrame]) in
                _ = try await ada.join(token: meeting.hostToken)
                let sender = try await withRawSocket(endpoint) { bob -> [ServerFrame] in
                    _ = try await bob.join(token: bobToken)
                    try await bob.send(.op(id: "before", operation: .chat(text: "before")))
                    var frames = try await bob.receive(until: \.isAck)
                    await store.setFaults(faults)
                    try await bob.send(.op(id: "refused", operation: .chat(text: "refused")))
                    frames += try await bob.untilClosed()
                    return frames
                }
                return (try await ada.untilClosed(), sender)
            }
            let stored = try await store.recover(MeetingID(meeting.meeting.id), historyLimit: 0).entries
            await store.setFaults(.none)
            let carol = try await endpoint.issueToken(meeting: meeting.meeting.id, name: "Carol")
            let newcomer = try await withRawSocket(endpoint) { try await $0.join(token: carol.token) }
            return FaultedCommit(sender: sender.map(\.gist), bystander: bystander.map(\.gist),
                                 stored: stored.compactMap(\.chatLine), newcomer: newcomer)
        }
    }

    /// The store's clock: the test passes the wall clock, as a database would use its own.
    static let wallClockMs: @Sendable () -> Int64 = { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }

    /// The sleeps a store asked for, in order; none is slept.
    actor Sleeps {
        private(set) var taken: [Duration] = []
        func take(_ duration: Duration) { taken.append(duration) }
    }
}

private extension RawSocket {
    /// Every frame until the server closes the socket.
    func untilClosed() async throws -> [ServerFrame] {
        var frames: [ServerFrame] = []
        while let frame = try await receive() { frames.append(frame) }
        return frames
    }
}

private extension ServerFrame {
    var isAck: Bool { if case .ack = self { true } else { false } }

    /// The frame in a few words, to compare what a client saw exactly: `event 3`,
    /// `ack before at 3`, `fatal internal_error` (an error that closes the connection).
    var gist: String {
        switch self {
        case .welcome(let welcome): "welcome at \(welcome.seq)"
        case .event: "event \(entry.map { "\($0.seq)" } ?? "hidden")"
        case .ack(let id, _, let seq): "ack \(id) at \(seq)"
        case .reject(let id, let rejection): "reject \(id): \(rejection)"
        case .signal(let from, _): "signal from \(from)"
        case .error(let error): "\(error.fatal ? "fatal" : "error") \(error.code.rawValue)"
        case .pong: "pong"
        }
    }
}

private extension LogEntry {
    /// "seq text" for a chat message, nil for anything else.
    var chatLine: String? { if case .chat(let text) = operation { "\(seq) \(text)" } else { nil } }
}
