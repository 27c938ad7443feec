import ArgumentParser
import FoundationEssentials
import Logging
import ParleyNode
import ParleyStore
import ParleyZone

/// `parley ctl …`: the operator's view of a running zone, through its supervisor's control socket.
struct CtlCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Watch and steer a running zone.",
        subcommands: [Status.self, Restart.self, Stop.self, Drain.self]
    )

    struct Zone: ParsableArguments {
        @Option(name: .customLong("data"), help: "The zone's data directory.")
        var dataDirectory = "./data"

        /// Sends `command` to the zone's supervisor; a refusal becomes the error it names.
        func send(_ command: ControlCommand) async throws -> ControlReply {
            let socket = ZonePaths(data: dataDirectory).controlSocket
            let reply: ControlReply
            do {
                reply = try await ControlClient.command(command, socketPath: socket)
            } catch ControlClientError.cannotConnect {
                throw CtlFailure("no zone is running with data directory \(dataDirectory): cannot connect to \(socket)")
            }
            guard reply.ok else {
                throw CtlFailure(reply.error.map { "\($0.message) (\($0.code))" } ?? "the supervisor refused '\(command.wireName)'")
            }
            return reply
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show every process of the zone: role, pid, state, uptime, restarts and last exit.")

        @OptionGroup var zone: Zone

        @Flag(help: "Print {\"leader\": {...}, \"processes\": [...]} as JSON (docs/zone.md describes it).")
        var json = false

        func run() async throws {
            let paths = ZonePaths(data: zone.dataDirectory)
            let configuration = FileManager.default.contents(atPath: paths.resolvedConfiguration)
                .flatMap { try? ZoneConfiguration.resolved($0, name: paths.resolvedConfiguration) }
            let processes: [ProcessStatus]
            do {
                processes = try await ZoneStatusReports.gather(paths: paths, configuration: configuration, store: nil,
                                                               logger: Logger(label: "parley.ctl"))
            } catch ControlClientError.cannotConnect {
                throw CtlFailure("no zone is running with data directory \(zone.dataDirectory): cannot connect to \(paths.controlSocket)")
            }
            let supervisorMetrics = (try? String(contentsOfFile: paths.supervisorMetricsURL, encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                let report = StatusReport(leader: StatusTable.leader(processes), processes: processes,
                                          supervisor: .init(metrics: supervisorMetrics))
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                print(StatusTable.render(processes), terminator: "")
                if let supervisorMetrics { print("supervisor metrics: \(supervisorMetrics)") }
            }
        }
    }
}

extension CtlCommand {
    struct Restart: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop a process (SIGTERM, then SIGKILL after a grace period) and start it again; "
                + "also brings back one that was stopped or given up on.")

        @Argument(help: "The process's name, as 'parley ctl status' shows it.")
        var name: String

        @OptionGroup var zone: Zone

        func run() async throws {
            _ = try await zone.send(.restart(NodeName(name)))
            print("restarting \(name)")
        }
    }

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop a process and keep it stopped until 'parley ctl restart'.")

        @Argument(help: "The process's name, as 'parley ctl status' shows it.")
        var name: String

        @OptionGroup var zone: Zone

        func run() async throws {
            _ = try await zone.send(.stop(NodeName(name)))
            print("stopping \(name)")
        }
    }
}

extension CtlCommand {
    struct Drain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move every meeting off a collab server live, then stop it.",
            discussion: """
                Each meeting the server hosts is taken over by its standby (a new epoch fences the old
                host), then released here: its clients reconnect through the locator and resume, with
                nothing lost. Standby copies move too. New meetings avoid the server. Once nothing is
                left on it, the supervisor stops it; 'parley ctl restart NAME' brings it back.
                """)

        @Argument(help: "The collab server's name, as 'parley ctl status' shows it.")
        var name: String

        @Option(help: "Give up after this many seconds.")
        var timeout = 60

        @OptionGroup var zone: Zone

        func run() async throws {
            let server = NodeName(name)
            let detail: String
            do {
                detail = try await ZoneOperator.drain(server, paths: ZonePaths(data: zone.dataDirectory),
                                                      timeout: .seconds(timeout))
            } catch {
                throw CtlFailure("\(error)")
            }
            print("drained \(name): \(detail)")
            _ = try await zone.send(.stop(server))
            print("stopping \(name)")
        }
    }
}

struct CtlFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// `parley ctl status --json`. Encoded with every key, `leader` as null when no manager
/// leads, so scripts need not guess.
struct StatusReport: Encodable {
    struct Leader: Encodable, Equatable {
        var name: NodeName
        var term: Int
    }

    /// This machine's supervisor: where it serves its metrics (null when it does not).
    struct Supervisor: Encodable, Equatable {
        var metrics: String?

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(metrics, forKey: .metrics)
        }

        private enum CodingKeys: String, CodingKey { case metrics }
    }

    var leader: Leader?
    var processes: [ProcessStatus]
    var supervisor = Supervisor()

    private enum CodingKeys: String, CodingKey { case leader, processes, supervisor }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(leader, forKey: .leader)
        try container.encode(processes, forKey: .processes)
        try container.encode(supervisor, forKey: .supervisor)
    }
}

/// The readable form of `parley ctl status`.
enum StatusTable {
    /// The running manager that reports leading, under the newest term if (for a moment
    /// after an election) two do.
    static func leader(_ processes: [ProcessStatus]) -> StatusReport.Leader? {
        processes.compactMap { process -> StatusReport.Leader? in
            guard process.role == .manager, process.pid != nil, case .object(let load)? = process.load,
                  case .bool(true)? = load["leader"], case .number(let term)? = load["term"] else { return nil }
            return StatusReport.Leader(name: process.name, term: Int(term))
        }.max { $0.term < $1.term }
    }

    static func render(_ processes: [ProcessStatus]) -> String {
        // The machine column only in a cluster.
        let clustered = processes.contains { $0.machine != nil }
        let header = (clustered ? ["MACHINE"] : []) + ["NAME", "ROLE", "PID", "STATE", "UPTIME", "RESTARTS", "LOAD", "LAST EXIT"]
        let rows = processes.map { process in
            (clustered ? [process.machine ?? "-"] : [])
                + [process.name.rawValue, process.role.rawValue, process.pid.map(String.init) ?? "-", process.state.rawValue,
                   process.uptimeMs.map(duration) ?? "-", "\(process.restarts)", ZoneOverview.loadSummary(process.load),
                   process.lastExit.map { "\($0)" } ?? "-"]
        }
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max()! }
        var text = ""
        for row in [header] + rows {
            let cells = row.indices.map { column in
                column == row.count - 1 ? row[column] : row[column].padding(toLength: widths[column] + 2, withPad: " ", startingAt: 0)
            }
            text += cells.joined() + "\n"
        }
        for process in processes {
            let hosting = meetings(process.load, "hosting")
            let standby = meetings(process.load, "standby")
            if !hosting.isEmpty || !standby.isEmpty {
                text += "\n\(process.name) hosts: \(hosting.isEmpty ? "-" : hosting.joined(separator: " "))"
                text += "\n\(String(repeating: " ", count: process.name.rawValue.count)) standby for: \(standby.isEmpty ? "-" : standby.joined(separator: " "))\n"
            }
        }
        for process in processes {
            if let detail = process.detail { text += "\n\(process.name): \(detail)\n" }
        }
        for process in processes where process.pid != nil {
            // Running, but unable to do its job (`/ready` answers 503).
            guard case .object(let load)? = process.load, case .bool(false)? = load["ready"] else { continue }
            text += "\n\(process.name): not ready: \(meetings(process.load, "notReady").joined(separator: "; "))\n"
        }
        if processes.contains(where: { $0.role == .manager }) {
            text += "\n" + (leader(processes).map { "leader: \($0.name) (term \($0.term))" } ?? "leader: none (an election is under way)") + "\n"
        }
        return text
    }

    /// "3 conn, 2 mtg, 4% cpu" for processes that report a load.
    static func meetings(_ value: JSONValue?, _ key: String) -> [String] {
        guard case .object(let load)? = value, case .array(let list)? = load[key] else { return [] }
        return list.compactMap { if case .string(let id) = $0 { id } else { nil } }
    }

    /// "850 ms", "12.3 s", "4m 05s", "3h 02m", "2d 04h".
    static func duration(_ ms: Int) -> String {
        let seconds = ms / 1_000
        func two(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        switch seconds {
        case ..<1: return "\(ms) ms"
        case ..<60: return "\(seconds).\(ms % 1_000 / 100) s"
        case ..<3_600: return "\(seconds / 60)m \(two(seconds % 60))s"
        case ..<86_400: return "\(seconds / 3_600)h \(two(seconds % 3_600 / 60))m"
        default: return "\(seconds / 86_400)d \(two(seconds % 86_400 / 3_600))h"
        }
    }
}
