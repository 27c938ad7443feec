import FoundationEssentials
import Logging
import ParleyStore
import ParleyWeb
import ParleyZone

/// Every process's status report: this machine's from its supervisor, and in a cluster the
/// other machines' as their supervisors last published them to the shared store (a machine
/// silent for over 3 s is said to be so). What `parley ctl status` and the zone page show.
public enum ZoneStatusReports {
    public static func gather(paths: ZonePaths, configuration: ZoneConfiguration?, store: (any Store)?,
                              logger: Logger) async throws -> [ProcessStatus] {
        let reply = try await ControlClient.command(.status, socketPath: paths.controlSocket)
        guard reply.ok else {
            throw ZoneConsoleError(reply.error.map { "\($0.message) (\($0.code))" } ?? "the supervisor refused 'status'")
        }
        var processes = reply.status ?? []
        guard let configuration, let here = configuration.machine else { return processes }
        let published: [PublishedProcess]
        if let store {
            published = try await store.publishedProcesses()
        } else {
            published = try await configuration.storeLocation().withStore(dataDirectory: paths.data, logger: logger) { store in
                try await store.publishedProcesses()
            }
        }
        let order = configuration.machines.map(\.name)
        processes += published.filter { $0.machine != here }
            .sorted { (order.firstIndex(of: $0.machine) ?? .max, $0.name) < (order.firstIndex(of: $1.machine) ?? .max, $1.name) }
            .compactMap { row in
                guard var status = try? JSONDecoder().decode(ProcessStatus.self, from: Data(row.status.utf8)) else { return nil }
                status.machine = row.machine
                if row.ageMs > 3_000 {
                    status.detail = "no report from machine \(row.machine) for \(row.ageMs / 1_000) s: "
                        + "as it was last seen (is the machine down or cut off?)"
                }
                return status
            }
        return processes
    }
}

/// The zone page's view of the zone from the web process: the supervisor on its control
/// socket (status, restart), and the leading manager over a zone link (drain), as
/// `parley ctl` does.
struct SupervisorConsole: ZoneConsole {
    let paths: ZonePaths
    let configuration: ZoneConfiguration
    let store: any Store
    let logger: Logger

    func statuses() async throws -> [ProcessStatus] {
        try await ZoneStatusReports.gather(paths: paths, configuration: configuration, store: store, logger: logger)
    }

    func restart(_ process: NodeName) async throws -> String {
        let reply = try await ControlClient.command(.restart(process), socketPath: paths.controlSocket)
        guard reply.ok else {
            throw ZoneConsoleError(reply.error.map { "\($0.message) (\($0.code))" } ?? "the supervisor refused to restart \(process)")
        }
        return "restarting \(process)"
    }

    /// As `parley ctl drain`: the meetings move, then the supervisor stops the server
    /// (new meetings avoid it meanwhile); a restart brings it back.
    func drain(_ process: NodeName) async throws -> String {
        let detail: String
        do {
            detail = try await ZoneOperator.drain(process, paths: paths, timeout: .seconds(60), logger: logger)
        } catch let error as ZoneOperatorError {
            throw ZoneConsoleError(error.description)
        }
        let reply = try await ControlClient.command(.stop(process), socketPath: paths.controlSocket)
        guard reply.ok else {
            throw ZoneConsoleError("drained (\(detail)), but the supervisor would not stop it: "
                                   + (reply.error.map { "\($0.message) (\($0.code))" } ?? "refused"))
        }
        return "drained \(process) (\(detail)); stopping it"
    }
}
