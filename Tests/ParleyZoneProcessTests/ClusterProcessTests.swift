import Foundation
import ParleyChaos
import ParleySupervisor
import ParleyClient
import ParleyCore
import ParleyTestSupport
import ParleyZone
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A zone over three machines sharing PostgreSQL, each machine its own supervisor on its own
/// loopback address; a whole machine is lost at once.
@Suite("Cluster: a zone over three machines on PostgreSQL", MachineLoad.machine, .serialized, .timeLimit(.minutes(4)))
struct ClusterProcessTests {
    @Test("every process of the machine hosting a meeting is killed at once: the standby on another machine takes over, both clients resume, nothing acknowledged is lost")
    func machineLost() async throws {
        try await Self.withCluster { cluster, web, configuration, directory in
            let (meeting, alice, bob) = try await Self.meetingWithTwoClients(at: web, title: "Cluster")
            let (hostMachine, standbyMachine) = try await Self.placement(of: meeting, in: cluster)
            // ctl status on any machine shows every process of the cluster, with its machine.
            let everywhere = try await Self.clusterStatus(from: directory + "/machines/m1", expecting: configuration.processes.count)
            #expect(everywhere == Dictionary(uniqueKeysWithValues: configuration.processes.map {
                ($0.name.rawValue, configuration.machine(of: $0.name) ?? "?")
            }))
            #expect(hostMachine != standbyMachine, "the standby must be on another machine than the host")
            #expect(hostMachine != "m1", "m1 runs no collab server")

            let resumeTime = try await Scenario.exchange(alice: alice, bob: bob) {
                let killed = try await cluster.killMachine(hostMachine)
                #expect(killed.count >= 3, "the supervisor, its manager and its collab server: \(killed)")
            }
            let (newHost, _) = try await Self.placement(of: meeting, in: cluster, hostOnly: true)
            #expect(newHost == standbyMachine, "the meeting now lives on the machine that had its standby")
            print("cluster: machine \(hostMachine) lost; every client resumed after \(resumeTime), on \(newHost)")
            // Every remaining machine stops in order, promptly: a machine without the web
            // process once waited forever for its address.
            let stopping = ContinuousClock.now
            await cluster.stop()
            #expect(ContinuousClock.now - stopping < .seconds(20), "stopping the cluster took \(ContinuousClock.now - stopping)")
        }
    }

    @Test("parley cluster up starts PostgreSQL and three machines that serve meetings; parley cluster down stops every process of it")
    func upAndDown() async throws {
        // As root, `cluster up` makes network namespaces and a bridge (see NetworkChanges).
        try await NetworkChanges.lock.exclusively { try await Self.upAndDown() }
    }

    static func upAndDown() async throws {
        let directory = try HarnessDirectory()
        defer { directory.remove() }
        let output = directory.path + "/up.out"
        #expect(FileManager.default.createFile(atPath: output, contents: nil))
        let up = Process()
        up.executableURL = URL(fileURLWithPath: ZoneHarness.binary)
        up.arguments = ["cluster", "up", "--dir", directory.path + "/c"]
        up.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        up.standardError = up.standardOutput
        try up.run()
        defer { if up.isRunning { kill(up.processIdentifier, SIGKILL) } }
        var web: URL?
        let deadline = ContinuousClock.now + .seconds(60)
        while web == nil, up.isRunning, ContinuousClock.now < deadline {
            let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("the cluster is up; clients use ") }) {
                web = URL(string: String(line.dropFirst("the cluster is up; clients use ".count)))
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        let url = try #require(web, "no 'cluster is up' line: \((try? String(contentsOfFile: output, encoding: .utf8)) ?? "")")
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        let namespaced = text.contains("mode: each machine in its own network namespace")
        #expect(namespaced == MachineNetwork.isPermitted, "namespaces when root, else loopback addresses: \(text)")
        #expect(namespaced || text.contains("mode: each machine on its own loopback address"), "the output says which mode is in use")
        let created = try await ParleyHTTP.createMeeting(server: url, title: "Local cluster")
        let client = try MeetingClient(server: url, token: created.hostToken, options: Scenario.options(.webSocket))
        try await client.connect()
        let ack = try await client.send(.chat(text: "hello"))
        #expect(ack.seq > 0)
        await client.leave()

        let pids = try await ZoneHarness.parley(["ctl", "status", "--json", "--data", directory.path + "/c/cluster/machines/m2"])
        #expect(pids.status == .exited(0))
        let down = try await ZoneHarness.parley(["cluster", "down", "--dir", directory.path + "/c"])
        #expect(down.status == .exited(0), "\(down.error)")
        up.waitUntilExit()
        #expect(up.terminationStatus == 0)
        let after = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        #expect(after.hasSuffix("the cluster is down\n"), "\(after.suffix(500))")
        // Nothing of it is left: no supervisor, node or PostgreSQL with its directory.
        let ps = Process()
        ps.executableURL = URL(fileURLWithPath: "/bin/sh")
        ps.arguments = ["-c", "ps -eo args | grep -F '\(directory.path)/c' | grep -v grep | wc -l"]
        let pipe = Pipe()
        ps.standardOutput = pipe
        try ps.run()
        ps.waitUntilExit()
        let count = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(count.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "processes of the cluster still running")
        if namespaced, let line = text.split(separator: "\n").first, let start = line.firstIndex(of: "("), let end = line.firstIndex(of: ")") {
            let namespaces = line[line.index(after: start)..<end].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            let left = FileManager.default.fileExists(atPath: "/run/netns/" + (namespaces.first ?? "none"))
            #expect(!left, "the machines' namespaces are removed: \(namespaces)")
        }
    }

    @Test("the machine hosting a meeting is cut off from the network while it runs: it acknowledges nothing more, the meeting moves to another machine, and after the partition heals it rejoins without a second host",
          .enabled(if: MachineNetwork.isPermitted, "network namespaces need root"))
    func machinePartitioned() async throws {
        try await NetworkChanges.lock.exclusively { try await Self.partition() }
    }

    static func partition() async throws {
        let network = try await MachineNetwork.create(machines: 3)
        let directory = try HarnessDirectory()
        let postgres = try await LocalPostgres.start(in: directory.path + "/pg", host: network.bridgeAddress,
                                                     port: try freeLoopbackPort(), clientNetwork: network.cidr)
        try postgres.stopWhenGone(pid: getpid())
        try await postgres.createDatabase("parley")
        // A host cut off from the database gives up on a commit after 2 s.
        let storeURL = postgres.url(database: "parley", options: "sslmode=disable&connect_timeout=1&statement_timeout=2")
        var configuration = ClusterTarget.standardConfiguration(storeURL: storeURL, address: network.address(ofMachine:))
        configuration.heartbeat.intervalMs = ZoneHarness.heartbeatIntervalMs
        configuration.heartbeat.timeoutMs = ZoneHarness.heartbeatTimeoutMs
        let cluster = ClusterTarget(executable: ZoneHarness.binary, directory: directory.path, configuration: configuration,
                                    storeURL: storeURL, network: network)
        func cleanUp() async {
            await cluster.stop()
            try? await postgres.stop(mode: "immediate")
            await network.remove()
            directory.remove()
        }
        do {
            let web = try await cluster.start()
            let (meeting, alice, bob) = try await Self.meetingWithTwoClients(at: web, title: "Partition")
            let (hostMachine, standbyMachine) = try await Self.placement(of: meeting, in: cluster)
            let index = try #require(cluster.machines.firstIndex(of: hostMachine)) + 1

            // Bounded here, so that a hang shows the processes' logs rather than the suite's time limit.
            let resumeTime = try await withThrowingTaskGroup(of: Duration?.self) { group in
                group.addTask { try await Scenario.exchange(alice: alice, bob: bob) { try await network.isolate(machine: index) } }
                group.addTask { try await Task.sleep(for: .seconds(90)); return nil }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let resumed = first else {
                    throw HarnessFailure("the clients did not get through the partition within 90 s")
                }
                return resumed
            }
            // The cut-off machine still believes it hosts the meeting (nobody can tell it), but it
            // can commit nothing: the exchange above saw every op exactly once.
            let (newHost, _) = try await Self.placement(of: meeting, in: cluster, hostOnly: true, awayFrom: hostMachine)
            #expect(newHost == standbyMachine, "the meeting moved to the machine that had its standby")
            print("cluster: machine \(hostMachine) cut off; every client resumed after \(resumeTime), on \(newHost)")

            // Healed: the machine rejoins as capacity; the meeting keeps exactly one host.
            try await network.heal(machine: index)
            let deadline = ContinuousClock.now + .seconds(20)
            var hosts: [String] = []
            while ContinuousClock.now < deadline {
                let status = try await cluster.status().values
                hosts = status.filter { $0.process.hosts(meeting) }.map(\.machine)
                let rejoined = status.contains { $0.machine == hostMachine && $0.process.role == .collab && $0.process.state == .running }
                if rejoined, hosts == [newHost] { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(hosts == [newHost], "one host after the partition healed, not \(hosts)")
            let carolToken = try await ParleyHTTP.issueToken(server: web, meeting: meeting, name: "Carol").token
            let carol = try MeetingClient(server: web, token: carolToken, options: Scenario.options(.webSocket))
            try await carol.connect()
            let ack = try await carol.send(.chat(text: "after the heal"))
            #expect(ack.epoch > Epoch(1), "acknowledged by the new host, under its epoch")
            await carol.leave()
        } catch {
            let logs = (try? FileManager.default.subpathsOfDirectory(atPath: directory.path + "/machines")) ?? []
            for log in logs.filter({ $0.hasSuffix(".log") }).sorted() {
                let text = (try? String(contentsOfFile: directory.path + "/machines/" + log, encoding: .utf8)) ?? ""
                Issue.record("\(log):\n\(text.suffix(2_500))")
            }
            await cleanUp()
            throw error
        }
        await cleanUp()
    }

    @Test("when every collab server is busy, the next one starts on the machine with the most room, named after it")
    func scalesOntoRoomiestMachine() async throws {
        try await Self.withCluster({ configuration in
        // m1 and m2 run a manager and a collab server each; m3 only the services, and no
        // manager, so that whichever manager leads, the machine with the most room (m3) is
        // not its own: asking its own supervisor, as a zone on one machine does, would fail
        // this test. Two clients make a server busy.
        configuration.processes.removeAll { $0.name == "manager-3" }
        configuration.machines = [
            .init(name: "m1", address: "127.0.0.1", processes: ["manager-1", "web", "collab-3"]),
            .init(name: "m2", address: "127.0.0.2", processes: ["manager-2", "collab-2"]),
            .init(name: "m3", address: "127.0.0.3", processes: ["services"]),
        ]
        configuration.scaling.connectionsPerServer = 1
        configuration.scaling.maxCollabServers = 3
        // And every listener but the public port takes a port of this range.
        configuration.ports = PortRange(first: 47_600, last: 47_699)
        }) { cluster, web, configuration, directory in
            // The clients stay connected (held here) until the end.
            let (first, alice, bob) = try await Self.meetingWithTwoClients(at: web, title: "Busy 1")
            let (second, carol, dave) = try await Self.meetingWithTwoClients(at: web, title: "Busy 2")
            let (firstHost, _) = try await Self.placement(of: first, in: cluster, hostOnly: true)
            let (secondHost, _) = try await Self.placement(of: second, in: cluster, hostOnly: true)
            #expect(Set([firstHost, secondHost]) == ["m1", "m2"], "one busy meeting on each collab server")
            let everywhere = try await Self.clusterStatus(from: directory + "/machines/m2",
                                                          expecting: configuration.processes.count + 1)
            #expect(everywhere["collab-m3-1"] == "m3", "processes: \(everywhere)")
            #expect(everywhere.keys.filter { $0.hasPrefix("collab-") }.count == 3, "exactly one more: \(everywhere)")
            let range = try #require(configuration.ports)
            // A process reports running once it is registered with its supervisor, before its
            // listeners are bound; ready, once its role is up (a collab server registered with
            // the manager). The one just added can be between the two.
            let deadline = ContinuousClock.now + .seconds(20)
            var status = try await cluster.status()
            while ContinuousClock.now < deadline, !status.values.allSatisfy({ located in
                guard case .object(let load)? = located.process.load, case .bool(true)? = load["ready"] else { return false }
                return true
            }) {
                try await Task.sleep(for: .milliseconds(200))
                status = try await cluster.status()
            }
            for (name, located) in status where located.process.role == .collab || located.process.role == .manager {
                let ports = listeningPorts(of: Int32(try #require(located.process.pid)))
                // A collab server listens for clients and for its standbys; a manager for zone
                // links; each also serves its metrics on a port of its own.
                #expect(ports.count == (located.process.role == .collab ? 3 : 2), "\(name) listens on \(ports)")
                #expect(ports.allSatisfy { (range.first...range.last).contains($0) }, "\(name) listens on \(ports)")
            }
            for client in [alice, bob, carol, dave] { await client.close() }
            await cluster.stop()
        }
    }

    // Two bugs kept this test disabled until 2026-12-03: a host whose commit failed left its
    // clients connected (they resumed only when their 10 s op answer timeout ran out), and a
    // statement written to a PostgreSQL connection that had just closed was never answered,
    // so the host's commit never returned (PostgresSession). The bound below is the clients'
    // op answer timeout: resuming later means the host did not disconnect them.
    @Test("PostgreSQL's primary is killed and its synchronous replica promoted under a running cluster: the meeting goes on, both clients see one history, nothing acknowledged is lost",
          .timeLimit(.minutes(2)))
    func databaseFailover() async throws {
        let root = FileManager.default.temporaryDirectory.path + "/parley-cluster-ha-" + UUID().uuidString.prefix(8)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (primary, replica) = try await synchronousPair(in: root)
        let storeURL = "postgres://postgres:\(primary.password)@\(primary.host):\(primary.port),\(replica.host):\(replica.port)/parley"
            + "?sslmode=disable&target_session_attrs=read-write&connect_timeout=1&statement_timeout=2"
        try await Self.withCluster(storeURL: storeURL) { cluster, web, _, _ in
            let (meeting, alice, bob) = try await Self.meetingWithTwoClients(at: web, title: "Database failover")
            _ = try await Self.placement(of: meeting, in: cluster)
            let resumeTime = try await Scenario.exchange(alice: alice, bob: bob) {
                kill(primary.pid ?? 0, SIGKILL)
                try await replica.promote()
            }
            print("cluster: PostgreSQL primary killed and replica promoted; every client resumed after \(resumeTime)")
            #expect(resumeTime < Scenario.options(.webSocket).policy.opAnswerTimeout)
            await cluster.stop()
        }
        try? await replica.stop(mode: "immediate")
    }

    /// Found by `parley sim` (seed 8): a host whose commit failed stopped by itself, but the
    /// manager still placed the meeting on its server, which told every client `moved`.
    @Test("one commit the database refuses stops the meeting's host; the manager opens the meeting again and both clients resume, nothing acknowledged lost")
    func commitRefusedOnce() async throws {
        let storeURL = try await TestPostgres.shared.freshDatabase()
        let database = String(storeURL.split(separator: "/").last!.split(separator: "?").first!)
        let postgres = try await TestPostgres.shared.server()
        try await Self.withCluster(storeURL: storeURL) { cluster, web, _, _ in
            let (meeting, alice, bob) = try await Self.meetingWithTwoClients(at: web, title: "Commit refused")
            _ = try await Self.placement(of: meeting, in: cluster)
            let resumeTime = try await Scenario.exchange(alice: alice, bob: bob) {
                // Exactly one write to the log fails: a sequence is not rolled back with it.
                try await postgres.psql("""
                    CREATE SEQUENCE refuse_once;
                    CREATE FUNCTION refuse_once() RETURNS trigger LANGUAGE plpgsql AS $$
                        BEGIN
                            IF nextval('refuse_once') = 1 THEN RAISE EXCEPTION 'injected by the test: one refused write'; END IF;
                            RETURN NULL;
                        END $$;
                    CREATE TRIGGER refuse_once BEFORE INSERT ON log FOR EACH STATEMENT EXECUTE FUNCTION refuse_once();
                    """, database: database)
            }
            let fired = try await postgres.psql("SELECT is_called FROM refuse_once", database: database)
            #expect(fired == "t", "a write to the log was refused")
            print("cluster: one commit refused; every client resumed after \(resumeTime)")
            #expect(resumeTime < Scenario.options(.webSocket).policy.opAnswerTimeout)
            await cluster.stop()
        }
    }

    @Test("with a web front on every machine, the machine of the front the clients use and the machine hosting their meeting are lost at once: the clients find the meeting through another front and resume, nothing acknowledged lost")
    func webFrontLost() async throws {
        try await Self.withCluster({ configuration in
            for index in configuration.machines.indices.dropFirst() {
                let front = NodeName("web-\(configuration.machines[index].name)")
                configuration.processes.append(.init(name: front, role: .web))
                configuration.machines[index].processes.append(front)
            }
        }) { cluster, web, configuration, _ in
            var fronts: [URL] = []
            let deadline = ContinuousClock.now + .seconds(20)
            while fronts.count < configuration.machines.count, ContinuousClock.now < deadline {
                fronts = cluster.publicURLs()
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(fronts.count == configuration.machines.count && fronts.first == web, "fronts: \(fronts)")
            let created = try await ParleyHTTP.createMeeting(server: web, title: "Fronts")
            let bobToken = try await ParleyHTTP.issueToken(server: web, meeting: created.meeting.id, name: "Bob").token
            var aliceOptions = Scenario.options(.webSocket), bobOptions = Scenario.options(.longPolling)
            aliceOptions.otherServers = Array(fronts.dropFirst())
            bobOptions.otherServers = Array(fronts.dropFirst())
            let alice = try MeetingClient(server: web, token: created.hostToken, options: aliceOptions)
            let bob = try MeetingClient(server: web, token: bobToken, options: bobOptions)
            try await alice.connect()
            try await bob.connect()
            let (hostMachine, standbyMachine) = try await Self.placement(of: created.meeting.id, in: cluster)
            let resumeTime = try await Scenario.exchange(alice: alice, bob: bob) {
                // m1 runs the front the clients were given (and the services and a manager).
                async let front = cluster.killMachine("m1")
                async let host = cluster.killMachine(hostMachine)
                _ = try await (front, host)
            }
            let (newHost, _) = try await Self.placement(of: created.meeting.id, in: cluster, hostOnly: true)
            #expect(newHost == standbyMachine)
            print("cluster: machines m1 (the clients' web front) and \(hostMachine) lost; every client resumed after \(resumeTime) through another front, on \(newHost)")
            await cluster.stop()
        }
    }

    /// Runs `body` with a started cluster: the standard three machines, changed by `adjust`,
    /// with the harness's heartbeats, on `storeURL` (a fresh database by default). `body`
    /// stops it; on an error every supervisor's log is recorded and the cluster is stopped here.
    static func withCluster(storeURL given: String? = nil, _ adjust: (inout ZoneConfiguration) -> Void = { _ in },
                            _ body: (ClusterTarget, URL, ZoneConfiguration, String) async throws -> Void) async throws {
        let storeURL = if let given { given } else { try await TestPostgres.shared.freshDatabase() }
        let directory = try HarnessDirectory()
        defer { directory.remove() }
        var configuration = ClusterTarget.standardConfiguration(storeURL: storeURL)
        configuration.heartbeat.intervalMs = ZoneHarness.heartbeatIntervalMs
        configuration.heartbeat.timeoutMs = ZoneHarness.heartbeatTimeoutMs
        adjust(&configuration)
        let cluster = ClusterTarget(executable: ZoneHarness.binary, directory: directory.path, configuration: configuration,
                                    storeURL: storeURL)
        do {
            try await body(cluster, try await cluster.start(), configuration, directory.path)
        } catch {
            for machine in cluster.machines {
                let log = (try? String(contentsOfFile: cluster.logPath(machine), encoding: .utf8)) ?? ""
                Issue.record("\(machine)'s supervisor log:\n\(log.suffix(3_000))")
                // And what its processes said that was worth a warning.
                let logs = directory.path + "/machines/\(machine)/logs"
                for file in (try? FileManager.default.contentsOfDirectory(atPath: logs)) ?? [] {
                    let lines = ((try? String(contentsOfFile: logs + "/" + file, encoding: .utf8)) ?? "")
                        .split(separator: "\n").filter { !$0.contains(" debug ") && !$0.contains(" trace ") }
                    Issue.record("\(machine)/\(file):\n\(lines.suffix(40).joined(separator: "\n"))")
                }
            }
            await cluster.stop()
            throw error
        }
    }

    /// A new meeting with Alice (its host, on WebSocket) and Bob (on long-polling) in it.
    static func meetingWithTwoClients(at web: URL, title: String) async throws -> (MeetingID, MeetingClient, MeetingClient) {
        let created = try await ParleyHTTP.createMeeting(server: web, title: title)
        let bobToken = try await ParleyHTTP.issueToken(server: web, meeting: created.meeting.id, name: "Bob").token
        let alice = try MeetingClient(server: web, token: created.hostToken, options: Scenario.options(.webSocket))
        let bob = try MeetingClient(server: web, token: bobToken, options: Scenario.options(.longPolling))
        try await alice.connect()
        try await bob.connect()
        return (created.meeting.id, alice, bob)
    }

    /// `parley ctl status --json` on one machine: every process it lists and its machine, once
    /// it lists `expecting` of them (the other machines publish every second).
    static func clusterStatus(from data: String, expecting: Int) async throws -> [String: String] {
        struct Report: Decodable { var processes: [ProcessStatus] }
        let deadline = ContinuousClock.now + .seconds(10)
        var last: [String: String] = [:]
        while ContinuousClock.now < deadline {
            let result = try await ZoneHarness.parley(["ctl", "status", "--json", "--data", data])
            if result.status == .exited(0), let report = try? JSONDecoder().decode(Report.self, from: Data(result.output.utf8)) {
                last = Dictionary(report.processes.map { ($0.name.rawValue, $0.machine ?? "-") }, uniquingKeysWith: { first, _ in first })
                if last.count >= expecting { return last }
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        return last
    }

    /// The machines of the meeting's host and standby, once both are placed (the host's
    /// alone with `hostOnly`).
    /// `awayFrom`: a machine cut off, whose host still believes it hosts the meeting.
    static func placement(of meeting: MeetingID, in cluster: ClusterTarget, hostOnly: Bool = false,
                          awayFrom cutOff: String? = nil) async throws -> (String, String) {
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            let status = try await cluster.status().values
            if let host = status.first(where: { $0.process.hosts(meeting) && $0.process.state == .running && $0.machine != cutOff }) {
                if hostOnly { return (host.machine, "") }
                if let standby = status.first(where: { $0.process.follows(meeting) }) { return (host.machine, standby.machine) }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw HarnessFailure("no host and standby for \(meeting) within 20 s")
    }
}

/// The TCP ports process `pid` listens on: its sockets (`/proc/PID/fd`) that its network
/// namespace's tables (`/proc/PID/net/tcp`, `tcp6`) list in state LISTEN.
func listeningPorts(of pid: Int32) -> Set<Int> {
    let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
    let inodes = Set(fds.compactMap { fd -> String? in
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"),
              target.hasPrefix("socket:[") else { return nil }
        return String(target.dropFirst(8).dropLast())
    })
    var ports = Set<Int>()
    for table in ["tcp", "tcp6"] {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/net/\(table)", encoding: .utf8)) ?? ""
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            // local_address is ADDR:PORT in hex; st 0A is LISTEN; the inode is field 9.
            guard fields.count > 9, fields[3] == "0A", inodes.contains(String(fields[9])),
                  let port = fields[1].split(separator: ":").last.flatMap({ Int($0, radix: 16) }) else { continue }
            ports.insert(port)
        }
    }
    return ports
}
