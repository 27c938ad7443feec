import ParleyClient

/// The faults a seed injects, decided before the run from a generator of their own: a failing
/// run can then be replayed with some of them left out, and shrunk to the few it needs.
public struct PlannedFault: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable {
        case crash, pause, managerCrash, managerPause, zoneLinkDropped, serverPartition, managerPartition
        case wallClockJump, slowStore, failedCommits, connectionDropped, requestRetried

        /// How often each strikes, out of 100.
        static let weights: [(Kind, Int)] = [
            (.crash, 16), (.pause, 15), (.managerCrash, 4), (.managerPause, 4), (.zoneLinkDropped, 8),
            (.serverPartition, 7), (.managerPartition, 4), (.wallClockJump, 4), (.slowStore, 4),
            (.failedCommits, 14), (.connectionDropped, 13), (.requestRetried, 7),
        ]
    }

    /// Its place in the seed's plan: what `--faults` names.
    public var index: Int
    public var atMs: Int64
    public var kind: Kind
    /// The collab server or manager it strikes, where it strikes one.
    var server: Int
    var manager: Int
    /// How long it lasts: a pause, a partition, a slow store.
    var span: Int64
    /// The rest of its randomness: a partition's extent, a jump's size, which connection breaks,
    /// how many commits fail.
    var detail: UInt64

    public var description: String {
        let what: String
        switch kind {
        case .crash: what = "collab-\(server) crashes"
        case .pause where freezesMachine: what = "machine m\(server) (collab-\(server) and its supervisor) freezes for \(span) ms"
        case .pause: what = "collab-\(server) pauses for \(span) ms"
        case .managerCrash: what = "manager-\(manager) crashes"
        case .managerPause where freezesMachine: what = "machine m\(manager) (manager-\(manager) and its supervisor) freezes for \(span) ms"
        case .managerPause: what = "manager-\(manager) pauses for \(span) ms"
        case .zoneLinkDropped: what = "collab-\(server)'s zone link breaks"
        case .serverPartition: what = "collab-\(server) is cut off from \(partitionExtent == .zone ? "the zone" : "everything") for \(span) ms"
        case .managerPartition: what = "manager-\(manager) is cut off for \(span) ms"
        case .wallClockJump: what = "collab-\(server)'s wall clock jumps \(clockJumpMs) ms"
        case .slowStore: what = "the store is slow for \(span) ms"
        case .failedCommits: what = "the store fails the next \(failedCommits) commits"
        case .connectionDropped: what = "a client connection breaks"
        case .requestRetried: what = "the answers to \(lostAnswers) requests of a long-poll connection are lost, each request sent again"
        }
        return "#\(index) at \(atMs) ms: \(what)"
    }

    var partitionExtent: World.Partition.Extent { detail & 1 == 0 ? .zone : .everything }
    /// Forwards or backwards, by up to an hour: NTP stepping, a VM restored.
    var clockJumpMs: Int64 { Int64(1_000 + detail % 3_599_001) * (detail & (1 << 40) == 0 ? 1 : -1) }
    var failedCommits: Int { 1 + Int(detail % 3) }
    var lostAnswers: Int { 1 + Int((detail >> 8) % 3) }
    /// A pause of the whole machine, supervisor included (a VM paused), rather than of one
    /// process, which its supervisor kills once it is silent for a second.
    var freezesMachine: Bool { detail & 2 != 0 }
}

/// The faults of `options.seed`, in time order, all of them (whatever `faultsKept` says).
public func faultPlan(for options: SimulationOptions) -> [PlannedFault] {
    guard options.faults else { return [] }
    // A stream of its own: the plan does not change with what the run does.
    var rng = SplitMix64(seed: options.seed ^ 0x5EED_FA17_5EED_FA17)
    var plan: [PlannedFault] = []
    var at = Int64.random(in: 1_000...2_000, using: &rng)
    while true {
        var roll = Int.random(in: 0..<100, using: &rng)
        var kind = PlannedFault.Kind.connectionDropped
        for (candidate, weight) in PlannedFault.Kind.weights {
            if roll < weight { kind = candidate; break }
            roll -= weight
        }
        plan.append(PlannedFault(index: plan.count, atMs: at, kind: kind,
                                 server: Int.random(in: 0..<options.servers, using: &rng),
                                 manager: Int.random(in: 0..<options.managers, using: &rng),
                                 span: Int64.random(in: 300...3_000, using: &rng), detail: rng.next()))
        guard at < options.activeMs else { break }
        at += Int64.random(in: 700...2_500, using: &rng)
    }
    return plan
}

/// Shrinks the fault schedule of a failing run: leaves faults out, a half, a quarter, ... then
/// one at a time (delta debugging), as long as the run still finds a violation. Returns the
/// options with the smallest schedule found in `faultsKept`, or nil if the run passes. Each
/// try is one run: a few dozen for a typical plan of about 12 faults.
public func shrink(_ options: SimulationOptions) -> SimulationOptions? {
    func fails(_ kept: [Int]) -> Bool {
        var trial = options
        trial.faultsKept = Set(kept)
        return !simulate(trial).violations.isEmpty
    }
    var kept = options.faultsKept.map { $0.sorted() } ?? faultPlan(for: options).map(\.index)
    guard fails(kept) else { return nil }
    var pieces = 2
    while !kept.isEmpty {
        let size = (kept.count + pieces - 1) / pieces
        var removed = false
        for start in stride(from: 0, to: kept.count, by: size) {
            let candidate = Array(kept[..<start] + kept[min(start + size, kept.count)...])
            if fails(candidate) {
                kept = candidate
                pieces = max(pieces - 1, 2)
                removed = true
                break
            }
        }
        if !removed {
            if size == 1 { break }
            pieces = min(pieces * 2, kept.count)
        }
    }
    var shrunk = options
    shrunk.faultsKept = Set(kept)
    return shrunk
}
