import Configuration
import Foundation
import ParleyZone
import Testing

/// The configuration `json` (a file named zone.json), `environment` and `flags` describe.
func readConfiguration(_ json: String?, environment: [String: String] = [:], flags: [String: ConfigContent] = [:],
                       testFaultsEnabled: Bool = false) throws(ConfigurationProblems) -> ZoneConfiguration {
    try ZoneConfiguration.read(ConfigurationSources(flags: flags, environment: environment,
                                                    file: json.map { ("zone.json", Data($0.utf8)) }),
                               testFaultsEnabled: testFaultsEnabled)
}

/// What is wrong with that configuration; empty when it is fine.
func configurationProblems(_ json: String?, environment: [String: String] = [:],
                           flags: [String: ConfigContent] = [:]) -> [String] {
    do {
        _ = try readConfiguration(json, environment: environment, flags: flags)
        return []
    } catch {
        return error.problems
    }
}

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
        let configuration = try readConfiguration(json)
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
        #expect(configurationProblems(json) == [
            "process name 'collab-1' is used twice",
            "process 'web' lists services but its role is web",
            "process name 'svc a' may only use letters, digits, '-' and '_'",
            "a zone needs at least one manager process",
            "the license service must run in exactly one process, found 0",
            "heartbeat.timeoutMs (400) must exceed heartbeat.intervalMs (500)",
            "heartbeat.killAfterMs must be at least heartbeat.timeoutMs",
            "clients.burst must be at least 1",
            "clients.maxFrameBytes must be at least 1024",
        ])
    }

    @Test("test fault injection is refused unless the zone is started with --enable-test-faults")
    func testFaultsNeedTheFlag() throws {
        let json = #"{"testFaults": {"crashOnChatText": "boom"}}"#
        let configuration = try readConfiguration(json, testFaultsEnabled: true)
        #expect(configuration.testFaults?.crashOnChatText == "boom")
        #expect(configurationProblems(json) == [
            "testFaults makes processes crash on purpose and is for tests only: remove it, or start the zone with --enable-test-faults",
        ])
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
        let cluster = try readConfiguration(json)
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

    @Test("flags win over the environment, which wins over the file, which wins over the standard values")
    func precedence() throws {
        let file = #"{"publicPort": 9001, "heartbeat": {"intervalMs": 300}, "store": {"url": "sqlite:///file"}}"#
        let environment = ["PARLEY_PUBLIC_PORT": "9002", "PARLEY_STORE_URL": "sqlite:///env", "PATH": "/usr/bin"]
        let flags: [String: ConfigContent] = ["publicPort": .int(9003)]
        let all = try readConfiguration(file, environment: environment, flags: flags)
        #expect(all.publicPort == 9003)
        #expect(all.store.url == "sqlite:///env")
        #expect(all.heartbeat.intervalMs == 300)
        #expect(all.heartbeat.timeoutMs == ZoneConfiguration.standard.heartbeat.timeoutMs)
        #expect(try readConfiguration(file, environment: environment).publicPort == 9002)
        #expect(try readConfiguration(file).publicPort == 9001)
        #expect(try readConfiguration(nil).publicPort == ZoneConfiguration.standard.publicPort)
        // The environment sets nested keys and lists too, and PARLEY_API_KEY still sets the API key.
        let fromEnvironment = try readConfiguration(nil, environment: [
            "PARLEY_CLIENTS_MAX_FRAME_BYTES": "4096", "PARLEY_WEB_OTHER_FRONTS": "https://a.example,https://b.example",
            "PARLEY_API_KEY": "legacy", "PARLEY_SCALING_EDGES": "true",
        ])
        #expect(fromEnvironment.clients.maxFrameBytes == 4096)
        #expect(fromEnvironment.web.otherFronts == ["https://a.example", "https://b.example"])
        #expect(fromEnvironment.clients.apiKey == "legacy")
        #expect(fromEnvironment.scaling.edges)
        #expect(try readConfiguration(nil, environment: ["PARLEY_API_KEY": "legacy", "PARLEY_CLIENTS_API_KEY": "new"]).clients.apiKey == "new")
    }

    @Test("a list in the file replaces the standard one whole; a process without services runs all of them")
    func listsAreWhole() throws {
        let json = #"""
            {"processes": [{"name": "m", "role": "manager"}, {"name": "c", "role": "collab"},
                           {"name": "w", "role": "web"}, {"name": "s", "role": "services"}]}
            """#
        let configuration = try readConfiguration(json)
        #expect(configuration.processes.map(\.name) == ["m", "c", "w", "s"])
        #expect(configuration.process(named: "s")?.runs == ZoneService.allCases)
        #expect(configuration.process(named: "s")?.services == [])
    }

    @Test("an unknown key is refused with its full path, and the key it most likely meant")
    func unknownKeys() {
        let json = #"""
            {"heartbeat": {"intervalMS": 300}, "colour": "blue", "clients": {"maxFrameByte": 4096},
             "processes": [{"name": "manager-1", "role": "manager", "rol": "x"},
                           {"name": "collab-1", "role": "collab"}, {"name": "web", "role": "web"},
                           {"name": "services", "role": "services"}]}
            """#
        #expect(configurationProblems(json) == [
            "clients.maxFrameByte in zone.json is not a setting (did you mean clients.maxFrameBytes?)",
            "colour in zone.json is not a setting",
            "heartbeat.intervalMS in zone.json is not a setting (did you mean heartbeat.intervalMs?)",
            "processes[0].rol in zone.json is not a setting (did you mean processes[0].role?)",
        ])
        #expect(configurationProblems(nil, environment: ["PARLEY_HEARTBEAT_INTERVAL": "300", "PARLEY_WEB_PUBLIC": "/x"]) == [
            "the environment variable PARLEY_HEARTBEAT_INTERVAL is not a setting "
                + "(a zone setting such as heartbeat.intervalMs is PARLEY_HEARTBEAT_INTERVAL_MS)",
        ])
    }

    @Test("a value of the wrong type is refused, naming the key as it was written and what was expected")
    func wrongTypes() {
        let json = #"""
            {"heartbeat": {"intervalMs": "fast"}, "scaling": {"edges": 1}, "publicPort": 80.5,
             "web": {"otherFronts": "https://a.example"}, "processes": [{"name": "c", "role": "collabb"}]}
            """#
        // Every mistake at once, in the order the keys are read.
        #expect(configurationProblems(json) == [
            "publicPort in zone.json: expected an integer",
            "processes[0].role in zone.json: Cannot initialize NodeRole from invalid String value collabb",
            "heartbeat.intervalMs in zone.json: expected an integer",
            "scaling.edges in zone.json: expected true or false",
            "web.otherFronts in zone.json: expected a list of strings",
        ])
        #expect(configurationProblems(nil, environment: ["PARLEY_HEARTBEAT_TIMEOUT_MS": "soon"]) == [
            "PARLEY_HEARTBEAT_TIMEOUT_MS: expected an integer",
        ])
        #expect(configurationProblems("[1, 2]") == ["it must be a JSON object ({ ... }) at the top"])
        #expect(configurationProblems(#"{"publicPort": 80,"#).count == 1)
        #expect(configurationProblems(#"{"processes": [{"name": "a", "role": "web"}, "b"]}"#) == [
            "processes in zone.json: a list may hold strings or objects, not a mix or other kinds",
        ])
    }

    @Test("null and empty sections are accepted as unset; empty environment variables are unset; PARLEY_API_KEY yields to the file")
    func emptiesAndLegacy() throws {
        let nulls = try readConfiguration(#"{"heartbeat": null, "web": {}, "tls": null, "clients": {"apiKey": null}}"#)
        #expect(nulls == .standard)
        let file = #"{"store": {"url": "postgres://parley@db/parley"}, "clients": {"apiKey": "from-file"}}"#
        let read = try readConfiguration(file, environment: ["PARLEY_STORE_URL": "", "PARLEY_API_KEY": "exported"])
        #expect(read.store.url == "postgres://parley@db/parley", "an empty variable does not replace the file's store")
        #expect(read.clients.apiKey == "from-file", "the older PARLEY_API_KEY is under the file")
        #expect(try readConfiguration(nil, environment: ["PARLEY_API_KEY": "exported"]).clients.apiKey == "exported")
    }

    @Test("a section given a plain value is refused, not ignored")
    func sectionGivenAValue() {
        #expect(configurationProblems(#"{"store": "postgres://db/parley", "tracing": true}"#) == [
            "store in zone.json: expected a section ({ ... }), found a value",
            "tracing in zone.json: expected a section ({ ... }), found a value",
        ])
    }

    @Test("typos holding nothing are caught too; #count is not a key; a list cannot be made huge")
    func emptyTyposAndCounts() {
        #expect(configurationProblems(#"{"procesess": [], "heartbeet": {}}"#) == [
            "heartbeet in zone.json is not a setting", "procesess in zone.json is not a setting (did you mean processes?)",
        ])
        #expect(configurationProblems(##"{"processes": {"#count": 3}}"##) == ["processes.#count in zone.json: a key may not contain #"])
        #expect(configurationProblems(nil, environment: ["PARLEY_PROCESSES__COUNT": "1000000000000"]).contains {
            $0.contains("a list of 1000000000000 entries is not a setting")
        })
    }

    @Test("a resolved file from an older version, missing newer sections, is still read")
    func olderResolvedFile() throws {
        var older = try JSONSerialization.jsonObject(with: JSONEncoder().encode(ZoneConfiguration.standard)) as! [String: Any]
        older["tracing"] = nil
        var web = older["web"] as! [String: Any]
        web["admins"] = nil
        older["web"] = web
        let data = try JSONSerialization.data(withJSONObject: older)
        #expect(try ZoneConfiguration.resolved(data, name: "zone.json") == .standard)
    }

    @Test("a value out of range, or settings that contradict each other, are refused naming the key")
    func outOfRange() {
        #expect(configurationProblems(#"{"heartbeat": {"intervalMs": 500, "timeoutMs": 400}}"#) == [
            "heartbeat.timeoutMs (400) must exceed heartbeat.intervalMs (500)",
        ])
        #expect(configurationProblems(nil, environment: ["PARLEY_LOGS_KEEP_FILES": "0"]) == ["logs.keepFiles must be at least 1 (it is 0)"])
        #expect(configurationProblems(nil, flags: ["clients.sendQueueFrames": .int(8)]) == ["clients.sendQueueFrames must be at least 16"])
        #expect(configurationProblems(#"{"tls": {"certificate": "c.pem"}}"#) == ["tls.key in zone.json is required"])
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
