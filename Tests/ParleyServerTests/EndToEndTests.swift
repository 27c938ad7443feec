import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import ParleyClient
import ParleyCore
import ParleySupervisor
import Subprocess
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
import ParleyTestSupport
#endif

/// The contract, end to end: a real `parley serve` process, two SDK clients, a SIGKILL in
/// the middle of the conversation and a restart on the same data directory.
@Suite("End to end: parley serve as a child process", MachineLoad.server, .timeLimit(.minutes(2)))
struct EndToEndTests {
    @Test("two clients chat through a SIGKILL and restart; every acked message appears once, in one order")
    func chatSurvivesKill() async throws {
        let directory = try TemporaryDirectory()
        let data = directory.path + "/data"
        let portFile = directory.path + "/port"
        let perClient = 40
        let killAfterAcks = 20

        let progress = Progress()
        let (ports, portSink) = AsyncStream<Int>.makeStream()

        try await withThrowingTaskGroup(of: Void.self) { group in
            // The server's life: start, SIGKILL once enough ops are acked and more are in
            // flight, start again on the same port and data, then SIGTERM at the end.
            group.addTask {
                let killed = try await ServerProcess.run(data: data, port: 0, portFile: portFile) { server, port in
                    portSink.yield(port)
                    try await progress.waitForAcks(killAfterAcks, timeout: .seconds(60))
                    try server.send(signal: .kill)
                    await progress.markKilled()
                    return port
                }
                #expect(killed.status == .signaled(SIGKILL))
                let stopped = try await ServerProcess.run(data: data, port: killed.value, portFile: portFile) { server, _ in
                    try await progress.waitUntilFinished(timeout: .seconds(120))
                    try server.send(signal: .terminate)
                }
                // SIGTERM is a graceful shutdown: flush, checkpoint, exit 0.
                #expect(stopped.status == .exited(0))
            }

            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { throw TestFailure("the server did not start") }
            let server = URL(string: "http://127.0.0.1:\(port)")!
            let created = try await ParleyHTTP.createMeeting(server: server, title: "End to end")
            let bobToken = try await ParleyHTTP.issueToken(server: server, meeting: created.meeting.id, name: "Bob").token

            // Alice over WebSocket, Bob over long-polling: both transports cross the kill.
            let alice = try MeetingClient(server: server, token: created.hostToken, options: Self.options(.webSocket))
            let bob = try MeetingClient(server: server, token: bobToken, options: Self.options(.longPolling))
            try await alice.connect()
            try await bob.connect()
            let aliceSaw = Transcript()
            let bobSaw = Transcript()

            let sent: [[Ack]] = try await withThrowingTaskGroup(of: [Ack].self) { clients in
                clients.addTask { await aliceSaw.record(alice.events); return [] }
                clients.addTask { await bobSaw.record(bob.events); return [] }
                for (client, name) in [(alice, "alice"), (bob, "bob")] {
                    clients.addTask {
                        var acks: [Ack] = []
                        for index in 0..<perClient {
                            let ack = try await client.send(.chat(text: "\(name)-\(index)"))
                            acks.append(ack)
                            await progress.acked()
                            try await Task.sleep(for: .milliseconds(10))
                        }
                        return acks
                    }
                }
                var sent: [[Ack]] = []
                for try await acks in clients where !acks.isEmpty {
                    sent.append(acks)
                    if sent.count == 2 { break }
                }
                // Every acked message must reach both clients; give the resume a bounded while.
                let expected = 2 * perClient
                for transcript in [aliceSaw, bobSaw] {
                    try await transcript.waitForChats(expected, timeout: .seconds(30))
                }
                await alice.leave()
                await bob.leave()
                clients.cancelAll()
                return sent
            }
            await progress.finish()
            try await group.waitForAll()

            #expect(await progress.killedAt != nil, "the server was never killed")
            let acks = sent.flatMap { $0 }
            #expect(acks.count == 2 * perClient)
            let aliceChats = await aliceSaw.chats
            let bobChats = await bobSaw.chats
            // One history: the same entries in the same order for both.
            #expect(aliceChats == bobChats)
            // Seqs strictly increase: nothing reordered or repeated.
            #expect(zip(aliceChats, aliceChats.dropFirst()).allSatisfy { $0.seq < $1.seq })
            // Every acked op is there exactly once, at the seq its ack named.
            for ack in acks {
                let matches = aliceChats.filter { $0.opID == ack.id }
                #expect(matches.count == 1, "op \(ack.id) appears \(matches.count) times")
                #expect(matches.first?.seq == ack.seq, "op \(ack.id) acked at \(ack.seq), delivered at \(matches.first?.seq ?? 0)")
            }
            // Each client's own messages in the order it sent them.
            for name in ["alice", "bob"] {
                let texts = aliceChats.map(\.text).filter { $0.hasPrefix(name + "-") }
                #expect(texts == (0..<perClient).map { "\(name)-\($0)" })
            }
            // The restart fenced a new epoch, and both clients lived through it by resuming.
            let epochs = acks.map(\.epoch.rawValue)
            #expect(epochs.max()! > epochs.min()!, "all acks carry one epoch; the restart did not advance it")
            let aliceResumed = await aliceSaw.resumed
            let bobResumed = await bobSaw.resumed
            #expect(aliceResumed && bobResumed)
        }
    }

    @Test("/ready answers 503 with the reason while the server's PostgreSQL is stopped, and 200 again once it is back; /health stays 200 throughout")
    func readinessFollowsTheStore() async throws {
        let directory = try TemporaryDirectory()
        // Durable: an immediate stop is a crash, and the schema must survive it.
        let database = try await LocalPostgres.start(in: directory.path + "/db", port: try freeLoopbackPort(), durable: true)
        try database.stopWhenGone(pid: getpid())
        try await database.createDatabase("parley")
        let url = database.url(database: "parley", options: "sslmode=disable&connect_timeout=1&statement_timeout=2")
        let stopped = try await ServerProcess.run(data: directory.path + "/data", port: 0, portFile: directory.path + "/port",
                                                  extraArguments: ["--store", url]) { server, port in
            let base = URL(string: "http://127.0.0.1:\(port)")!
            func get(_ path: String) async throws -> (Int, String) {
                let (data, response) = try await URLSession.shared.data(from: base.appendingPathComponent(path))
                return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
            }
            #expect(try await get("ready").0 == 200)
            try await database.stop(mode: "immediate")
            let (down, reason) = try await get("ready")
            #expect(down == 503)
            #expect(reason.contains("not_ready") && reason.contains("store"), "\(reason)")
            #expect(try await get("health").0 == 200, "alive, only not ready")
            try await database.startServer()
            // The pool reconnects by itself; bounded, as a load balancer would poll.
            var (back, said) = (0, "")
            for _ in 0..<150 where back != 200 {
                (back, said) = try await get("ready")
                if back != 200 { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(back == 200, "ready again once PostgreSQL is back: \(said)")

            // A database that hangs (every one of its processes stopped, as a frozen machine)
            // rather than refuses: /ready still answers, within the probe's 2 s, and says why.
            let frozen = Self.postgresProcesses(dataDirectory: database.dataDirectory)
            #expect(!frozen.isEmpty)
            for pid in frozen { kill(pid, SIGSTOP) }
            // The last probe's answer stands for up to a second; then one that hangs is cut at 2 s.
            var (hung, why) = (0, "")
            let started = ContinuousClock.now
            for _ in 0..<50 where hung != 503 {
                (hung, why) = try await get("ready")
                if hung != 503 { try await Task.sleep(for: .milliseconds(100)) }
            }
            let took = ContinuousClock.now - started
            for pid in frozen { kill(pid, SIGCONT) }
            #expect(hung == 503 && why.contains("store"), "\(why)")
            #expect(took < .seconds(5), "/ready noticed a hung store in \(took)")
            print("readiness: a hung store answered 503 after \(took)")
            for _ in 0..<150 where back != 200 || hung == 503 {
                (back, said) = try await get("ready")
                hung = back
                if back != 200 { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(back == 200, "ready again once PostgreSQL runs again: \(said)")
            try server.send(signal: .terminate)
        }
        #expect(stopped.status == .exited(0))
        try? await database.stop(mode: "immediate")
    }

    /// The postmaster of the cluster in `dataDirectory` and every process it started.
    static func postgresProcesses(dataDirectory: String) -> [pid_t] {
        guard let text = try? String(contentsOfFile: dataDirectory + "/postmaster.pid", encoding: .utf8),
              let postmaster = text.split(separator: "\n").first.flatMap({ pid_t($0.trimmingCharacters(in: .whitespaces)) })
        else { return [] }
        let children = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry -> pid_t? in
            guard let pid = pid_t(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return nil }
            // After "pid (comm) state ppid": the fields past the command name.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && pid_t(fields[1]) == postmaster ? pid : nil
        }
        return [postmaster] + children
    }

    @Test("SIGTERM answers a long poll that is waiting, instead of holding the stop for the poll's whole wait")
    func gracefulStopAnswersWaitingPoll() async throws {
        let directory = try TemporaryDirectory()
        let data = directory.path + "/data"
        let portFile = directory.path + "/port"
        // The server holds a poll at most 30 s by default: a stop that waited for it would
        // take about that long.
        let pollWait = Duration.seconds(30)
        let stopped = try await ServerProcess.run(data: data, port: 0, portFile: portFile) { server, port in
            let base = URL(string: "http://127.0.0.1:\(port)")!
            let created = try await ParleyHTTP.createMeeting(server: base, title: "Stop while polling")
            var options = Self.options(.longPolling)
            options.longPollWait = pollWait
            let client = try MeetingClient(server: base, token: created.hostToken, options: options)
            try await client.connect()
            // Acknowledged: the next poll is out and waits, since nothing else happens.
            _ = try await client.send(.chat(text: "before the stop"))
            try await Task.sleep(for: .milliseconds(300))
            let signalled = ContinuousClock.now
            try server.send(signal: .terminate)
            return (signalled, client)
        }
        let took = ContinuousClock.now - stopped.value.0
        await stopped.value.1.leave()
        #expect(stopped.status == .exited(0))
        #expect(took < pollWait / 2, "the stop took \(took); it waited for the poll")
    }

    static func options(_ transport: TransportPreference) -> MeetingClient.Options {
        var options = MeetingClient.Options(policy: ConnectionPolicy(transport: transport))
        options.policy.backoffInitial = .milliseconds(50)
        options.policy.backoffMax = .milliseconds(400)
        options.longPollWait = .seconds(2)
        return options
    }
}

/// What one client saw, in order.
actor Transcript {
    struct Chat: Equatable, Sendable {
        var seq: Seq
        var opID: OpID?
        var text: String
    }
    private(set) var chats: [Chat] = []
    private(set) var resumed = false
    private(set) var reconnects = 0

    func record(_ events: EventStream) async {
        for await event in events {
            switch event {
            case .entry(let entry):
                if case .chat(let text) = entry.operation { chats.append(Chat(seq: entry.seq, opID: entry.opID, text: text)) }
            case .connection(.resumed):
                resumed = true
            case .connection(.reconnecting):
                reconnects += 1
            default:
                break
            }
        }
    }

    func waitForChats(_ count: Int, timeout: Duration) async throws {
        try await wait(timeout, until: { chats.count >= count }) { "saw \(chats.count) of \(count) chat messages after \(timeout)" }
    }

    func waitForReconnects(_ count: Int, timeout: Duration) async throws {
        try await wait(timeout, until: { reconnects >= count }) {
            "\(reconnects) reconnects of \(count) after \(timeout): the server kept the connection open"
        }
    }

    private func wait(_ timeout: Duration, until done: () -> Bool, failure: () -> String) async throws {
        let deadline = ContinuousClock.now + timeout
        while !done() {
            guard ContinuousClock.now < deadline else { throw TestFailure(failure()) }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

/// Coordinates the server's life with the clients' traffic.
actor Progress {
    private(set) var acks = 0
    private(set) var killedAt: Int?
    private var finished = false

    func acked() { acks += 1 }
    func markKilled() { killedAt = acks }
    func finish() { finished = true }

    func waitForAcks(_ count: Int, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while acks < count {
            guard ContinuousClock.now < deadline else { throw TestFailure("only \(acks) of \(count) acks after \(timeout)") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    func waitUntilFinished(timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while !finished {
            guard ContinuousClock.now < deadline else { throw TestFailure("the clients did not finish within \(timeout)") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

/// `parley serve` as a child process, built next to this test bundle.
enum ServerProcess {
    struct Outcome<Value> {
        var value: Value
        var status: TerminationStatus
    }

    static var binary: String { BuiltProducts.parley }

    /// Starts the server, waits until it listens, runs `body` with it and its port, then
    /// waits for it to exit (so `body` must stop it).
    static func run<Value: Sendable>(
        data: String, port: Int, portFile: String, extraArguments: [String] = [],
        _ body: (Execution<NoInput, DiscardedOutput, FileDescriptorOutput>, Int) async throws -> Value
    ) async throws -> Outcome<Value> {
        try? FileManager.default.removeItem(atPath: portFile)
        let logPath = URL(fileURLWithPath: data).deletingLastPathComponent().appendingPathComponent("server.log").path
        let log = try FileDescriptor.open(FilePath(logPath), .writeOnly, options: [.create, .append],
                                          permissions: [.ownerReadWrite])
        let configuration = Configuration(
            executable: .path(FilePath(binary)),
            arguments: Arguments(["serve", "--single", "--data", data, "--port", "\(port)", "--port-file", portFile,
                                  "--log-level", "info"] + extraArguments))
        let result = try await Subprocess.run(configuration, input: .none, output: .discarded,
                                              error: .fileDescriptor(log, closeAfterSpawningProcess: true)) { execution in
            let bound = try await waitForPort(portFile, timeout: .seconds(30))
            return try await body(execution, bound)
        }
        if case .exited(0) = result.terminationStatus {} else if case .signaled(SIGKILL) = result.terminationStatus {} else {
            let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            Issue.record("parley serve ended with \(result.terminationStatus); its log:\n\(text.suffix(4_000))")
        }
        return Outcome(value: result.closureResult, status: result.terminationStatus)
    }

    private static func waitForPort(_ portFile: String, timeout: Duration) async throws -> Int {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8),
               let port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                return port
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestFailure("parley serve did not write \(portFile) within \(timeout); is \(binary) built?")
    }
}
