/// What a zone runs and how it is watched: the processes, their heartbeats, how they are
/// restarted, and when more collaboration servers are added.
///
/// `parley serve` reads it with ``read(_:testFaultsEnabled:)``: flags over `PARLEY_…`
/// environment variables over the `--config` file over ``standard``. Any key may be left out.
/// (The synthesized `Codable` is for a whole configuration, as the supervisor hands it to its
/// processes; a partial one is read through ``ConfigurationSources``.)
public struct ZoneConfiguration: Codable, Equatable, Sendable {
    /// One logical server to run.
    public struct ProcessSpec: Codable, Equatable, Sendable {
        public var name: NodeName
        public var role: NodeRole
        /// For `services` processes: which services this one runs. Empty means all three.
        public var services: [ZoneService]

        public init(name: NodeName, role: NodeRole, services: [ZoneService] = []) {
            self.name = name
            self.role = role
            self.services = services
        }

        /// The services this process runs.
        public var runs: [ZoneService] {
            role == .services ? (services.isEmpty ? ZoneService.allCases : services) : []
        }
    }

    public struct Heartbeat: Codable, Equatable, Sendable {
        /// How often every process reports to the supervisor and to the manager.
        public var intervalMs: Int = 200
        /// A process silent this long is hung: the manager fails its meetings over and the
        /// supervisor kills and replaces it.
        public var timeoutMs: Int = 1_000
        /// The supervisor kills a silent process after this long; unset, at `timeoutMs`.
        /// Longer keeps a hung process alive for inspection (its meetings have moved already).
        public var killAfterMs: Int?
        public init() {}

        public var killAfter: Int { killAfterMs ?? timeoutMs }
    }

    /// OTP-style: restarts back off exponentially, and a process that needs more than
    /// `maxRestarts` restarts within `windowSeconds` is given up on, loudly.
    public struct Restart: Codable, Equatable, Sendable {
        public var initialBackoffMs: Int = 100
        public var maxBackoffMs: Int = 5_000
        public var maxRestarts: Int = 5
        public var windowSeconds: Int = 60
        /// A process that has run this long without trouble starts again from the initial backoff.
        public var stableAfterSeconds: Int = 30
        public init() {}
    }

    public struct Scaling: Codable, Equatable, Sendable {
        /// When every collaboration server carries more client connections than this, the
        /// manager asks the supervisor for another one.
        public var connectionsPerServer: Int = 2_000
        /// The most collaboration servers the zone will run, counting those in `processes`.
        public var maxCollabServers: Int = 4
        /// Edges: any collaboration server serves any meeting's participants from a copy it
        /// keeps of the meeting, which follows the host; the locator spreads one meeting's
        /// participants over servers, and a host failover is only a pause for those on edges.
        public var edges: Bool = false
        /// With edges on, the locator sends a meeting's participants evenly to the servers
        /// holding a copy of it already until it has sent each this many, then adds another.
        public var connectionsPerCopy: Int = 200
        /// With edges on, a server drops its copy of a meeting hosted elsewhere once none of
        /// the meeting's participants has been attached to it for this long.
        public var edgeUnusedSeconds: Int = 30
        public init() {}
    }

    /// What every server of the zone allows its clients: the limits `parley serve --single`
    /// takes as options. A key left out keeps the server's default (see `parley serve --help`).
    public struct Clients: Codable, Equatable, Sendable {
        public var maxFrameBytes: Int?
        public var framesPerSecond: Int?
        public var burst: Int?
        public var sendQueueFrames: Int?
        public var meetingQueueDepth: Int?
        public var pendingHellos: Int?
        public var webSocketPingSeconds: Int?
        public var snapshotEveryEntries: Int?
        public var tokenLifetimeSeconds: Int?
        /// If set, creating meetings and issuing tokens requires `Authorization: Bearer <apiKey>`.
        public var apiKey: String?
        public var fsyncEveryCommit: Bool?
        /// A new connection's first request head must be complete within this (10 s).
        public var headerTimeoutSeconds: Int?
        /// An HTTP connection with no request in progress is closed after this (60 s).
        public var httpIdleTimeoutSeconds: Int?
        public init() {}
    }

    /// Faults a test injects on purpose, to check that the zone survives them. Never for
    /// production: a zone refuses a configuration with this section unless it is started with
    /// `--enable-test-faults`, and every process it affects says so loudly in its log.
    public struct TestFaults: Codable, Equatable, Sendable {
        /// A chat op whose text is exactly this crashes the collaboration server applying it
        /// (to test poison-op quarantine).
        public var crashOnChatText: String?
        /// When true, a chat op whose text is exactly `corrupt NAME` is kept in the state of
        /// the collaboration server NAME under another text, as a bug would: its copy of the
        /// meeting (or the meeting it hosts) disagrees with the others at the next checkpoint.
        public var corruptByChat: Bool?
        public init(crashOnChatText: String? = nil, corruptByChat: Bool? = nil) {
            self.crashOnChatText = crashOnChatText
            self.corruptByChat = corruptByChat
        }
    }

    /// One machine of a cluster: a zone whose processes run on several machines, each under
    /// its own supervisor (`parley serve --config cluster.json --machine NAME`), sharing one
    /// PostgreSQL store.
    public struct Machine: Codable, Equatable, Sendable {
        public var name: String
        /// The address this machine's processes listen on and give out, to clients and to
        /// the other machines.
        public var address: String
        /// The processes (of ``ZoneConfiguration/processes``) this machine runs.
        public var processes: [NodeName]

        public init(name: String, address: String, processes: [NodeName]) {
            self.name = name
            self.address = address
            self.processes = processes
        }
    }

    /// Where the zone keeps its meetings (see `StoreLocation`): every process of the zone,
    /// on every machine, opens the same store.
    public struct StoreSettings: Codable, Equatable, Sendable {
        /// `sqlite:` (the default: the data directory's SQLite file) or
        /// `postgres://user:password@host:port/database`. `--store` and `PARLEY_STORE_URL`
        /// override it.
        public var url: String?

        public init(url: String? = nil) { self.url = url }
    }

    /// TLS on the ports clients use (the web front's and the collab servers'): a certificate
    /// the clients trust, such as one from a public CA. Unset, clients connect over plain
    /// HTTP, as behind a TLS-terminating proxy. `--tls-cert` and `--tls-key` override it.
    /// (Links between machines use the cluster's own certificates; see `ZonePaths.tlsDirectory`.)
    public struct ClientTLS: Codable, Equatable, Sendable {
        /// The certificate chain, PEM, leaf first.
        public var certificate: String
        /// Its private key, PEM.
        public var key: String

        public init(certificate: String, key: String) {
            self.certificate = certificate
            self.key = key
        }
    }

    /// Every process serves its metrics in the Prometheus text format on a listener of its
    /// own (a port from `ports`, or one the system chooses), at `path`; `parley ctl status`
    /// shows each one's address (`metrics`). See docs/operations.md.
    public struct MetricsSettings: Codable, Equatable, Sendable {
        public var enabled: Bool = true
        public var path: String = "/metrics"
        public init() {}
    }

    /// How every process writes its log, and how the supervisor keeps the per-process files
    /// (`DATA/logs/NAME.log`) from growing without bound.
    public struct LogSettings: Codable, Equatable, Sendable {
        /// `text` (for people) or `json` (one object per line, for a log pipeline);
        /// `--log-format` overrides it.
        public var format: String = "text"
        /// A process's log file is rotated once it is larger than this.
        public var maxFileBytes: Int = 50 << 20
        /// Rotated files kept (`NAME.log.1` the newest); older ones are deleted.
        public var keepFiles: Int = 5
        public init() {}
    }

    /// Spans (OpenTelemetry) for each op's path and for failovers, exported over OTLP/HTTP to
    /// a collector. Off by default. See docs/operations.md, "Tracing".
    public struct TracingSettings: Codable, Equatable, Sendable {
        public var enabled: Bool = false
        /// The collector's OTLP/HTTP address; spans are posted to `endpoint/v1/traces`.
        public var endpoint: String = "http://127.0.0.1:4318"
        /// `http/protobuf` or `http/json`.
        public var `protocol`: String = "http/protobuf"
        /// The share of traces kept, 0...1: an op's trace is sampled where it starts.
        public var sampleRatio: Double = 1.0
        /// How often a batch of finished spans is sent.
        public var exportDelayMs: Int = 1_000
        public init() {}
    }

    public struct License: Codable, Equatable, Sendable {
        /// Participants present at once across the whole zone.
        public var maxParticipants: Int = 10_000
        public init() {}
    }

    /// The address every process binds and that clients are sent to.
    public var host: String = "127.0.0.1"
    /// The web server's port: the one address clients need (API and locator).
    public var publicPort: Int = 8080
    public var processes: [ProcessSpec] = ZoneConfiguration.standardProcesses
    public var heartbeat = Heartbeat()
    public var restart = Restart()
    public var scaling = Scaling()
    public var license = License()
    public var clients = Clients()
    public var web = WebSettings()
    public var store = StoreSettings()
    public var metrics = MetricsSettings()
    public var logs = LogSettings()
    public var tracing = TracingSettings()
    /// TLS for clients; nil serves them plain HTTP.
    public var tls: ClientTLS?
    /// The ports every other listener of the zone takes (collab servers' client and zone
    /// ports, the managers' zone ports, every process's metrics port), so that a firewall
    /// can allow exactly them; nil lets
    /// the system choose.
    public var ports: PortRange?
    /// The machines of a cluster; empty for a zone on one machine.
    public var machines: [Machine] = []
    /// In a cluster, the machine this copy of the configuration runs on: set by `--machine`,
    /// and in the configuration the supervisor hands its processes.
    public var machine: String?
    /// An operation that has crashed this many hosting processes is rejected from then on.
    public var poisonAfterCrashes: Int = 2
    /// Test-only; see ``TestFaults``.
    public var testFaults: TestFaults?

    public init() {}

    public static let standard = ZoneConfiguration()

    public static let standardProcesses: [ProcessSpec] = [
        ProcessSpec(name: "manager-1", role: .manager),
        ProcessSpec(name: "manager-2", role: .manager),
        ProcessSpec(name: "collab-1", role: .collab),
        ProcessSpec(name: "collab-2", role: .collab),
        ProcessSpec(name: "web", role: .web),
        ProcessSpec(name: "services", role: .services),
    ]

    /// How clients reach this zone's servers: `https` when it serves them TLS.
    public var clientScheme: String { tls == nil ? "http" : "https" }

    public func process(named name: NodeName) -> ProcessSpec? { processes.first { $0.name == name } }

    /// The machine that runs `process`, in a cluster.
    public func machine(of process: NodeName) -> String? { machines.first { $0.processes.contains(process) }?.name }

    /// The processes this supervisor runs: all of them, or this machine's in a cluster.
    public var localProcesses: [ProcessSpec] {
        guard let machine, let mine = machines.first(where: { $0.name == machine }) else { return processes }
        return processes.filter { mine.processes.contains($0.name) }
    }

    /// This configuration as machine `name` runs it: `machine` set, and `host` (what its
    /// processes bind and give out) the machine's address.
    /// - Throws: ``UnknownMachine`` when the configuration has no such machine.
    public func share(of name: String) throws(UnknownMachine) -> ZoneConfiguration {
        guard let machine = machines.first(where: { $0.name == name }) else {
            throw UnknownMachine(name: name, known: machines.map(\.name))
        }
        var share = self
        share.machine = name
        share.host = machine.address
        return share
    }

    public struct UnknownMachine: Error, CustomStringConvertible {
        public var name: String
        public var known: [String]
        public var description: String {
            known.isEmpty ? "--machine \(name): the configuration names no machines (add a \"machines\" section)"
                : "--machine \(name): the configuration has no such machine (it has \(known.joined(separator: ", ")))"
        }
    }

    /// Every problem with the configuration, worded for the operator who wrote it.
    /// - Parameter testFaultsEnabled: the zone was started with `--enable-test-faults`;
    ///   without it a `testFaults` section is refused.
    public func problems(testFaultsEnabled: Bool = false) -> [String] {
        var problems: [String] = []
        if testFaults != nil, !testFaultsEnabled {
            problems.append("testFaults makes processes crash on purpose and is for tests only: remove it, "
                            + "or start the zone with --enable-test-faults")
        }
        var seen: Set<NodeName> = []
        for spec in processes {
            if !seen.insert(spec.name).inserted { problems.append("process name '\(spec.name)' is used twice") }
            if spec.name.rawValue.isEmpty || spec.name.rawValue.contains(where: { !($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) {
                problems.append("process name '\(spec.name)' may only use letters, digits, '-' and '_'")
            }
            if spec.role != .services && !spec.services.isEmpty {
                problems.append("process '\(spec.name)' lists services but its role is \(spec.role.rawValue)")
            }
        }
        let count = { (role: NodeRole) in processes.count { $0.role == role } }
        if count(.manager) < 1 { problems.append("a zone needs at least one manager process") }
        if count(.collab) < 1 { problems.append("a zone needs at least one collab process") }
        if machines.isEmpty {
            // One machine: the web process alone binds the public port.
            if count(.web) != 1 { problems.append("a zone needs exactly one web process, found \(count(.web))") }
        } else {
            // A cluster may run a web front on several machines (documents and accounts are in
            // the shared store), so that clients keep a way in when one machine is lost.
            if count(.web) < 1 { problems.append("a cluster needs at least one web process") }
            for machine in machines {
                let fronts = machine.processes.filter { name in processes.contains { $0.name == name && $0.role == .web } }
                if fronts.count > 1 {
                    problems.append("machine '\(machine.name)' runs \(fronts.count) web processes; it may run one (they share the public port)")
                }
            }
        }
        for service in ZoneService.allCases {
            let runners = processes.count { $0.runs.contains(service) }
            if runners != 1 { problems.append("the \(service.rawValue) service must run in exactly one process, found \(runners)") }
        }
        if !(1...65_535).contains(publicPort) && publicPort != 0 { problems.append("publicPort \(publicPort) is not a port") }
        if let ports {
            if !(1...65_535).contains(ports.first) || !(1...65_535).contains(ports.last) || ports.first > ports.last {
                problems.append("ports must be a range of TCP ports, first <= last (it is \(ports.first)-\(ports.last))")
            } else if (ports.first...ports.last).contains(publicPort) {
                problems.append("ports (\(ports.first)-\(ports.last)) must not include publicPort \(publicPort)")
            }
        }
        if heartbeat.intervalMs <= 0 {
            problems.append("heartbeat.intervalMs must be at least 1 (it is \(heartbeat.intervalMs))")
        } else if heartbeat.timeoutMs <= heartbeat.intervalMs {
            problems.append("heartbeat.timeoutMs (\(heartbeat.timeoutMs)) must exceed heartbeat.intervalMs (\(heartbeat.intervalMs))")
        }
        if restart.initialBackoffMs <= 0 || restart.maxBackoffMs < restart.initialBackoffMs {
            problems.append("restart.maxBackoffMs must be at least restart.initialBackoffMs, and both positive")
        }
        if restart.maxRestarts < 1 || restart.windowSeconds < 1 { problems.append("restart.maxRestarts and restart.windowSeconds must be at least 1") }
        if scaling.connectionsPerServer < 1 { problems.append("scaling.connectionsPerServer must be at least 1") }
        if scaling.connectionsPerCopy < 1 { problems.append("scaling.connectionsPerCopy must be at least 1") }
        for (key, value) in [("clients.headerTimeoutSeconds", clients.headerTimeoutSeconds),
                             ("clients.httpIdleTimeoutSeconds", clients.httpIdleTimeoutSeconds)] {
            if let value, value < 1 { problems.append("\(key) must be at least 1 (it is \(value))") }
        }
        if !["text", "json"].contains(logs.format) { problems.append("logs.format must be text or json (it is '\(logs.format)')") }
        if logs.maxFileBytes < 4_096 { problems.append("logs.maxFileBytes must be at least 4096 (it is \(logs.maxFileBytes))") }
        if logs.keepFiles < 1 { problems.append("logs.keepFiles must be at least 1 (it is \(logs.keepFiles))") }
        if !["http/protobuf", "http/json"].contains(tracing.protocol) {
            problems.append("tracing.protocol must be http/protobuf or http/json (it is '\(tracing.protocol)')")
        }
        if !(0...1).contains(tracing.sampleRatio) { problems.append("tracing.sampleRatio must be 0...1 (it is \(tracing.sampleRatio))") }
        if tracing.exportDelayMs < 10 { problems.append("tracing.exportDelayMs must be at least 10 (it is \(tracing.exportDelayMs))") }
        if !(tracing.endpoint.hasPrefix("http://") || tracing.endpoint.hasPrefix("https://")) {
            problems.append("tracing.endpoint must be an http:// or https:// address (it is '\(tracing.endpoint)')")
        }
        if !metrics.path.hasPrefix("/") { problems.append("metrics.path must start with / (it is '\(metrics.path)')") }
        if scaling.edgeUnusedSeconds < 1 { problems.append("scaling.edgeUnusedSeconds must be at least 1") }
        if scaling.maxCollabServers < count(.collab) {
            problems.append("scaling.maxCollabServers (\(scaling.maxCollabServers)) is below the \(count(.collab)) collab processes configured")
        }
        if license.maxParticipants < 1 { problems.append("license.maxParticipants must be at least 1") }
        if poisonAfterCrashes < 1 { problems.append("poisonAfterCrashes must be at least 1") }
        if let kill = heartbeat.killAfterMs, kill < heartbeat.timeoutMs {
            problems.append("heartbeat.killAfterMs must be at least heartbeat.timeoutMs")
        }
        let positive: [(String, Int?)] = [
            ("maxFrameBytes", clients.maxFrameBytes), ("framesPerSecond", clients.framesPerSecond), ("burst", clients.burst),
            ("meetingQueueDepth", clients.meetingQueueDepth),
            ("pendingHellos", clients.pendingHellos), ("webSocketPingSeconds", clients.webSocketPingSeconds),
            ("snapshotEveryEntries", clients.snapshotEveryEntries), ("tokenLifetimeSeconds", clients.tokenLifetimeSeconds),
        ]
        for (key, value) in positive where (value ?? 1) < 1 { problems.append("clients.\(key) must be at least 1") }
        if let bytes = clients.maxFrameBytes, bytes < 1_024 { problems.append("clients.maxFrameBytes must be at least 1024") }
        if let frames = clients.sendQueueFrames, frames < 16 { problems.append("clients.sendQueueFrames must be at least 16") }
        problems += web.problems()
        problems += machineProblems()
        return problems
    }

    private func machineProblems() -> [String] {
        guard !machines.isEmpty else { return [] }
        var problems: [String] = []
        var names: Set<String> = []
        var placed: [NodeName: String] = [:]
        for machine in machines {
            if !names.insert(machine.name).inserted { problems.append("machine name '\(machine.name)' is used twice") }
            if machine.name.isEmpty || machine.name.contains(where: { !($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) {
                problems.append("machine name '\(machine.name)' may only use letters, digits, '-' and '_'")
            }
            if machine.address.isEmpty { problems.append("machine '\(machine.name)' has no address") }
            for member in machine.processes {
                if process(named: member) == nil {
                    problems.append("machine '\(machine.name)' lists process '\(member)', which is not in processes")
                }
                if let other = placed.updateValue(machine.name, forKey: member) {
                    problems.append("process '\(member)' is on two machines: '\(other)' and '\(machine.name)'")
                }
            }
        }
        for spec in processes where placed[spec.name] == nil {
            problems.append("process '\(spec.name)' is on no machine: list it under one of the machines")
        }
        let managerMachines = Set(processes.filter { $0.role == .manager }.compactMap { placed[$0.name] })
        if machines.count > 1 && managerMachines.count < 2 {
            problems.append("managers must run on at least two machines, so that losing one machine leaves a manager")
        }
        if let machine, !names.contains(machine) { problems.append("machine '\(machine)' is not among the machines") }
        return problems
    }
}
