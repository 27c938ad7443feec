import Foundation

/// What a chaos run did and found. `text` is for people; the JSON form (``json()``) has the
/// same content under stable keys: `run`, `faults`, `ops`, `anomalies`, `recovery`, `notes`.
public struct ChaosReport: Codable, Equatable, Sendable {
    public struct Run: Codable, Equatable, Sendable {
        public var target: String
        public var seed: UInt64
        public var durationSeconds: Int
        public var meetings: Int
        public var clientsPerMeeting: Int
        public var opsPerSecondPerClient: Double
        public var faultIntervalMs: Int
        /// Clients per transport: `webSocket`, `longPolling`.
        public var transports: [String: Int]
        public var elapsedMs: Int64
        /// The data directory, when it was kept.
        public var data: String?
    }

    public struct Faults: Codable, Equatable, Sendable {
        public var injected: Int
        /// Faults that could not be injected (the target refused or failed); not in `injected`.
        public var failed: Int
        public var byKind: [String: Int]
        public var byTarget: [String: Int]
        public var list: [FaultRecord]
    }

    public struct Ops: Codable, Equatable, Sendable {
        public var sent: Int
        public var acked: Int
        public var rejected: Int
        /// No answer before the run ended: each may be in the log, at most once.
        public var unknown: Int
    }

    public struct Anomaly: Codable, Equatable, Sendable {
        public var meeting: String
        public var code: String
        public var description: String
    }

    public struct Anomalies: Codable, Equatable, Sendable {
        public var count: Int
        public var list: [Anomaly]
    }

    public struct Recovery: Codable, Equatable, Sendable {
        /// Per fault that disrupted clients: from the fault to the first ack of an op sent
        /// after it, in every disrupted meeting.
        public var acceptingOps: LatencySummary
        /// Per fault that disrupted clients: from the fault until every disrupted client resumed.
        public var allResumed: LatencySummary
        public var neverAccepting: Int
        public var neverResumed: Int
        /// Welcomes that brought a snapshot instead of a replay after a reconnect: the client
        /// was told it skipped events (allowed outside the resume window, unexpected inside).
        public var snapshotResumes: Int
        /// Connections lost before any fault.
        public var unattributedLosses: Int
        /// The same, by kind of fault and role of its target ("kill collab", "pause manager").
        public var byFault: [String: ByFault]?
    }

    public struct ByFault: Codable, Equatable, Sendable {
        public var acceptingOps: LatencySummary
        public var allResumed: LatencySummary
        /// Every sample, in the order of the faults (for plots).
        public var acceptingOpsSamplesMs: [Double]?
        public var allResumedSamplesMs: [Double]?
    }

    public var run: Run
    public var faults: Faults
    public var ops: Ops
    public var anomalies: Anomalies
    public var recovery: Recovery
    public var notes: [String]

    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    public var text: String {
        var lines: [String] = []
        let transports = run.transports.sorted { $0.key > $1.key }.map { "\($0.value) \(Self.transportName($0.key))" }
        lines.append("parley chaos: \(run.durationSeconds) s against a \(run.target) target, \(run.meetings) "
            + "meeting\(run.meetings == 1 ? "" : "s") × \(run.clientsPerMeeting) clients (\(transports.joined(separator: ", "))), "
            + "\(Self.number(run.opsPerSecondPerClient)) ops/s each, seed \(run.seed); took \(Self.seconds(run.elapsedMs))")
        lines.append("")
        lines.append("faults injected: \(faults.injected)" + (faults.failed > 0 ? " (and \(faults.failed) that failed)" : ""))
        // Wide enough for the longest kind injected (machine-kill in a cluster run).
        let kindWidth = (Set(faults.list.map(\.kind)).map(\.rawValue.count).max() ?? 7) + 1
        for kind in FaultKind.allCases {
            let hits = faults.list.filter { $0.kind == kind && $0.error == nil }
            guard !hits.isEmpty else { continue }
            let byTarget = Dictionary(hits.map { ($0.target, 1) }, uniquingKeysWith: +).sorted { $0.key < $1.key }
            lines.append("  \(kind.rawValue.padding(toLength: max(8, kindWidth), withPad: " ", startingAt: 0))\(hits.count)   "
                + byTarget.map { "\($0.key) ×\($0.value)" }.joined(separator: ", "))
        }
        for failure in faults.list where failure.error != nil {
            lines.append("  failed: \(failure.kind.rawValue) \(failure.target) at \(failure.atMs) ms: \(failure.error!)")
        }
        lines.append("ops: \(ops.sent) sent, \(ops.acked) acknowledged, \(ops.rejected) rejected, \(ops.unknown) unknown")
        lines.append("anomalies: \(anomalies.count)")
        for anomaly in anomalies.list.prefix(50) { lines.append("  [\(anomaly.code)] \(anomaly.description)") }
        if anomalies.list.count > 50 { lines.append("  … and \(anomalies.list.count - 50) more (see --json)") }
        lines.append("recovery, per fault that disrupted clients (\(recovery.allResumed.samples + recovery.neverResumed)):")
        lines.append("  accepting ops again    " + Self.summary(recovery.acceptingOps)
            + (recovery.neverAccepting > 0 ? "   never: \(recovery.neverAccepting)" : ""))
        lines.append("  every client resumed   " + Self.summary(recovery.allResumed)
            + (recovery.neverResumed > 0 ? "   never: \(recovery.neverResumed)" : ""))
        for (kind, summary) in (recovery.byFault ?? [:]).sorted(by: { $0.key < $1.key }) {
            lines.append("  \(kind) (\(summary.allResumed.samples)): accepting " + Self.summary(summary.acceptingOps)
                + ";  resumed " + Self.summary(summary.allResumed))
        }
        if recovery.snapshotResumes > 0 {
            lines.append("  snapshot resumes: \(recovery.snapshotResumes) (a client skipped events and got a snapshot)")
        }
        if recovery.unattributedLosses > 0 {
            lines.append("  connections lost before any fault: \(recovery.unattributedLosses)")
        }
        for note in notes { lines.append("note: \(note)") }
        return lines.joined(separator: "\n") + "\n"
    }

    static func summary(_ latency: LatencySummary) -> String {
        guard let p50 = latency.p50Ms, let p99 = latency.p99Ms else { return "no samples" }
        return "p50 \(Int(p50.rounded())) ms   p99 \(Int(p99.rounded())) ms"
    }

    static func transportName(_ key: String) -> String {
        switch key {
        case "webSocket": "WebSocket"
        case "longPolling": "long-polling"
        default: key
        }
    }

    static func number(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }

    static func seconds(_ ms: Int64) -> String {
        "\(ms / 1_000).\(ms % 1_000 / 100) s"
    }
}
