/// Rate limiting for one connection: `ratePerSecond` sustained, `burst` at once.
/// Pure: the caller passes the time.
struct TokenBucket: Sendable {
    let ratePerSecond: Double
    let burst: Double
    private var tokens: Double
    private var lastMillis: Int64?

    init(ratePerSecond: Int, burst: Int) {
        precondition(ratePerSecond > 0 && burst > 0)
        self.ratePerSecond = Double(ratePerSecond)
        self.burst = Double(burst)
        tokens = Double(burst)
    }

    /// `perMinute` sustained (any positive rate, below one a second too), `burst` at once.
    init(perMinute: Int, burst: Int) {
        precondition(perMinute > 0 && burst > 0)
        ratePerSecond = Double(perMinute) / 60
        self.burst = Double(burst)
        tokens = Double(burst)
    }

    /// Whether the bucket would be full at `nowMillis`: one idle that long is as good as new.
    func isFull(nowMillis: Int64) -> Bool {
        guard let lastMillis else { return true }
        return tokens + Double(max(0, nowMillis - lastMillis)) * ratePerSecond / 1000 >= burst
    }

    /// Seconds until a token is there, from `nowMillis` (0 when there is one).
    func secondsUntilToken(nowMillis: Int64) -> Double {
        let elapsed = Double(max(0, nowMillis - (lastMillis ?? nowMillis))) / 1000
        let available = min(burst, tokens + elapsed * ratePerSecond)
        return available >= 1 ? 0 : (1 - available) / ratePerSecond
    }

    /// Takes one token if there is one.
    mutating func take(nowMillis: Int64) -> Bool {
        if let lastMillis, nowMillis > lastMillis {
            tokens = min(burst, tokens + Double(nowMillis - lastMillis) * ratePerSecond / 1000)
        }
        lastMillis = max(lastMillis ?? nowMillis, nowMillis)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}

/// Rate limits per client address, for what one address should not do in bulk (sign in,
/// register, create meetings): a ``TokenBucket`` each. Pure: the caller passes the time.
/// It keeps at most `maxAddresses`: when full, it forgets the addresses whose bucket has
/// refilled (they would start full anyway), then the longest idle.
public struct AddressThrottle: Sendable {
    public let perMinute: Int
    public let burst: Int
    public let maxAddresses: Int
    private var buckets: [String: (bucket: TokenBucket, lastMillis: Int64)] = [:]

    public init(perMinute: Int, burst: Int? = nil, maxAddresses: Int = 10_000) {
        self.perMinute = perMinute
        self.burst = burst ?? perMinute
        self.maxAddresses = maxAddresses
    }

    public var addressesKept: Int { buckets.count }

    /// Takes one action for `address`; nil if allowed, else the seconds to wait.
    public mutating func take(_ address: String, nowMillis: Int64) -> Int? {
        var entry = buckets[address] ?? (TokenBucket(perMinute: perMinute, burst: burst), nowMillis)
        defer {
            entry.lastMillis = nowMillis
            buckets[address] = entry
            if buckets.count > maxAddresses { forgetSome(nowMillis: nowMillis) }
        }
        if entry.bucket.take(nowMillis: nowMillis) { return nil }
        // Less a hair, so that floating-point dust does not add a second.
        return max(1, Int((entry.bucket.secondsUntilToken(nowMillis: nowMillis) - 1e-6).rounded(.up)))
    }

    private mutating func forgetSome(nowMillis: Int64) {
        buckets = buckets.filter { !$0.value.bucket.isFull(nowMillis: nowMillis) }
        // Down to nine tenths, the longest idle first, so that this is rare.
        let target = maxAddresses - maxAddresses / 10
        guard buckets.count > target else { return }
        let excess = buckets.count - target
        for (address, _) in buckets.sorted(by: { $0.value.lastMillis < $1.value.lastMillis }).prefix(excess) {
            buckets[address] = nil
        }
    }
}
