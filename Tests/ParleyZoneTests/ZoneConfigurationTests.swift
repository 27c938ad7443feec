import FoundationEssentials
import ParleyZone
import Testing

@Suite("Zone configuration")
struct ZoneConfigurationTests {
    @Test("the standard zone is valid: two managers, two collab servers, web, and one services process")
    func standardIsValid() {
        let standard = ZoneConfiguration.standard
        #expect(standard.problems() == [])
        #expect(standard.processes.count { $0.role == .manager } == 2)
        #expect(standard.processes.count { $0.role == .collab } == 2)
        #expect(standard.process(named: "services")?.runs == ZoneService.allCases)
    }

    @Test("a file may leave out any key, at any depth")
    func partialFile() throws {
        let json = #"""
            {"publicPort": 9000, "heartbeat": {"timeoutMs": 2000}, "restart": {"maxRestarts": 3},
             "clients": {"maxFrameBytes": 4096, "apiKey": "k"}}
            """#
        let configuration = try JSONDecoder().decode(ZoneConfiguration.self, from: Data(json.utf8))
        var expected = ZoneConfiguration.standard
        expected.publicPort = 9000
        expected.heartbeat.timeoutMs = 2000
        expected.restart.maxRestarts = 3
        expected.clients.maxFrameBytes = 4096
        expected.clients.apiKey = "k"
        #expect(configuration == expected)
        #expect(configuration.problems().isEmpty)
    }

    @Test("every mistake is reported in words the operator can act on")
    func problemsAreSpecific() throws {
        let json = #"""
        {"processes": [
          {"name": "collab-1", "role": "collab"}, {"name": "collab-1", "role": "collab"},
          {"name": "web", "role": "web", "services": ["log"]},
          {"name": "svc a", "role": "services", "services": ["log", "ping"]}
        ], "heartbeat": {"intervalMs": 500, "timeoutMs": 400, "killAfterMs": 300}, "clients": {"burst": 0, "maxFrameBytes": 100}}
        """#
        let problems = try JSONDecoder().decode(ZoneConfiguration.self, from: Data(json.utf8)).problems()
        #expect(problems == [
            "process name 'collab-1' is used twice",
            "process 'web' lists services but its role is web",
            "process name 'svc a' may only use letters, digits, '-' and '_'",
            "a zone needs at least one manager process",
            "the license service must run in exactly one process, found 0",
            "heartbeat.timeoutMs must exceed heartbeat.intervalMs, and both be positive",
            "heartbeat.killAfterMs must be at least heartbeat.timeoutMs",
            "clients.burst must be at least 1",
            "clients.maxFrameBytes must be at least 1024",
        ])
    }

    @Test("test fault injection is refused unless the zone is started with --enable-test-faults")
    func testFaultsNeedTheFlag() throws {
        let json = #"{"testFaults": {"crashOnChatText": "boom"}}"#
        let configuration = try JSONDecoder().decode(ZoneConfiguration.self, from: Data(json.utf8))
        #expect(configuration.testFaults?.crashOnChatText == "boom")
        #expect(configuration.problems() == [
            "testFaults makes processes crash on purpose and is for tests only: remove it, or start the zone with --enable-test-faults",
        ])
        #expect(configuration.problems(testFaultsEnabled: true) == [])
        #expect(ZoneConfiguration.standard.testFaults == nil)
    }

    @Test("a cluster names its machines: each process on exactly one, managers on two machines; a machine's share binds its address")
    func machines() throws {
        let json = #"""
            {"store": {"url": "postgres://parley@db/parley"},
             "machines": [
               {"name": "m1", "address": "10.0.0.1", "processes": ["manager-1", "collab-1", "web", "services"]},
               {"name": "m2", "address": "10.0.0.2", "processes": ["manager-2", "collab-2"]}]}
            """#
        let cluster = try JSONDecoder().decode(ZoneConfiguration.self, from: Data(json.utf8))
        #expect(cluster.problems() == [])
        #expect(cluster.machine(of: "collab-2") == "m2")
        let share = try cluster.share(of: "m2")
        #expect(share.host == "10.0.0.2" && share.machine == "m2")
        #expect(share.localProcesses.map(\.name) == ["manager-2", "collab-2"])
        #expect(share.problems() == [])
        #expect(throws: ZoneConfiguration.UnknownMachine.self) { try cluster.share(of: "m9") }

        var wrong = cluster
        wrong.machines[1].processes = ["collab-2", "collab-1", "ghost"]
        #expect(wrong.problems() == [
            "process 'collab-1' is on two machines: 'm1' and 'm2'",
            "machine 'm2' lists process 'ghost', which is not in processes",
            "process 'manager-2' is on no machine: list it under one of the machines",
            "managers must run on at least two machines, so that losing one machine leaves a manager",
        ])
    }

    @Test("a cluster may run a web front on several machines, one per machine; a zone on one machine runs exactly one")
    func webFronts() throws {
        var cluster = ZoneConfiguration()
        cluster.store.url = "postgres://parley@db/parley"
        cluster.processes.append(.init(name: "web-2", role: .web))
        cluster.machines = [
            .init(name: "m1", address: "10.0.0.1", processes: ["manager-1", "collab-1", "web", "services"]),
            .init(name: "m2", address: "10.0.0.2", processes: ["manager-2", "collab-2", "web-2"]),
        ]
        #expect(cluster.problems() == [])
        var crowded = cluster
        crowded.processes.append(.init(name: "web-3", role: .web))
        crowded.machines[1].processes.append("web-3")
        #expect(crowded.problems() == ["machine 'm2' runs 2 web processes; it may run one (they share the public port)"])

        var oneMachine = ZoneConfiguration()
        oneMachine.processes.append(.init(name: "web-2", role: .web))
        #expect(oneMachine.problems() == ["a zone needs exactly one web process, found 2"])
    }
}

@Suite("Port ranges")
struct PortRangeTests {
    @Test("a process tries every port of the range once, from a place its name fixes, the same on every run")
    func order() {
        let range = PortRange(first: 7_100, last: 7_109)
        let collab = range.order(for: "collab-2")
        #expect(collab.sorted() == Array(7_100...7_109))
        #expect(collab == range.order(for: "collab-2"))
        #expect(zip(collab, collab.dropFirst()).allSatisfy { $1 == $0 + 1 || ($0 == 7_109 && $1 == 7_100) }, "\(collab)")
        #expect(Set(["manager-1", "manager-2", "collab-1", "collab-2"].map { range.order(for: $0).first! }).count > 1,
                "processes starting together begin at different ports")
        #expect(PortRange(first: 9, last: 9).order(for: "x") == [9])
    }

    @Test("the range must be ports, in order, and leave out the public port")
    func problems() {
        var configuration = ZoneConfiguration()
        configuration.ports = PortRange(first: 7_100, last: 7_199)
        #expect(configuration.problems() == [])
        configuration.ports = PortRange(first: 7_200, last: 7_100)
        #expect(configuration.problems() == ["ports must be a range of TCP ports, first <= last (it is 7200-7100)"])
        configuration.ports = PortRange(first: 8_000, last: 8_100)
        #expect(configuration.problems() == ["ports (8000-8100) must not include publicPort 8080"])
    }
}
