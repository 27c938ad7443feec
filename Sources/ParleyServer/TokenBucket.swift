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
