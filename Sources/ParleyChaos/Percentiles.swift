/// p50 and p99 of a handful of samples, by the nearest-rank method: the p-th percentile is
/// the smallest sample with at least p% of the samples at or below it, so it is always a
/// value that was measured. Chaos runs have tens to thousands of samples; sorting is fine.
public struct LatencySummary: Codable, Equatable, Sendable {
    public var samples: Int
    public var p50Ms: Double?
    public var p99Ms: Double?
    public var maxMs: Double?

    public init(samplesMs: [Double]) {
        let sorted = samplesMs.sorted()
        samples = sorted.count
        p50Ms = Percentile.nearestRank(50, ofSorted: sorted)
        p99Ms = Percentile.nearestRank(99, ofSorted: sorted)
        maxMs = sorted.last
    }

    public init(_ durations: [Duration]) {
        self.init(samplesMs: durations.map(\.totalMilliseconds))
    }

    // Every key is always present (null when there are no samples), so readers need not guess.
    enum CodingKeys: String, CodingKey { case samples, p50Ms, p99Ms, maxMs }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(samples, forKey: .samples)
        try container.encode(p50Ms, forKey: .p50Ms)
        try container.encode(p99Ms, forKey: .p99Ms)
        try container.encode(maxMs, forKey: .maxMs)
    }
}

public enum Percentile {
    /// The nearest-rank `p`-th percentile (0 < p ≤ 100) of samples sorted ascending; nil
    /// when there are none.
    public static func nearestRank(_ p: Double, ofSorted sorted: [Double]) -> Double? {
        precondition(p > 0 && p <= 100, "a percentile is in (0, 100]")
        guard !sorted.isEmpty else { return nil }
        let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }
}

extension Duration {
    /// This duration in milliseconds, with fractions.
    var totalMilliseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1_000 + Double(attoseconds) / 1e15
    }
}
