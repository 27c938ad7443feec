import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import ParleyClient
import ParleyCore
import ParleyZone
import Testing

#if canImport(Glibc)
import Glibc
import ParleyTestSupport
#endif

/// Edges with real processes: one meeting whose participants sit on three collaboration
/// servers (its host, its standby, and an edge), real SIGKILLs, and afterwards the exact
/// history every client saw.
@Suite("Edges: one meeting served from several servers, and failures behind them", MachineLoad.processes, .serialized, .timeLimit(.minutes(3)))
struct EdgeProcessTests {
    static let processes = """
        [{"name": "manager-1", "role": "manager"},
         {"name": "collab-1", "role": "collab"}, {"name": "collab-2", "role": "collab"}, {"name": "collab-3", "role": "collab"},
         {"name": "web", "role": "web"}, {"name": "services", "role": "services"}]
        """
    /// Edges on; the locator keeps sending participants to the host (the tests place them
    /// on other servers themselves, by connecting there).
    static let scaling = #"{"maxCollabServers": 3, "edges": true, "connectionsPerCopy": 1000}"#

    /// The meeting's host, standby and the third server, with the client URL of each.
    struct Servers {
        var host: ProcessStatus
        var standby: ProcessStatus
        var edge: ProcessStatus
    }

    /// A new meeting with Alice (its host participant) connected through the web front, on
    /// the server the locator chose; then which servers hold the meeting.
    struct Started {
        var web: URL
        var meeting: MeetingID
        var alice: MeetingClient
        var servers: Servers

        /// A token for another participant, from the web front.
        func token(_ name: String) async throws -> String {
            try await ParleyHTTP.issueToken(server: web, meeting: meeting, name: name).token
        }
    }

    static func start(_ title: String, in zone: ZoneHarness) async throws -> Started {
        let web = try await zone.publicURL()
        let created = try await ParleyHTTP.createMeeting(server: web, title: title)
        let alice = try MeetingClient(server: web, token: created.hostToken, options: Scenario.options(.webSocket))
        try await alice.connect()
        return Started(web: web, meeting: created.meeting.id, alice: alice, servers: try await servers(of: created.meeting.id, in: zone))
    }

    static func servers(of meeting: MeetingID, in zone: ZoneHarness) async throws -> Servers {
        let (host, standbyName) = try await zone.hostAndStandby(of: meeting)
        let status = try await zone.status()
        guard let standby = status[standbyName],
              let edge = status.values.first(where: { $0.role == .collab && $0.name != host.name && $0.name != standbyName })
        else { throw HarnessFailure("no third collab server in \(status.keys.sorted())") }
        return Servers(host: host, standby: standby, edge: edge)
    }

    @Test("participants on the host, the standby and an edge chat with one history; SIGKILL of the host: those on the standby and the edge keep their connections, and every acknowledged op is there exactly once")
    func hostKilledBehindEdges() async throws {
        try await ZoneHarness.run(processes: Self.processes, scaling: Self.scaling) { zone in
            let started = try await Self.start("Edges", in: zone)
            let (meeting, alice, servers) = (started.meeting, started.alice, started.servers)
            // Bob on the standby over WebSocket, Carol on the edge over long-polling.
            let bob = try MeetingClient(server: try servers.standby.clientURL(), token: try await started.token("Bob"),
                                        options: Scenario.options(.webSocket))
            let carol = try MeetingClient(server: try servers.edge.clientURL(), token: try await started.token("Carol"),
                                          options: Scenario.options(.longPolling))
            try await bob.connect()
            try await carol.connect()
            // Carol is served from a copy on the edge, Bob from the standby's copy.
            _ = try await zone.waitFor("both copies serving participants") { status in
                status[servers.edge.name]?.servesEdge(meeting) == true && status[servers.standby.name]?.servesEdge(meeting) == true ? true : nil
            }
            let host = try await zone.running(servers.host.name)
            let outcome: EdgeExchange.Outcome
            do {
                outcome = try await EdgeExchange.run([("alice", alice), ("bob", bob), ("carol", carol)]) {
                    try zone.signal(host.pid, SIGKILL)
                }
            } catch {
                for name in ["collab-1", "collab-2", "collab-3"] { print("=== \(name)\n\(zone.nodeLog(NodeName(name)).suffix(8000))") }
                throw error
            }
            #expect(outcome.epochs.last > outcome.epochs.first, "the meeting failed over: \(outcome.epochs)")
            #expect(outcome.reconnects["bob"] == 0, "Bob's server took the meeting over; his connection stayed")
            #expect(outcome.reconnects["carol"] == 0, "Carol's edge followed the new host; her connection stayed")
            #expect((outcome.reconnects["alice"] ?? 0) >= 1, "Alice was on the killed host")
            print("host \(servers.host.name) killed: alice reconnected \(outcome.reconnects["alice"] ?? 0) times, bob \(outcome.reconnects["bob"] ?? 0), carol \(outcome.reconnects["carol"] ?? 0)")
        }
    }

    @Test("SIGKILL of the edge a client is on: it moves to another edge and resumes from its last seq, with nothing lost or repeated")
    func clientMovesBetweenEdges() async throws {
        try await ZoneHarness.run(processes: Self.processes, scaling: Self.scaling) { zone in
            let started = try await Self.start("Moving", in: zone)
            let (alice, servers) = (started.alice, started.servers)
            // Carol knows two servers: the edge first, the standby after it.
            var options = Scenario.options(.webSocket)
            options.otherServers = [try servers.standby.clientURL()]
            options.probeFronts = false
            let carol = try MeetingClient(server: try servers.edge.clientURL(), token: try await started.token("Carol"), options: options)
            try await carol.connect()
            let edge = try await zone.running(servers.edge.name)
            let outcome = try await EdgeExchange.run([("alice", alice), ("carol", carol)]) {
                try zone.signal(edge.pid, SIGKILL)
            }
            #expect((outcome.reconnects["carol"] ?? 0) >= 1, "Carol's edge was killed")
            #expect(outcome.epochs.last == outcome.epochs.first, "the host was never touched")
            #expect(outcome.reconnects["alice"] == 0)
        }
    }
}

extension EdgeProcessTests {
    @Test("an edge copy no participant uses any more is dropped after scaling.edgeUnusedSeconds, and the manager forgets it; a participant who arrives there later gets a new copy with the whole history")
    func unusedEdgeIsDropped() async throws {
        let scaling = #"{"maxCollabServers": 3, "edges": true, "connectionsPerCopy": 1000, "edgeUnusedSeconds": 1}"#
        try await ZoneHarness.run(processes: Self.processes, scaling: scaling) { zone in
            let started = try await Self.start("Dropping", in: zone)
            let (meeting, alice, servers) = (started.meeting, started.alice, started.servers)
            let edgeURL = try servers.edge.clientURL()
            let carol = try MeetingClient(server: edgeURL, token: try await started.token("Carol"), options: Scenario.options(.webSocket))
            try await carol.connect()
            _ = try await carol.send(.chat(text: "carol-0"))
            _ = try await zone.waitFor("the edge keeps a copy for Carol") { $0[servers.edge.name]?.keepsCopy(meeting) == true ? true : nil }
            await carol.leave()
            _ = try await zone.waitFor("the unused copy dropped") { $0[servers.edge.name]?.keepsCopy(meeting) == false ? true : nil }
            _ = try await zone.waitForNodeLog("manager-1", "edge copy dropped, unused")
            #expect(try await zone.status()[servers.standby.name]?.keepsCopy(meeting) == true, "the standby is kept, unused or not")

            let dave = try MeetingClient(server: edgeURL, token: try await started.token("Dave"), options: Scenario.options(.webSocket))
            let aliceSaw = Watcher()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await aliceSaw.record(alice.events) }
                try await dave.connect()
                let ack = try await dave.send(.chat(text: "dave-0"))
                // Alice's events from the start: Carol's chat, then Dave's.
                try await aliceSaw.waitForChats(2, timeout: .seconds(15))
                #expect(await aliceSaw.chats.map(\.text) == ["carol-0", "dave-0"])
                #expect(await aliceSaw.chats.last?.seq == ack.seq)
                group.cancelAll()
            }
            #expect(await dave.meeting?.chat.map(\.text) == ["carol-0", "dave-0"], "Dave's new copy holds the whole history")
            _ = try await zone.waitFor("a new copy on the edge for Dave") { $0[servers.edge.name]?.keepsCopy(meeting) == true ? true : nil }
            await dave.leave()
            await alice.leave()
        }
    }

    @Test("copies vote at checkpoints: an edge's copy corrupted on purpose is outvoted and rebuilt from the store; then a host corrupted on purpose is outvoted, and its standby takes the meeting over")
    func corruptedCopiesAreOutvoted() async throws {
        try await ZoneHarness.run(processes: Self.processes, extraConfiguration: #""testFaults": {"corruptByChat": true}, "clients": {"snapshotEveryEntries": 10},"#,
                                  enableTestFaults: true, scaling: Self.scaling) { zone in
            let started = try await Self.start("Votes", in: zone)
            let (alice, servers) = (started.alice, started.servers)
            let carol = try MeetingClient(server: try servers.edge.clientURL(), token: try await started.token("Carol"),
                                          options: Scenario.options(.webSocket))
            try await carol.connect()
            func chats(_ count: Int, _ name: String) async throws {
                for index in 0..<count { _ = try await alice.send(.chat(text: "\(name) \(index)")) }
            }
            // The edge's copy keeps this chat under another text; the next checkpoint finds it.
            let corrupt = "corrupt \(servers.edge.name)"
            _ = try await alice.send(.chat(text: corrupt))
            try await chats(12, "after")
            let edgeLog = try await zone.waitForNodeLog(servers.edge.name, "copy rebuilt from the store")
            #expect(edgeLog.contains("was outvoted; rebuilding it from the store"), "the edge's copy was outvoted")
            #expect(edgeLog.contains("host_digest=") && edgeLog.contains("copy_digest="), "both digests are logged")
            // A newcomer on the edge gets the state from the rebuilt copy: the chat as sent.
            let dave = try MeetingClient(server: try servers.edge.clientURL(), token: try await started.token("Dave"),
                                         options: Scenario.options(.webSocket))
            try await dave.connect()
            let texts = await dave.meeting?.chat.map(\.text) ?? []
            #expect(texts.contains(corrupt), "\(texts)")
            #expect(!texts.contains { $0.hasSuffix("(corrupted)") }, "\(texts)")
            // Now the host's state goes wrong: the copies outvote it, and the standby takes over.
            _ = try await alice.send(.chat(text: "corrupt \(servers.host.name)"))
            try await chats(12, "later")
            _ = try await zone.waitFor("the standby hosting") { status in
                status[servers.standby.name]?.hosts(started.meeting) == true ? true : nil
            }
            // Carol, on the edge, carries on under the new host.
            let ack = try await carol.send(.chat(text: "still here"))
            #expect(ack.epoch > Epoch(1))
            // Checkpoints under the new host agree: the host was demoted for one checkpoint
            // only (both copies may report it), and nobody since; the edge agrees with the
            // new host at a later checkpoint.
            func seqs(_ log: String, _ line: String) -> [Int] {
                log.split(separator: "\n").filter { $0.contains(line) }.compactMap { $0.firstMatch(of: /\sseq=(\d+)/).flatMap { Int($0.1) } }
            }
            let demotedAt = try #require(seqs(zone.nodeLog("manager-1"), "a copy outvoted the meeting's host").first)
            try await chats(12, "finally")
            let deadline = ContinuousClock.now + .seconds(15)
            while !seqs(zone.nodeLog(servers.edge.name), "this copy agrees with its host again").contains(where: { $0 > demotedAt }) {
                guard ContinuousClock.now < deadline else {
                    let lines = zone.nodeLog(servers.edge.name).split(separator: "\n").filter { $0.contains("copy") }
                    throw HarnessFailure("the edge never agreed with the new host:\n\(lines.suffix(20).joined(separator: "\n"))")
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            let reported = Set(seqs(zone.nodeLog("manager-1"), "a copy outvoted the meeting's host"))
            #expect(reported == [demotedAt], "demotions reported at seqs \(reported.sorted())")
            await dave.leave()
            await carol.leave()
            await alice.leave()
        }
    }
}

extension EdgeProcessTests {
    @Test("every copy one server keeps of another's meetings shares one replication link: four meetings, each with a standby and an edge, make one link per pair of servers")
    func oneLinkPerPairOfServers() async throws {
        try await ZoneHarness.run(processes: Self.processes, scaling: Self.scaling) { zone in
            var clients: [MeetingClient] = []
            var meetings: [MeetingID] = []
            for index in 1...4 {
                let started = try await Self.start("Shared \(index)", in: zone)
                // A participant on the meeting's edge, so that every server keeps copies.
                let carol = try MeetingClient(server: try started.servers.edge.clientURL(), token: try await started.token("Carol"),
                                              options: Scenario.options(.webSocket))
                try await carol.connect()
                _ = try await carol.send(.chat(text: "hello \(index)"))
                clients += [started.alice, carol]
                meetings.append(started.meeting)
            }
            // Each copy is a subscription on its host; each host a server links to once.
            var subscriptions = 0
            for name in ["collab-1", "collab-2", "collab-3"] {
                let log = zone.nodeLog(NodeName(name))
                subscriptions += log.components(separatedBy: "copy subscribed").count - 1
                let links = log.split(separator: "\n").filter { $0.contains("replication link opened") }
                    .compactMap { $0.firstMatch(of: /host=(\S+)/).map { String($0.1) } }
                #expect(links.count == Set(links).count, "\(name) opened more than one link to one host: \(links)")
            }
            #expect(subscriptions >= 8, "a standby and an edge copy for each of the 4 meetings: \(subscriptions) subscriptions")
            for client in clients { await client.leave() }
        }
    }
}

/// Clients send chats before, during and after a fault; then every client's history is
/// checked: the same for all, in seq order, every acknowledged op exactly once at its seq,
/// every op there in the order each client sent them.
enum EdgeExchange {
    struct Outcome {
        var reconnects: [String: Int]
        /// Of the first and the last chat.
        var epochs: (first: Epoch, last: Epoch)
    }

    static let before = 6
    static let during = 8

    static func run(_ clients: [(String, MeetingClient)], fault: @escaping @Sendable () async throws -> Void) async throws -> Outcome {
        let watchers = clients.map { _ in Watcher() }
        let acks: [Ack] = try await withThrowingTaskGroup(of: [Ack].self) { group in
            for (index, (_, client)) in clients.enumerated() {
                group.addTask { await watchers[index].record(client.events); return [] }
            }
            func send(_ client: MeetingClient, _ name: String, _ range: Range<Int>) async throws -> [Ack] {
                var acks: [Ack] = []
                for index in range {
                    acks.append(try await client.send(.chat(text: "\(name)-\(index)")))
                    try await Task.sleep(for: .milliseconds(20))
                }
                return acks
            }
            var acks: [Ack] = []
            for (name, client) in clients { acks += try await send(client, name, 0..<before) }
            for (name, client) in clients {
                group.addTask { try await send(client, name, before..<(before + during)) }
            }
            try await Task.sleep(for: .milliseconds(60))
            try await fault()
            var finished = 0
            for try await batch in group where !batch.isEmpty {
                acks += batch
                finished += 1
                if finished == clients.count { break }
            }
            for (name, client) in clients { acks += try await send(client, name, (before + during)..<(before + during + 1)) }
            let total = clients.count * (before + during + 1)
            for watcher in watchers { try await watcher.waitForChats(total, timeout: .seconds(30)) }
            for (_, client) in clients { await client.leave() }
            group.cancelAll()
            return acks
        }
        let first = await watchers[0].chats
        for (index, (name, _)) in clients.enumerated() {
            let chats = await watchers[index].chats
            #expect(chats == first, "\(name) saw another history than \(clients[0].0)")
        }
        #expect(zip(first, first.dropFirst()).allSatisfy { $0.seq < $1.seq })
        for ack in acks {
            let matches = first.filter { $0.opID == ack.id }
            #expect(matches.count == 1, "op \(ack.id) appears \(matches.count) times")
            #expect(matches.first?.seq == ack.seq)
        }
        for (name, _) in clients {
            #expect(first.map(\.text).filter { $0.hasPrefix(name + "-") } == (0...(before + during)).map { "\(name)-\($0)" })
        }
        #expect(zip(first, first.dropFirst()).allSatisfy { $0.epoch <= $1.epoch })
        var reconnects: [String: Int] = [:]
        for (index, (name, _)) in clients.enumerated() { reconnects[name] = await watchers[index].reconnects }
        return Outcome(reconnects: reconnects, epochs: (first.first!.epoch, first.last!.epoch))
    }
}

extension ProcessStatus {
    /// Where this collaboration server takes clients.
    func clientURL() throws -> URL {
        guard case .object(let load)? = load, case .string(let url)? = load["client"], let parsed = URL(string: url) else {
            throw HarnessFailure("\(name) reports no client address")
        }
        return parsed
    }

    /// Whether a copy of `meeting` is kept here, used or not.
    func keepsCopy(_ meeting: MeetingID) -> Bool {
        guard case .object(let load)? = load, case .array(let list)? = load["copies"] else { return false }
        return list.contains(.string(meeting.rawValue))
    }

    /// Whether participants of `meeting` are served here from a copy.
    func servesEdge(_ meeting: MeetingID) -> Bool {
        guard case .object(let load)? = load, case .array(let list)? = load["edges"] else { return false }
        return list.contains(.string(meeting.rawValue))
    }
}
