extension Duration {
    /// Whole milliseconds, rounded down: what logs, heartbeats and reports count in.
    public var wholeMilliseconds: Int64 {
        components.seconds * 1_000 + components.attoseconds / 1_000_000_000_000_000
    }
}
