import Foundation
import Logging
import ParleyChaos
import ParleyZone

/// Failover: a whole zone under steady load, and kill -9 of the collaboration server hosting
/// meetings, one kill at a time once the zone has a standby for every meeting again. Each
/// kill is one trial: the time until every disrupted meeting accepted an op again, and until
/// every disrupted client resumed. The chaos run's history check runs too: a failover that
/// lost, duplicated or reordered an acknowledged op is reported as an anomaly.
public struct FailoverConfiguration: Sendable {
    public var trials = 20
    public var meetings = 8
    /// Per meeting; they alternate between WebSocket and long-polling.
    public var clientsPerMeeting = 4
    public var opsPerSecondPerClient = 10.0
    /// Mean time between kills (exponential around it, as in chaos runs).
    public var killIntervalMs = 3_000
    public var seed: UInt64 = 5
    public var logger = Logger(label: "parley.bench")

    public init() {}

    public func problems() -> [String] {
        var problems: [String] = []
        if trials < 1 || trials > 1_000 { problems.append("trials must be 1 to 1000") }
        if killIntervalMs < 500 { problems.append("the kill interval must be at least 500 ms") }
        return problems
    }

    /// The chaos run that carries the trials out: long enough for every kill plus recovery.
    var chaos: ChaosConfiguration {
        var chaos = ChaosConfiguration()
        chaos.meetings = meetings
        chaos.clientsPerMeeting = clientsPerMeeting
        chaos.opsPerSecondPerClient = opsPerSecondPerClient
        chaos.faultKinds = [.kill]
        chaos.faultIntervalMs = killIntervalMs
        chaos.maxFaults = trials
        // Waits are at most 4 × the mean; recovery before the next kill takes a few seconds.
        chaos.durationSeconds = trials * (killIntervalMs * 2 + 3_000) / 1_000 + 10
        chaos.seed = seed
        chaos.logger = logger
        return chaos
    }
}

public enum FailoverBench {
    /// - Parameters:
    ///   - executable: the `parley` binary that runs the zone (`parley serve`).
    ///   - directory: the zone's data and logs.
    public static func run(_ configuration: FailoverConfiguration, executable: String,
                           directory: String) async throws -> FailoverResult {
        let problems = configuration.problems()
        guard problems.isEmpty else { throw BenchError.setup(problems.joined(separator: "; ")) }
        let target = ZoneTarget(executable: executable, directory: directory, roles: [.collab], hostingOnly: true)
        let report = try await ChaosRun.run(configuration.chaos, against: target)
        return result(from: report, configuration)
    }

    static func result(from report: ChaosReport, _ configuration: FailoverConfiguration) -> FailoverResult {
        let kills = report.recovery.byFault?["kill collab"]
        let accepting = kills?.acceptingOpsSamplesMs ?? []
        let resumed = kills?.allResumedSamplesMs ?? []
        return FailoverResult(
            trials: resumed.count, faults: report.faults.injected, meetings: configuration.meetings,
            clientsPerMeeting: configuration.clientsPerMeeting, opsPerSecondPerClient: configuration.opsPerSecondPerClient,
            acceptingMs: LatencyStats(samplesMs: accepting), resumedMs: LatencyStats(samplesMs: resumed),
            samples: .init(acceptingMs: accepting, resumedMs: resumed),
            ops: .init(sent: report.ops.sent, acked: report.ops.acked, rejected: report.ops.rejected,
                       unknown: report.ops.unknown),
            anomalies: report.anomalies.count,
            neverRecovered: report.recovery.neverAccepting + report.recovery.neverResumed)
    }
}
