import Foundation
import ParleyNode
import ParleyZone

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A whole zone, `parley serve --data DIR --port 0`: the supervisor and its processes. The
/// victims are the collaboration servers and the managers, as the supervisor's control socket
/// lists them (what `parley ctl status --json` shows). Kills and pauses are signals to their
/// pids; the supervisor replaces what dies or hangs. Restarts are `parley ctl restart NAME`.
public actor ZoneTarget: SignalledTarget {
    public nonisolated let name = "zone"
    /// The roles a fault may hit.
    public nonisolated let roles: Set<NodeRole>
    /// Only collaboration servers that host a meeting are hit (failover measurements: a kill
    /// of a server hosting nothing disrupts no client and tells nothing).
    public nonisolated let hostingOnly: Bool
    private let executable: String
    private let directory: String
    private var data: String { directory + "/data" }
    private var portFile: String { directory + "/zone.port" }
    public nonisolated var logPath: String { directory + "/zone.log" }
    private var socketPath: String { ZonePaths(data: data).controlSocket }
    private var supervisor: ChildProcess?
    private var revived: [String] = []
    /// The zone's configuration; nil runs the standard one.
    private let configuration: ZoneConfiguration?

    /// - Parameters:
    ///   - executable: the `parley` binary.
    ///   - directory: holds the zone's data (`data/`, with every process's log under
    ///     `data/logs/`), the supervisor's log and its port file.
    ///   - roles: the roles a fault may hit.
    ///   - hostingOnly: hit only collaboration servers hosting a meeting.
    ///   - configuration: the zone's configuration (written to `directory/zone.json`); nil
    ///     runs the standard one.
    public init(executable: String, directory: String, roles: Set<NodeRole> = [.collab, .manager], hostingOnly: Bool = false,
                configuration: ZoneConfiguration? = nil) {
        self.executable = executable
        self.directory = directory
        self.roles = roles
        self.hostingOnly = hostingOnly
        self.configuration = configuration
    }

    /// The standard zone with one more collaboration server and edges on: each meeting's
    /// participants are spread over its host, its standby and an edge. Edge copies left
    /// unused (their clients moved after a fault) are dropped after 2 s, so that dropping
    /// them races with the faults and the clients coming back.
    public static func edgesConfiguration() -> ZoneConfiguration {
        var configuration = ZoneConfiguration()
        configuration.processes.append(ZoneConfiguration.ProcessSpec(name: "collab-3", role: .collab))
        configuration.scaling.maxCollabServers = 3
        configuration.scaling.edges = true
        configuration.scaling.connectionsPerCopy = 1
        configuration.scaling.edgeUnusedSeconds = 2
        return configuration
    }

    public func start() async throws -> URL {
        var arguments = ["serve", "--data", data, "--port", "0", "--port-file", portFile, "--log-level", "info"]
        if let configuration {
            let path = directory + "/zone.json"
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(configuration).write(to: URL(fileURLWithPath: path))
            arguments += ["--config", path]
        }
        let started = try await ChildProcess.start(executable: executable, arguments: arguments, logPath: logPath)
        supervisor = started
        guard let port = await waitForPortFile(portFile, child: started, timeout: .seconds(60)) else {
            throw ChaosError.target("parley serve did not report its port within 60 s; see \(logPath)")
        }
        // Every process of the zone up, as the supervisor sees it.
        let deadline = ContinuousClock.now + .seconds(60)
        // A server that listens but has no control socket by then is not a zone.
        let socketDeadline = ContinuousClock.now + .seconds(10)
        var last = "no answer"
        while ContinuousClock.now < deadline {
            do {
                let processes = try await status()
                if !processes.isEmpty, processes.allSatisfy({ $0.state == .running }) {
                    return URL(string: "http://127.0.0.1:\(port)")!
                }
                last = processes.map { "\($0.name) \($0.state.rawValue)" }.joined(separator: ", ")
            } catch {
                last = "\(error)"
                if !FileManager.default.fileExists(atPath: socketPath), ContinuousClock.now > socketDeadline {
                    throw ChaosError.target("""
                        parley serve is listening on port \(port) but runs no zone: there is no control socket \
                        at \(socketPath). It is still the single-process server; use --target single.
                        """)
                }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ChaosError.target("the zone did not come up within 60 s (\(last)); see \(logPath) and \(data)/logs/")
    }

    public func victims() async throws -> [Victim] {
        let hurtable = try await status().filter { roles.contains($0.role) }
        // The supervisor gave up on a process that was hit too often: the operator's fix is
        // `parley ctl restart`, and so is ours; it is not counted as a fault.
        for process in hurtable where process.state == .failed {
            _ = try? await command(.restart(process.name))
            revived.append(process.name.rawValue)
        }
        guard hurtable.allSatisfy({ $0.state == .running && $0.pid != nil }) else { return [] }
        // One fault at a time means: the zone has recovered from the last one, including a
        // standby for every hosted meeting again. Otherwise a kill soon after a restart is a
        // double fault (no hot copy left) and is measured as if it were a single one.
        let collabs = hurtable.filter { $0.role == .collab }
        let hosted = Set(collabs.flatMap { meetings(in: $0.load, "hosting") })
        let followed = Set(collabs.flatMap { meetings(in: $0.load, "standby") })
        guard collabs.count < 2 || hosted.isSubset(of: followed) else { return [] }
        return hurtable
            .filter { !hostingOnly || ($0.role == .collab && !meetings(in: $0.load, "hosting").isEmpty) }
            .map { Victim(name: $0.name.rawValue, role: $0.role.rawValue, pid: Int32($0.pid!)) }
    }

    public func restart(_ victim: Victim) async throws {
        _ = try await command(.restart(NodeName(victim.name)))
    }

    public func notes() -> [String] {
        guard !revived.isEmpty else { return [] }
        let counts = Dictionary(revived.map { ($0, 1) }, uniquingKeysWith: +).sorted { $0.key < $1.key }
        return ["the supervisor gave up on a process that was hit too often, and chaos brought it back with "
            + "'parley ctl restart': " + counts.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")]
    }

    public func stop() async {
        // SIGTERM stops the zone in order; give it time to stop every process.
        await supervisor?.stop(grace: .seconds(30))
        supervisor = nil
    }

    /// The pid of the collaboration server hosting `meeting`, and each collaboration server's
    /// client connections, as the processes last reported them.
    public func hosting(_ meeting: String) async throws -> (pid: Int32?, connections: [String: Int]) {
        var pid: Int32?
        var connections: [String: Int] = [:]
        for process in try await status() where process.role == .collab {
            guard case .object(let load)? = process.load else { continue }
            if case .number(let count)? = load["connections"] { connections[process.name.rawValue] = Int(count) }
            if case .array(let hosted)? = load["hosting"], hosted.contains(.string(meeting)) { pid = process.pid.map(Int32.init) }
        }
        return (pid, connections)
    }

    private func status() async throws -> [ProcessStatus] {
        try await command(.status).status ?? []
    }

    private func command(_ command: ControlCommand) async throws -> ControlReply {
        let reply = try await ControlClient.command(command, socketPath: socketPath, timeout: .seconds(5))
        guard reply.ok else {
            throw ChaosError.target("the supervisor refused '\(command.wireName)': \(reply.error?.message ?? "no reason given")")
        }
        return reply
    }
}
