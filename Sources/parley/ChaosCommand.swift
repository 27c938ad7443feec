import ArgumentParser
import Foundation
import Logging
import ParleyChaos
import ParleySupervisor
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// `parley chaos`: a bounded chaos run against a zone (or a single server), with its report.
struct ChaosCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chaos",
        abstract: "Hurt a zone at random while clients use it, then check that nothing acknowledged was lost, "
            + "duplicated or reordered.",
        discussion: """
            Starts 'parley serve' in a fresh data directory, opens meetings and has SDK clients send \
            numbered ops over WebSocket and long-polling. Meanwhile it kills (SIGKILL), pauses \
            (SIGSTOP, then SIGCONT) and restarts ('parley ctl restart') collaboration servers and \
            managers at random, one fault at a time. Then it checks every meeting: one order for all \
            clients, no gaps, epochs that never go back, every acknowledged op exactly once, no \
            rejected op, no op with an unknown outcome twice. It reports the faults, the ops, the \
            anomalies and how long recovery took (p50, p99).

            The exit status is 1 if any anomaly was found. The run ends by itself: after --duration \
            seconds of load, plus at most --settle seconds for the last answers. Should the run itself \
            wedge, a watchdog stops every process it started and exits with status 3, \
            \(Self.watchdogSlackSeconds) s after that.
            """)

    /// Beyond load and settle time: starting the target (at most 60 s), stopping it (at most
    /// 40 s), and slack.
    static let watchdogSlackSeconds = 180

    @Option(help: "Seconds of load and faults.")
    var duration = 60

    @Option(help: "Meetings to run at once.")
    var meetings = 4

    @Option(help: "Clients per meeting; they alternate between WebSocket and long-polling.")
    var clients = 3

    @Option(help: "Ops per second per client.")
    var rate = 5.0

    @Option(help: "Mean time between faults, in milliseconds.")
    var faultIntervalMs = 3_000

    @Option(help: "Kinds of fault to inject, comma-separated: kill, pause, restart, and with --target cluster machine-kill and partition (partition needs root, for network namespaces). Default: all the target can do.")
    var faults: String?

    @Option(help: "Longest pause (SIGSTOP to SIGCONT), in milliseconds.")
    var maxPauseMs = 2_000

    @Option(help: "At most this many faults (default: three times as many as --fault-interval-ms gives).")
    var maxFaults: Int?

    @Option(help: "Seed for the random choices: fault timing, kinds and targets, send pacing (default: random; the report shows it).")
    var seed: UInt64?

    @Option(help: "What to run and hurt: 'zone' (parley serve; collab servers and managers), 'single' (parley serve --single) or 'cluster' (a zone over --machines machines on one box, sharing PostgreSQL).")
    var target = "zone"

    @Option(help: "With --target cluster: how many machines (at least 3).")
    var machines = 3

    @Option(help: "With --target cluster: the PostgreSQL database the machines share (default: a throwaway PostgreSQL started in the run's directory with initdb).")
    var store: String?

    @Option(name: .customLong("data"), help: "Directory for the target's data and logs (default: a fresh temporary directory, removed afterwards unless --keep).")
    var dataDirectory: String?

    @Flag(help: "With --target zone: three collaboration servers and edges on, so each meeting's clients are spread over its host, its standby and an edge (docs/zone.md, Edges).")
    var edges = false

    @Flag(help: "Keep the temporary data directory and its logs.")
    var keep = false

    @Option(help: "Seconds to wait, after the load stops, for unanswered ops and lagging clients.")
    var settle = 30

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Option(help: "Log level of the run's own messages (on standard error): trace, debug, info, notice, warning, error.")
    var logLevel = "error"

    func validate() throws {
        guard ["zone", "single", "cluster"].contains(target) else { throw ValidationError("--target must be 'zone', 'single' or 'cluster'") }
        guard machines >= 3 else { throw ValidationError("--machines must be at least 3") }
        guard !edges || target == "zone" else { throw ValidationError("--edges needs --target zone") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level '\(logLevel)'") }
        _ = try faultKinds()
        guard maxPauseMs >= 1 else { throw ValidationError("--max-pause-ms must be at least 1") }
        let problems = try chaosConfiguration(seed: 0).problems()
        guard problems.isEmpty else { throw ValidationError(problems.joined(separator: "; ")) }
    }

    func run() async throws {
        bootstrapLogging(level: logLevel)
        let (directory, temporary) = try workingDirectory()
        var database: LocalPostgres?
        var network: MachineNetwork?
        let target: any FaultTarget
        switch self.target {
        case "single":
            target = SingleServerTarget(executable: currentExecutable(), directory: directory)
        case "cluster":
            // Machines in network namespaces when this process may make them (partitions need
            // them), else on loopback addresses.
            // A database given with --store is reached as given: from this namespace, so no others.
            network = MachineNetwork.isPermitted && store == nil ? try await MachineNetwork.create(machines: machines) : nil
            var url = store
            if url == nil {
                // Fsync on: a machine kill must lose nothing PostgreSQL acknowledged.
                let server = try await LocalPostgres.start(in: directory + "/postgres", host: network?.bridgeAddress ?? "127.0.0.1",
                                                           port: try LocalPostgres.freePort(), durable: true,
                                                           clientNetwork: network?.cidr)
                try await server.createDatabase("parley")
                database = server
                // A machine cut off gives up on the database, and the database on it, in 2 s.
                url = server.url(database: "parley", options: "sslmode=disable&connect_timeout=1&statement_timeout=2")
            }
            let configuration = ClusterTarget.standardConfiguration(
                machines: machines, storeURL: url!, address: network.map { network in { network.address(ofMachine: $0) } }
                    ?? { "127.0.0.\($0)" })
            target = ClusterTarget(executable: currentExecutable(), directory: directory + "/cluster",
                                   configuration: configuration, storeURL: url!, network: network)
            FileHandle.standardError.write(Data((network == nil
                ? "parley chaos: machines on loopback addresses (127.0.0.1 to 127.0.0.\(machines)): no partitions without network namespaces (root)\n"
                : "parley chaos: machines in network namespaces on \(network!.cidr)\n").utf8))
        default:
            target = ZoneTarget(executable: currentExecutable(), directory: directory,
                                configuration: edges ? ZoneTarget.edgesConfiguration() : nil)
        }
        let watchdog = Watchdog(after: .seconds(duration + settle + Self.watchdogSlackSeconds), directory: directory)
        var report: ChaosReport
        do {
            report = try await ChaosRun.run(try chaosConfiguration(seed: seed ?? UInt64.random(in: 0...UInt64.max)),
                                            against: target)
            watchdog.disarm()
            try? await database?.stop()
            await network?.remove()
        } catch {
            watchdog.disarm()
            try? await database?.stop()
            await network?.remove()
            throw ChaosFailure("the chaos run could not be carried out: \(error)\n(its data and logs are kept in \(directory))")
        }
        if temporary, !keep {
            try? FileManager.default.removeItem(atPath: directory)
        } else {
            report.run.data = directory
        }
        print(json ? try report.json() : report.text, terminator: json ? "\n" : "")
        if report.anomalies.count > 0 { throw ExitCode(1) }
    }

    private func faultKinds() throws -> [FaultKind] {
        let available = FaultKind.allCases.filter {
            !$0.hitsMachine || (target == "cluster" && ($0 != .partition || (MachineNetwork.isPermitted && store == nil)))
        }
        guard let faults else { return available }
        let names = faults.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let kinds = names.compactMap(FaultKind.init(rawValue:))
        guard !names.isEmpty, kinds.count == names.count, kinds.allSatisfy(available.contains) else {
            throw ValidationError("--faults takes \(available.map(\.rawValue).joined(separator: ", ")), comma-separated; got '\(faults)'")
        }
        return kinds
    }

    private func chaosConfiguration(seed: UInt64) throws -> ChaosConfiguration {
        var configuration = ChaosConfiguration()
        configuration.durationSeconds = duration
        configuration.meetings = meetings
        configuration.clientsPerMeeting = clients
        configuration.opsPerSecondPerClient = rate
        configuration.faultIntervalMs = faultIntervalMs
        configuration.faultKinds = try faultKinds()
        configuration.pauseMs = min(200, max(1, maxPauseMs))...max(1, maxPauseMs)
        configuration.maxFaults = maxFaults
        configuration.seed = seed
        configuration.settleSeconds = settle
        configuration.logger = makeLogger(label: "parley.chaos", level: logLevel)
        return configuration
    }

    /// The run's directory, and whether it is a temporary one made here. Kept short: a zone's
    /// control socket lives under it, and Unix socket paths are limited to about 100 bytes.
    private func workingDirectory() throws -> (String, Bool) {
        if let dataDirectory {
            let path = URL(fileURLWithPath: dataDirectory).standardizedFileURL.path
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            return (path, false)
        }
        var template = Array("/tmp/parley-chaos-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw ChaosFailure("cannot create a temporary directory under /tmp: errno \(errno)")
        }
        return (String(cString: made), true)
    }
}

/// Ends the process if the run has not finished in time, whatever its tasks are doing: it
/// runs on a thread of its own, so it works even when every thread of the cooperative pool
/// is stuck (as a deadlock inside a library can leave them).
final class Watchdog: Sendable {
    private let disarmed = Mutex(false)

    init(after limit: Duration, directory: String) {
        let deadline = ContinuousClock.now + limit
        Thread.detachNewThread { [self] in
            while ContinuousClock.now < deadline {
                if isDisarmed { return }
                usleep(200_000)
            }
            if isDisarmed { return }
            FileHandle.standardError.write(Data("""
                parley chaos: the run did not end within \(limit); its tasks are stuck. Stopping the \
                processes it started; their data and logs are kept in \(directory).

                """.utf8))
            let stopped = ChaosEmergency.stopChildren(graceSeconds: 15)
            FileHandle.standardError.write(Data("stopped: \(stopped.joined(separator: "; "))\n".utf8))
            exit(3)
        }
    }

    func disarm() { disarmed.withLock { $0 = true } }
    private var isDisarmed: Bool { disarmed.withLock { $0 } }
}

struct ChaosFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
