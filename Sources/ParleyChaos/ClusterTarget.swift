import Foundation
import ParleyNode
import ParleySupervisor
import ParleyZone

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A zone spread over several machines, on one box: each "machine" is its own supervisor
/// (`parley zone --config cluster.json --machine NAME`) on its own loopback address
/// (127.0.0.1, 127.0.0.2, ...), with its own data directory made by `parley cluster init`,
/// all sharing one PostgreSQL store. Besides the zone's process faults it can lose a whole
/// machine: every process of it, supervisor included, killed at once.
public actor ClusterTarget: SignalledTarget {
    public nonisolated let name = "cluster"
    public nonisolated let configuration: ZoneConfiguration
    /// The roles a process fault may hit.
    public nonisolated let roles: Set<NodeRole>
    private let executable: String
    private let directory: String
    private let storeURL: String
    /// The machines' network namespaces, when they have them (partitions need them).
    public nonisolated let network: MachineNetwork?
    private var supervisors: [String: ChildProcess] = [:]

    /// The standard local cluster: three machines. The first runs the web front, the
    /// services and a manager, and no collab server, so that the address clients use
    /// survives the loss of any machine hosting meetings; the other two run a manager and a
    /// collab server each. Heartbeats as in `parley chaos`.
    /// - Parameter address: machine N's address (from 1); loopback 127.0.0.N by default.
    public static func standardConfiguration(machines: Int = 3, storeURL: String,
                                             address: (Int) -> String = { "127.0.0.\($0)" }) -> ZoneConfiguration {
        precondition(machines >= 3, "a local cluster has at least three machines")
        var configuration = ZoneConfiguration()
        configuration.publicPort = 0
        configuration.store.url = storeURL
        configuration.processes = [
            .init(name: "manager-1", role: .manager), .init(name: "web", role: .web), .init(name: "services", role: .services),
        ]
        configuration.machines = [Machine(name: "m1", address: address(1), processes: ["manager-1", "web", "services"])]
        for index in 2...machines {
            let manager = NodeName("manager-\(index)"), collab = NodeName("collab-\(index)")
            configuration.processes += [.init(name: manager, role: .manager), .init(name: collab, role: .collab)]
            configuration.machines.append(Machine(name: "m\(index)", address: address(index), processes: [manager, collab]))
        }
        configuration.scaling.maxCollabServers = machines - 1
        return configuration
    }

    public typealias Machine = ZoneConfiguration.Machine

    /// - Parameters:
    ///   - executable: the `parley` binary.
    ///   - directory: holds `cluster.json`, one data directory per machine (`machines/NAME`,
    ///     with its processes' logs under `logs/`) and each supervisor's log (`NAME.log`).
    ///   - storeURL: the PostgreSQL database the machines share.
    ///   - network: the machines' namespaces (machine N in `network`'s machine N), or nil for
    ///     machines on loopback addresses.
    public init(executable: String, directory: String, configuration: ZoneConfiguration, storeURL: String,
                network: MachineNetwork? = nil, roles: Set<NodeRole> = [.collab, .manager]) {
        self.executable = executable
        self.network = network
        self.directory = directory
        self.configuration = configuration
        self.storeURL = storeURL
        self.roles = roles
    }

    public nonisolated var machines: [String] { configuration.machines.map(\.name) }
    private nonisolated func data(_ machine: String) -> String { directory + "/machines/" + machine }
    public nonisolated func logPath(_ machine: String) -> String { directory + "/" + machine + ".log" }
    private nonisolated var configPath: String { directory + "/cluster.json" }

    public func start() async throws -> URL {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try encoder.encode(configuration).write(to: URL(fileURLWithPath: configPath))
        let initialized = try await ChildProcess.start(
            executable: executable, arguments: ["cluster", "init", "--config", configPath, "--out", directory + "/machines"],
            logPath: directory + "/cluster-init.log")
        guard await initialized.waitForExit(within: .seconds(30)), initialized.terminationStatus == .some(.some(.exited(0))) else {
            throw ChaosError.target("parley cluster init failed; see \(directory)/cluster-init.log")
        }
        for machine in machines { try await startMachine(machine) }
        return try await waitUntilUp()
    }

    /// Starts (or starts again, after ``killMachine(_:)``) the supervisor of `machine`.
    public func startMachine(_ machine: String) async throws {
        var command = (executable, ["zone", "--data", data(machine), "--config", configPath, "--machine", machine,
                                    "--store", storeURL, "--log-level", "info"])
        if let network, let index = machines.firstIndex(of: machine) {
            // `ip netns exec` execs the command: the pid is the supervisor's.
            command = network.inside(machine: index + 1, [command.0] + command.1)
        }
        supervisors[machine] = try await ChildProcess.start(executable: command.0, arguments: command.1, logPath: logPath(machine))
    }

    public func isolateMachine(_ victim: Victim) async throws {
        guard let network, let index = machines.firstIndex(of: victim.name) else {
            throw ChaosError.target("machines on loopback addresses cannot be cut off: partitions need network namespaces (root)")
        }
        try await network.isolate(machine: index + 1)
    }

    public func healMachine(_ victim: Victim) async throws {
        guard let network, let index = machines.firstIndex(of: victim.name) else { return }
        try await network.heal(machine: index + 1)
    }

    /// Every process of the cluster running, and the web front's address known.
    public func waitUntilUp(timeout: Duration = .seconds(60)) async throws -> URL {
        let deadline = ContinuousClock.now + timeout
        var last = "no answer"
        while ContinuousClock.now < deadline {
            do {
                let processes = try await status()
                let expected = Set(configuration.processes.map(\.name))
                if expected.isSubset(of: Set(processes.keys)), processes.values.allSatisfy({ $0.process.state == .running }),
                   let url = publicURL() {
                    return url
                }
                last = processes.values.map { "\($0.process.name) \($0.process.state.rawValue)" }.sorted().joined(separator: ", ")
            } catch {
                last = "\(error)"
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ChaosError.target("the cluster did not come up within \(timeout) (\(last)); see \(directory)")
    }

    /// The address clients use: the web front's, as it wrote it.
    public nonisolated func publicURL() -> URL? {
        guard let web = configuration.processes.first(where: { $0.role == .web }),
              let machine = configuration.machine(of: web.name),
              let text = try? String(contentsOfFile: ZonePaths(data: data(machine)).publicURL, encoding: .utf8)
        else { return nil }
        return URL(string: text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Every web front's address, as each wrote it, in the configuration's order of
    /// processes; fronts that have not written one yet are left out.
    public nonisolated func publicURLs() -> [URL] {
        configuration.processes.filter { $0.role == .web }.compactMap { web in
            guard let machine = configuration.machine(of: web.name),
                  let text = try? String(contentsOfFile: ZonePaths(data: data(machine)).publicURL, encoding: .utf8)
            else { return nil }
            return URL(string: text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    /// A process as its machine's supervisor reports it.
    public struct Located: Sendable {
        public var machine: String
        public var process: ProcessStatus
    }

    /// Every process of every machine whose supervisor answers, by name.
    public func status() async throws -> [NodeName: Located] {
        var all: [NodeName: Located] = [:]
        for machine in machines where supervisors[machine].map({ !$0.hasExited }) ?? false {
            let reply = try await ControlClient.command(.status, socketPath: ZonePaths(data: data(machine)).controlSocket,
                                                        timeout: .seconds(5))
            for process in reply.status ?? [] { all[process.name] = Located(machine: machine, process: process) }
        }
        return all
    }

    /// Loses `machine`: SIGKILL to its supervisor and every process it runs, all at once, as
    /// a power cut would. Returns the pids killed.
    @discardableResult
    public func killMachine(_ machine: String) async throws -> [Int32] {
        let reply = try await ControlClient.command(.status, socketPath: ZonePaths(data: data(machine)).controlSocket,
                                                    timeout: .seconds(5))
        var pids = (reply.status ?? []).compactMap { $0.pid.map(Int32.init) }
        if let supervisor = supervisors[machine] { pids.append(supervisor.pid) }
        for pid in pids { Glibc.kill(pid, SIGKILL) }
        _ = await supervisors[machine]?.waitForExit(within: .seconds(10))
        return pids
    }

    // MARK: FaultTarget: process faults, through the machine that runs the process

    /// The processes of the roles a fault may hit, and the machines that run a collab server
    /// (losing the machine of the web front would leave clients no address to come back to:
    /// see the README's cluster section). Nothing while the cluster is still recovering: a
    /// machine down, a process not running, or a hosted meeting without its standby.
    public func victims() async throws -> [Victim] {
        guard supervisors.count == machines.count, supervisors.values.allSatisfy({ !$0.hasExited }) else { return [] }
        let located = try await status().values
        let all = located.map(\.process)
        guard Set(configuration.processes.map(\.name)).isSubset(of: Set(all.map(\.name))),
              all.allSatisfy({ $0.state == .running && $0.pid != nil }) else { return [] }
        let collabs = all.filter { $0.role == .collab }
        let hosted = Set(collabs.flatMap { meetings(in: $0.load, "hosting") })
        let followed = Set(collabs.flatMap { meetings(in: $0.load, "standby") })
        guard hosted.isSubset(of: followed) else { return [] }
        let processes = all.filter { roles.contains($0.role) }
            .map { Victim(name: $0.name.rawValue, role: $0.role.rawValue, pid: Int32($0.pid!)) }
        let hostingMachines = Set(located.filter { $0.process.role == .collab }.map(\.machine))
        let machineVictims = machines.filter(hostingMachines.contains).compactMap { machine in
            supervisors[machine].map { Victim(name: machine, role: Victim.machineRole, pid: $0.pid) }
        }
        return processes + machineVictims
    }

    public func killMachine(_ victim: Victim) async throws {
        try await killMachine(victim.name)
    }

    public func restoreMachine(_ victim: Victim) async throws {
        try await startMachine(victim.name)
    }

    public func restart(_ victim: Victim) async throws {
        guard let machine = configuration.machine(of: NodeName(victim.name)) else { return }
        _ = try await ControlClient.command(.restart(NodeName(victim.name)),
                                            socketPath: ZonePaths(data: data(machine)).controlSocket, timeout: .seconds(5))
    }

    public func notes() -> [String] { [] }

    public func stop() async {
        // Every machine at once: each stops its own processes in order.
        await withTaskGroup(of: Void.self) { group in
            for supervisor in supervisors.values { group.addTask { await supervisor.stop(grace: .seconds(30)) } }
        }
        supervisors = [:]
    }
}
