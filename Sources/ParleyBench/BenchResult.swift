import Foundation
import Histogram
import ParleyChaos

/// One benchmark run, as written to the results folder (`schema` "parley-bench/1").
/// `scripts/bench_report.py` turns a folder of these into docs/performance.md and its plots.
public struct BenchResult: Codable, Sendable {
    public var schema = "parley-bench/1"
    public var benchmark: String
    public var startedAt: String
    public var machine: MachineFacts
    /// "release" or "debug": how the server binary was built, as far as the generator knows.
    public var build: String
    public var commit: String?
    public var command: String
    public var fanout: FanOutResult?
    public var joins: JoinStormResult?
    public var idle: IdleMemoryResult?
    public var failover: FailoverResult?
    public var largeMeeting: LargeMeetingResult?

    public init(benchmark: String, startedAt: Date, build: String, command: String) {
        self.benchmark = benchmark
        self.startedAt = ISO8601DateFormatter().string(from: startedAt)
        machine = .current()
        self.build = build
        commit = ProcessInfo.processInfo.environment["PARLEY_COMMIT"]
        self.command = command
    }

    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}

/// Latency percentiles in milliseconds; nil without samples.
public struct LatencyStats: Codable, Equatable, Sendable {
    public var count: Int
    public var p50: Double?
    public var p90: Double?
    public var p99: Double?
    public var p999: Double?
    public var max: Double?

    /// From a histogram of microseconds.
    init(micros histogram: Histogram<UInt64>) {
        count = Int(histogram.totalCount)
        guard count > 0 else { return }
        func ms(_ value: UInt64) -> Double { (Double(value) / 10).rounded() / 100 }
        p50 = ms(histogram.valueAtPercentile(50))
        p90 = ms(histogram.valueAtPercentile(90))
        p99 = ms(histogram.valueAtPercentile(99))
        p999 = ms(histogram.valueAtPercentile(99.9))
        max = ms(histogram.max)
    }

    /// From samples in milliseconds (nearest rank, as the chaos report computes them).
    init(samplesMs: [Double]) {
        let sorted = samplesMs.sorted()
        count = sorted.count
        p50 = Percentile.nearestRank(50, ofSorted: sorted)
        p90 = Percentile.nearestRank(90, ofSorted: sorted)
        p99 = Percentile.nearestRank(99, ofSorted: sorted)
        p999 = Percentile.nearestRank(99.9, ofSorted: sorted)
        max = sorted.last
    }

    /// The histogram's cumulative distribution as [milliseconds, percentile] points, at most
    /// about `points` of them (for a CDF plot).
    static func cdf(micros histogram: Histogram<UInt64>, points: Int = 200) -> [[Double]] {
        guard histogram.totalCount > 0 else { return [] }
        var all: [[Double]] = []
        for step in histogram.percentiles(ticksPerHalfDistance: 5) {
            all.append([Double(step.value) / 1_000, step.percentileLevelIteratedTo])
        }
        guard all.count > points else { return all }
        let stride = Double(all.count) / Double(points)
        var thinned = (0..<points).map { all[Int(Double($0) * stride)] }
        if thinned.last != all.last { thinned.append(all.last!) }
        return thinned
    }
}

public struct FanOutResult: Codable, Sendable {
    public struct Step: Codable, Sendable {
        public var offeredMessagesPerSecond: Double
        public var offeredDeliveriesPerSecond: Double
        public var messagesSent: Int
        public var messagesAcked: Int
        /// Messages every participant received.
        public var messagesDelivered: Int
        public var deliveries: Int
        /// Length of the sending window.
        public var seconds: Double
        /// Deliveries that arrived during the sending window, per second of it.
        public var deliveriesPerSecond: Double
        /// Publish to last recipient.
        public var latencyMs: LatencyStats
        public var latencyCdf: [[Double]]
        public var serverCpuSeconds: Double?
        public var serverCpuMicrosPerDelivery: Double?
        public var generatorCpuSeconds: Double?
        public var slowConsumers: Int
        /// Rejected ops and error frames.
        public var errors: Int
        /// At least 95% of the offered deliveries arrived during the window, every message
        /// reached every participant, the backlog drained within 0.5 s of the window's end, and
        /// nothing was rejected or dropped.
        public var sustained: Bool
    }

    public struct Peak: Codable, Sendable {
        public var deliveriesPerSecond: Double
        public var step: Int
    }

    public struct StepRef: Codable, Sendable {
        public var step: Int
    }

    public var meetings: Int
    public var participants: Int
    public var messageBytes: Int
    public var stepSeconds: Double
    public var steps: [Step] = []
    public var peak: Peak?
    public var halfPeak: StepRef?
}

public struct JoinStormResult: Codable, Sendable {
    public struct Step: Codable, Sendable {
        public var offeredJoinsPerSecond: Double
        public var attempted: Int
        public var joined: Int
        public var rejected: Int
        public var timedOut: Int
        /// From the first attempt to the last answer.
        public var seconds: Double
        public var joinsPerSecond: Double
        public var latencyMs: LatencyStats
    }

    public struct Failure: Codable, Sendable {
        public var step: Int
        public var reason: String
    }

    public var participantsPerMeeting: Int
    public var timeoutMs: Int
    public var stepSeconds: Double
    public var steps: [Step] = []
    public var peakJoinsPerSecond: Double?
    public var firstFailure: Failure?
}

public struct IdleMemoryResult: Codable, Sendable {
    public var clients: Int
    public var meetings: Int
    public var rssBeforeBytes: Int
    public var rssAfterBytes: Int
    public var bytesPerConnection: Double
    public var settleSeconds: Double
}

public struct FailoverResult: Codable, Sendable {
    public struct Samples: Codable, Sendable {
        public var acceptingMs: [Double]
        public var resumedMs: [Double]
    }

    public struct Ops: Codable, Sendable {
        public var sent: Int
        public var acked: Int
        public var rejected: Int
        public var unknown: Int
    }

    /// Kills that disrupted clients (each gives one sample of each measure).
    public var trials: Int
    public var faults: Int
    public var meetings: Int
    public var clientsPerMeeting: Int
    public var opsPerSecondPerClient: Double
    public var acceptingMs: LatencyStats
    public var resumedMs: LatencyStats
    public var samples: Samples
    public var ops: Ops
    public var anomalies: Int
    /// Kills after which some meeting never accepted an op again, or some client never resumed.
    public var neverRecovered: Int
}
