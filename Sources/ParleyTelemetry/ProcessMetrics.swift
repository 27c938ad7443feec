import CoreMetrics
import Prometheus

/// One process's metrics: what its code records into, and the Prometheus text that
/// `/metrics` serves.
///
/// The code records through swift-metrics, with this factory passed in rather than the
/// process-wide one: tests and servers run in one process keep their figures apart, and a
/// component given ``off`` records nothing. Only names from ``MetricName`` are recorded,
/// and no label ever carries an unbounded value (a meeting id, a user name).
public struct ProcessMetrics: Sendable {
    public let factory: any MetricsFactory
    private let registry: PrometheusCollectorRegistry?

    /// Records nothing.
    public static let off = ProcessMetrics(factory: NOOPMetricsHandler.instance, registry: nil)

    /// Records into a Prometheus registry of its own.
    public static func prometheus() -> ProcessMetrics {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Commits take a fraction of a millisecond on SQLite, and several on PostgreSQL.
        factory.durationHistogramBuckets[MetricName.commitDuration.rawValue] = [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
            .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1),
        ]
        factory.durationHistogramBuckets[MetricName.promotionDuration.rawValue] = [
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
            .seconds(1), .milliseconds(2_500), .seconds(5), .seconds(10),
        ]
        factory.durationHistogramBuckets[MetricName.conversionDuration.rawValue] = [
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2), .seconds(5), .seconds(10),
            .seconds(30), .seconds(60), .seconds(120),
        ]
        factory.valueHistogramBuckets[MetricName.commitBatchEntries.rawValue] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1_024, 4_096]
        return ProcessMetrics(factory: factory, registry: registry)
    }

    /// Whether anything is recorded.
    public var isOn: Bool { registry != nil }

    /// Every series, in the Prometheus text format (version 0.0.4).
    public func exposition() -> String { registry?.emitToString() ?? "" }

    public func counter(_ name: MetricName, _ labels: [(String, String)] = []) -> CoreMetrics.Counter {
        CoreMetrics.Counter(label: name.rawValue, dimensions: labels, factory: factory)
    }

    /// A value that goes up and down, or is set.
    public func gauge(_ name: MetricName, _ labels: [(String, String)] = []) -> CoreMetrics.Meter {
        CoreMetrics.Meter(label: name.rawValue, dimensions: labels, factory: factory)
    }

    /// A histogram of values (sizes, counts).
    public func histogram(_ name: MetricName, _ labels: [(String, String)] = []) -> CoreMetrics.Recorder {
        CoreMetrics.Recorder(label: name.rawValue, dimensions: labels, aggregate: true, factory: factory)
    }

    /// A histogram of durations, in seconds.
    public func timer(_ name: MetricName, _ labels: [(String, String)] = []) -> CoreMetrics.Timer {
        CoreMetrics.Timer(label: name.rawValue, dimensions: labels, factory: factory)
    }
}

/// Every metric Parley records, with its type, labels and meaning: the catalogue that
/// docs/operations.md documents (a test checks that it names each one).
public enum MetricName: String, CaseIterable, Sendable {
    // A collaboration server (and a single server).
    case connections = "parley_connections"
    case meetings = "parley_meetings"
    case opsCommitted = "parley_ops_committed_total"
    case commitDuration = "parley_commit_duration_seconds"
    case commitBatchEntries = "parley_commit_batch_entries"
    case deliveries = "parley_deliveries_total"
    case sendQueueFrames = "parley_send_queue_frames"
    case slowConsumersDropped = "parley_slow_consumers_dropped_total"
    case resumes = "parley_resumes_total"
    case rejections = "parley_rejections_total"
    case fencedCommits = "parley_fenced_commits_total"
    // The store, in every process that writes to it.
    case storeCommitErrors = "parley_store_commit_errors_total"
    case storeConnects = "parley_store_connects_total"
    case storeConnectionsClosed = "parley_store_connections_closed_total"
    // A manager.
    case placements = "parley_placements_total"
    case failovers = "parley_failovers_total"
    case promotionDuration = "parley_promotion_duration_seconds"
    case leaseChanges = "parley_lease_changes_total"
    case managerTerm = "parley_manager_term"
    case managerLeading = "parley_manager_leading"
    // The supervisor.
    case processRestarts = "parley_process_restarts_total"
    case processesGivenUp = "parley_processes_given_up_total"
    // The web process (and a single server's web zone).
    case signIns = "parley_sign_ins_total"
    case lockouts = "parley_lockouts_total"
    case rateLimited = "parley_rate_limited_total"
    case uploads = "parley_uploads_total"
    case conversionDuration = "parley_conversion_duration_seconds"
    case conversionFallbacks = "parley_conversion_fallbacks_total"

    public enum Kind: String, Sendable {
        case counter, gauge, histogram
    }

    public var kind: Kind {
        switch self {
        case .connections, .meetings, .sendQueueFrames, .managerTerm, .managerLeading: .gauge
        case .commitDuration, .commitBatchEntries, .promotionDuration, .conversionDuration: .histogram
        default: .counter
        }
    }

    /// The labels it carries; each has a small, fixed set of values.
    public var labels: [String] {
        switch self {
        case .connections: ["transport"]
        case .meetings: ["role"]
        case .sendQueueFrames: ["of"]
        case .resumes: ["mode"]
        case .rejections: ["code"]
        case .leaseChanges: ["change"]
        case .processRestarts: ["process", "reason"]
        case .processesGivenUp: ["process"]
        case .signIns: ["outcome"]
        case .storeConnects: ["outcome"]
        case .rateLimited: ["action"]
        case .uploads: ["outcome"]
        case .conversionDuration: ["converter"]
        case .conversionFallbacks: ["failed"]
        default: []
        }
    }
}
