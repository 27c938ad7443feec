import Foundation
import ParleyNode
import ParleyZone
import Subprocess
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
import ParleyTestSupport
#endif

/// The supervisor with real processes and real signals: `parley zone` as a child of the test,
/// `parley ctl status --json` to watch it, SIGKILL and SIGSTOP to hurt its nodes.
@Suite("Supervisor: parley zone with real processes and signals", MachineLoad.processes, .serialized)
struct SupervisorProcessTests {
    @Test("a SIGKILLed node is restarted with a new pid")
    func killedNodeRestarts() async throws {
        try await ZoneHarness.run { zone in
            let old = try await zone.running("collab-1")
            try zone.signal(old.pid, SIGKILL)
            let new = try await zone.waitFor("collab-1 back with a new pid") { status in
                status["collab-1"].flatMap { $0.state == .running && $0.pid != old.pid ? $0 : nil }
            }
            #expect(new.restarts == 1)
            #expect(new.lastExit == .signaled(SIGKILL))
            #expect(!isAlive(old.pid))
            #expect(zone.supervisorLog.contains("collab-1 killed by SIGKILL"))
        }
    }

    @Test("a SIGSTOPped node is killed once its heartbeats are overdue, and replaced")
    func hungNodeIsReplaced() async throws {
        try await ZoneHarness.run { zone in
            let old = try await zone.running("collab-1")
            let stoppedAt = ContinuousClock.now
            try zone.signal(old.pid, SIGSTOP)
            let new = try await zone.waitFor("collab-1 replaced") { status in
                status["collab-1"].flatMap { $0.state == .running && $0.pid != old.pid ? $0 : nil }
            }
            let elapsed = ContinuousClock.now - stoppedAt
            #expect(elapsed >= .milliseconds(ZoneHarness.heartbeatTimeoutMs - ZoneHarness.heartbeatIntervalMs),
                    "replaced after only \(elapsed)")
            #expect(new.restarts == 1)
            #expect(new.lastExit == .signaled(SIGKILL))
            #expect(!isAlive(old.pid))
            #expect(zone.supervisorLog.contains("killing collab-1: hung: no heartbeat for"))
            // The rest of the zone was not disturbed.
            #expect(try await zone.status().values.filter { $0.name != "collab-1" }.allSatisfy { $0.restarts == 0 })
        }
    }

    @Test("a node that keeps dying is given up on after maxRestarts restarts, loudly; ctl restart brings it back")
    func crashLoopGivesUp() async throws {
        try await ZoneHarness.run { zone in
            var killed: [Int] = []
            for round in 0...ZoneHarness.maxRestarts {
                let current = try await zone.waitFor("collab-1 running (round \(round))") { status in
                    status["collab-1"].flatMap { $0.state == .running && !killed.contains($0.pid ?? -1) ? $0 : nil }
                }
                #expect(current.restarts == round)
                killed.append(current.pid!)
                try zone.signal(current.pid!, SIGKILL)
            }
            let failed = try await zone.waitFor("collab-1 given up") { status in
                status["collab-1"].flatMap { $0.state == .failed ? $0 : nil }
            }
            let message = "collab-1 restarted \(ZoneHarness.maxRestarts) times in 60 s; giving up; "
                + "see its log at \(zone.data)/logs/collab-1.log"
            #expect(failed.detail?.hasPrefix(message) == true, "detail: \(failed.detail ?? "none")")
            #expect(failed.pid == nil)
            #expect(zone.supervisorLog.contains(message))
            #expect(try await zone.ctl("status").contains("giving up"))
            // Still given up a while later, while the others run on.
            try await Task.sleep(for: .milliseconds(3 * ZoneHarness.maxBackoffMs))
            let later = try await zone.status()
            #expect(later["collab-1"]?.state == .failed)
            #expect(later.values.filter { $0.name != "collab-1" }.allSatisfy { $0.state == .running })
            // The operator fixed the cause.
            _ = try await zone.ctl("restart", "collab-1")
            let back = try await zone.waitFor("collab-1 back after ctl restart") { status in
                status["collab-1"].flatMap { $0.state == .running ? $0 : nil }
            }
            #expect(!killed.contains(back.pid!))
        }
    }

    @Test("SIGTERM to the supervisor stops every node, web first and managers last, and exits 0")
    func sigtermStopsZoneInOrder() async throws {
        let pids = try await ZoneHarness.run(stopWithSIGTERM: false) { zone in
            let pids = try await zone.status().values.compactMap(\.pid)
            #expect(pids.count == 4)
            try zone.supervisor.send(signal: .terminate)
            let log = try await zone.waitForLog("zone stopped")
            // Each role is asked to stop only after the one before it has exited.
            let order = ["stopping web: SIGTERM", "web stopped: exited with status 0",
                         "stopping collab-1: SIGTERM", "collab-1 stopped: exited with status 0",
                         "stopping services: SIGTERM", "services stopped: exited with status 0",
                         "stopping manager-1: SIGTERM", "manager-1 stopped: exited with status 0", "zone stopped"]
            let positions = order.map { log.range(of: $0)?.lowerBound }
            #expect(positions.allSatisfy { $0 != nil }, "missing from the log: \(zip(order, positions).filter { $1 == nil }.map(\.0))")
            let found = positions.compactMap { $0 }
            #expect(found == found.sorted(), "out of order:\n\(log)")
            return pids
        } checkingExit: { status in
            #expect(status == .exited(0))
        }
        for pid in pids { #expect(!isAlive(pid), "pid \(pid) outlived the zone") }
    }

    @Test("ctl stop keeps a node down, ctl restart starts it again")
    func ctlStopAndRestart() async throws {
        try await ZoneHarness.run { zone in
            let old = try await zone.running("web")
            #expect(try await zone.ctl("stop", "web") == "stopping web\n")
            let stopped = try await zone.waitFor("web stopped") { status in
                status["web"].flatMap { $0.state == .stopped ? $0 : nil }
            }
            #expect(stopped.lastExit == .exited(code: 0), "a node stops gracefully on SIGTERM")
            #expect(!isAlive(old.pid))
            #expect(try await zone.ctl("restart", "web") == "restarting web\n")
            let back = try await zone.running("web")
            #expect(back.pid != old.pid)
            let unknown = try await ZoneHarness.parley(["ctl", "restart", "nobody", "--data", zone.data])
            #expect(unknown.status != .exited(0))
            #expect(unknown.error.contains("the zone has no process named 'nobody' (unknown_process)"))
        }
    }

    @Test("a spawn request adds collab-2, supervised like the rest, until scaling.maxCollabServers")
    func spawnRequestAddsCollab() async throws {
        try await ZoneHarness.run { zone in
            let socket = zone.data + "/zone/control.sock"
            let replies = try await ControlClient.withConnection(socketPath: socket) { messages, sender in
                var replies: [ControlReply] = []
                var iterator = messages.makeAsyncIterator()
                for id in 1...2 {
                    try await sender.send(.request(id: id, .spawn(role: .collab)))
                    while let message = try await iterator.next() {
                        if case .reply(let reply) = message { replies.append(reply); break }
                    }
                }
                return replies
            }
            #expect(replies.map(\.id) == [1, 2])
            #expect(replies.first?.name == "collab-2")
            #expect(replies.last?.ok == false)
            #expect(replies.last?.error?.code == "at_capacity")
            let added = try await zone.running("collab-2")
            #expect(added.status.role == .collab)
            // Supervised like any other: killed, it comes back.
            try zone.signal(added.pid, SIGKILL)
            _ = try await zone.waitFor("collab-2 restarted") { status in
                status["collab-2"].flatMap { $0.state == .running && $0.pid != added.pid ? $0 : nil }
            }
        }
    }

    @Test("parley ctl without a running zone says so and fails")
    func ctlWithoutZone() async throws {
        let directory = try HarnessDirectory()
        defer { directory.remove() }
        let result = try await ZoneHarness.parley(["ctl", "status", "--data", directory.path])
        #expect(result.status != .exited(0))
        #expect(result.error.contains(
            "no zone is running with data directory \(directory.path): cannot connect to \(directory.path)/zone/control.sock"))
    }

    @Test("parley zone --print-config prints the standard zone; a bad configuration is refused with every problem listed, by key")
    func printAndRefuseConfiguration() async throws {
        let printed = try await ZoneHarness.parley(["zone", "--print-config"])
        #expect(printed.status == .exited(0))
        #expect(try JSONDecoder().decode(ZoneConfiguration.self, from: Data(printed.output.utf8)) == .standard)

        let directory = try HarnessDirectory()
        defer { directory.remove() }
        let file = directory.path + "/bad.json"
        try #"{"processes": [{"name": "web", "role": "web"}], "heartbeat": {"intervalMs": 500, "timeoutMs": 100}}"#
            .write(toFile: file, atomically: true, encoding: .utf8)
        let refused = try await ZoneHarness.parley(["zone", "--data", directory.path + "/data", "--config", file])
        #expect(refused.status != .exited(0))
        for problem in [
            "a zone needs at least one manager process", "a zone needs at least one collab process",
            "heartbeat.timeoutMs (100) must exceed heartbeat.intervalMs (500)",
        ] {
            #expect(refused.error.contains("  - \(problem)"), "missing: \(problem)")
        }
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/data/zone/control.sock"))

        // Each kind of mistake, from each source, stops the process before it starts, naming the key.
        let mistakes = directory.path + "/mistakes.json"
        try #"{"heartbeat": {"intervalMS": 300}, "scaling": {"edges": "yes"}, "logs": {"keepFiles": 0}}"#
            .write(toFile: mistakes, atomically: true, encoding: .utf8)
        for command in [["zone"], ["serve"]] {
            let result = try await ZoneHarness.parley(command + ["--data", directory.path + "/data", "--config", mistakes])
            #expect(result.status != .exited(0))
            for problem in [
                "heartbeat.intervalMS in \(mistakes) is not a setting (did you mean heartbeat.intervalMs?)",
                "scaling.edges in \(mistakes): expected true or false",
            ] {
                #expect(result.error.contains("  - \(problem)"), "\(command): missing \(problem) in \(result.error)")
            }
        }
        let outOfRange = try await ZoneHarness.parley(["zone", "--data", directory.path + "/data"],
                                                      environment: ["PARLEY_LOGS_KEEP_FILES": "0"])
        #expect(outOfRange.status != .exited(0))
        #expect(outOfRange.error.contains("  - logs.keepFiles must be at least 1 (it is 0)"))
        let single = try await ZoneHarness.parley(["serve", "--single", "--data", directory.path + "/data", "--send-queue-frames", "8"],
                                                  environment: ["PARLEY_CLIENTS_BURST": "many"])
        #expect(single.status != .exited(0))
        #expect(single.error.contains("  - PARLEY_CLIENTS_BURST: expected an integer"), "\(single.error)")
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/data/parley.sqlite"))
        // Flags over environment over file: the printed configuration shows which won.
        let layered = directory.path + "/layered.json"
        try #"{"publicPort": 9101, "clients": {"burst": 7}, "heartbeat": {"timeoutMs": 3000}}"#
            .write(toFile: layered, atomically: true, encoding: .utf8)
        let printedLayers = try await ZoneHarness.parley(["zone", "--print-config", "--config", layered, "--store", "sqlite:///flag"],
                                                         environment: ["PARLEY_PUBLIC_PORT": "9102", "PARLEY_STORE_URL": "sqlite:///env"])
        let resolved = try JSONDecoder().decode(ZoneConfiguration.self, from: Data(printedLayers.output.utf8))
        #expect(resolved.publicPort == 9102 && resolved.store.url == "sqlite:///flag")
        #expect(resolved.clients.burst == 7 && resolved.heartbeat.timeoutMs == 3000 && resolved.heartbeat.intervalMs == 200)

        // Fault injection only with the flag a test passes: an operator cannot turn it on by
        // copying a configuration.
        let faults = directory.path + "/faults.json"
        try #"{"testFaults": {"crashOnChatText": "boom"}}"#.write(toFile: faults, atomically: true, encoding: .utf8)
        let refusedFaults = try await ZoneHarness.parley(["zone", "--data", directory.path + "/data", "--config", faults])
        #expect(refusedFaults.status != .exited(0))
        #expect(refusedFaults.error.contains("testFaults makes processes crash on purpose and is for tests only"))
        let printedFaults = try await ZoneHarness.parley(["zone", "--print-config", "--enable-test-faults", "--config", faults])
        #expect(printedFaults.status == .exited(0))
        #expect(printedFaults.output.contains("crashOnChatText"))
    }
}

// MARK: - Harness

/// A running `parley zone` in a temporary data directory, with a small configuration: one
/// manager, one collab server, web and services.
struct ZoneHarness: Sendable {
    static let heartbeatTimeoutMs = 1_000
    static let heartbeatIntervalMs = 200
    static let maxRestarts = 3
    static let maxBackoffMs = 200
    static let poisonAfterCrashes = 2

    let data: String
    let supervisor: Execution<NoInput, FileDescriptorOutput, FileDescriptorOutput>
    let supervisorLogPath: String
    let seen: SeenPids

    var supervisorLog: String { (try? String(contentsOfFile: supervisorLogPath, encoding: .utf8)) ?? "" }

    static var binary: String { BuiltProducts.parley }

    static let smallZone = """
        [{"name": "manager-1", "role": "manager"}, {"name": "collab-1", "role": "collab"},
         {"name": "web", "role": "web"}, {"name": "services", "role": "services"}]
        """
    /// Two of each that fails over: managers and collab servers.
    static let fullZone = """
        [{"name": "manager-1", "role": "manager"}, {"name": "manager-2", "role": "manager"},
         {"name": "collab-1", "role": "collab"}, {"name": "collab-2", "role": "collab"},
         {"name": "web", "role": "web"}, {"name": "services", "role": "services"}]
        """

    static let standardScaling = #"{"maxCollabServers": 2}"#

    static func configurationJSON(processes: String = smallZone, extra: String = "", killAfterMs: Int? = nil,
                                  heartbeat: (intervalMs: Int, timeoutMs: Int) = (heartbeatIntervalMs, heartbeatTimeoutMs),
                                  scaling: String = standardScaling) -> String {
        """
        {"publicPort": 0, \(extra)
         "processes": \(processes),
         "heartbeat": {"intervalMs": \(heartbeat.intervalMs), "timeoutMs": \(heartbeat.timeoutMs)\(killAfterMs.map { ", \"killAfterMs\": \($0)" } ?? "")},
         "scaling": \(scaling),
         "poisonAfterCrashes": \(poisonAfterCrashes),
         "restart": {"initialBackoffMs": 50, "maxBackoffMs": \(maxBackoffMs), "maxRestarts": \(maxRestarts),
                     "windowSeconds": 60, "stableAfterSeconds": 30}}
        """
    }

    /// Starts a zone, waits until every node has registered, runs `body`, then stops the zone
    /// with SIGTERM (unless `body` stops it) and waits for it. Whatever happens, no node
    /// the test has seen is left running.
    @discardableResult
    static func run<Value: Sendable>(
        processes: String = smallZone,
        environment: [String: String] = [:],
        extraConfiguration: String = "",
        enableTestFaults: Bool = false,
        killAfterMs: Int? = nil,
        heartbeat: (intervalMs: Int, timeoutMs: Int) = (heartbeatIntervalMs, heartbeatTimeoutMs),
        scaling: String = standardScaling,
        stopWithSIGTERM: Bool = true,
        _ body: (ZoneHarness) async throws -> Value,
        checkingExit: (TerminationStatus) -> Void = { #expect($0 == .exited(0)) }
    ) async throws -> Value {
        let directory = try HarnessDirectory()
        defer { directory.remove() }
        let data = directory.path + "/data"
        let configFile = directory.path + "/zone.json"
        let nodeCount = (try JSONSerialization.jsonObject(with: Data(processes.utf8)) as? [Any])?.count ?? 0
        try configurationJSON(processes: processes, extra: extraConfiguration, killAfterMs: killAfterMs, heartbeat: heartbeat,
                              scaling: scaling).write(toFile: configFile, atomically: true, encoding: .utf8)
        let logPath = directory.path + "/supervisor.log"
        let log = try FileDescriptor.open(FilePath(logPath), .writeOnly, options: [.create, .append],
                                          permissions: [.ownerReadWrite])
        let errorLog = try FileDescriptor.open(FilePath(logPath), .writeOnly, options: [.append])
        var platform = PlatformOptions()
        // If the test fails, the zone gets the same ordered stop an operator's SIGTERM gives.
        platform.teardownSequence = [.gracefulShutDown(allowedDurationToNextStep: .seconds(8))]
        let seen = SeenPids()
        do {
            let result = try await Subprocess.run(
                Configuration(executable: .path(FilePath(binary)),
                              arguments: Arguments(["zone", "--data", data, "--config", configFile]
                                                       + (enableTestFaults ? ["--enable-test-faults"] : [])),
                              environment: .inherit.updating(Dictionary(uniqueKeysWithValues: environment.map {
                                  (Environment.Key(stringLiteral: $0.key), Optional($0.value))
                              })),
                              platformOptions: platform),
                input: .none,
                output: .fileDescriptor(log, closeAfterSpawningProcess: true),
                error: .fileDescriptor(errorLog, closeAfterSpawningProcess: true)
            ) { execution in
                let zone = ZoneHarness(data: data, supervisor: execution, supervisorLogPath: logPath, seen: seen)
                _ = try await zone.waitFor("every node registered", timeout: .seconds(30)) { status in
                    status.count == nodeCount && status.values.allSatisfy { $0.state == .running } ? true : nil
                }
                let value = try await body(zone)
                if stopWithSIGTERM { try execution.send(signal: .terminate) }
                return value
            }
            checkingExit(result.terminationStatus)
            if result.terminationStatus != .exited(0) {
                Issue.record("the supervisor's log:\n\(((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").suffix(6_000))")
            }
            await seen.killSurvivors()
            return result.closureResult
        } catch {
            await seen.killSurvivors()
            Issue.record("the supervisor's log:\n\(((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").suffix(6_000))")
            throw error
        }
    }

    /// `parley ctl status --json`, by name.
    func status() async throws -> [NodeName: ProcessStatus] {
        let result = try await Self.parley(["ctl", "status", "--json", "--data", data])
        guard result.status == .exited(0) else { throw HarnessFailure("ctl status failed: \(result.error)") }
        struct Status: Decodable { var processes: [ProcessStatus] }
        let processes = try JSONDecoder().decode(Status.self, from: Data(result.output.utf8)).processes
        await seen.add(processes.compactMap(\.pid))
        return Dictionary(uniqueKeysWithValues: processes.map { ($0.name, $0) })
    }

    func ctl(_ arguments: String...) async throws -> String {
        let result = try await Self.parley(["ctl"] + arguments + ["--data", data])
        guard result.status == .exited(0) else { throw HarnessFailure("ctl \(arguments) failed: \(result.error)") }
        return result.output
    }

    struct Running { var pid: Int; var status: ProcessStatus }

    func running(_ name: NodeName) async throws -> Running {
        let status = try await waitFor("\(name) running") { status in
            status[name].flatMap { $0.state == .running ? $0 : nil }
        }
        return Running(pid: status.pid!, status: status)
    }

    /// Polls the status until `found` returns a value.
    func waitFor<T>(_ what: String, timeout: Duration = .seconds(15),
                    _ found: ([NodeName: ProcessStatus]) -> T?) async throws -> T {
        let deadline = ContinuousClock.now + timeout
        var last = "none"
        while ContinuousClock.now < deadline {
            do {
                let status = try await status()
                if let value = found(status) { return value }
                last = "\(status.values.sorted { $0.name < $1.name })"
            } catch let error as HarnessFailure {
                // The supervisor may not listen yet.
                last = error.description
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw HarnessFailure("no \(what) within \(timeout); last status: \(last)")
    }

    /// The supervisor's log, once it contains `text`.
    func waitForLog(_ text: String, timeout: Duration = .seconds(15)) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let log = supervisorLog
            if log.contains(text) { return log }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw HarnessFailure("the supervisor's log did not say '\(text)' within \(timeout)")
    }

    func signal(_ pid: Int, _ signal: Int32) throws {
        guard kill(pid_t(pid), signal) == 0 else { throw HarnessFailure("kill(\(pid), \(signal)): errno \(errno)") }
    }

    struct Output { var status: TerminationStatus; var output: String; var error: String }

    static func parley(_ arguments: [String], environment: [String: String] = [:]) async throws -> Output {
        let result = try await Subprocess.run(.path(FilePath(binary)), arguments: Arguments(arguments),
                                              environment: .inherit.updating(Dictionary(uniqueKeysWithValues: environment.map {
                                                  (Environment.Key(stringLiteral: $0.key), Optional($0.value))
                                              })),
                                              output: .string(limit: 1 << 20), error: .string(limit: 1 << 20))
        return Output(status: result.terminationStatus, output: result.standardOutput, error: result.standardError)
    }
}

/// Every node pid a test has seen, so none survives a failed test.
actor SeenPids {
    private var pids: Set<Int> = []
    func add(_ more: [Int]) { pids.formUnion(more) }
    func killSurvivors() {
        for pid in pids where isAlive(pid) {
            Issue.record("node pid \(pid) was still running after the zone ended; killing it")
            kill(pid_t(pid), SIGKILL)
        }
    }
}

func isAlive(_ pid: Int) -> Bool { kill(pid_t(pid), 0) == 0 }

struct HarnessFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A short temporary path: the control socket's path must fit a Unix socket address.
/// Removed by an explicit `remove()` in a `defer`, so it lives exactly as long as its scope.
struct HarnessDirectory: Sendable {
    let path: String
    init() throws {
        path = "/tmp/pz-" + UUID().uuidString.prefix(8).lowercased()
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func remove() { try? FileManager.default.removeItem(atPath: path) }
}
