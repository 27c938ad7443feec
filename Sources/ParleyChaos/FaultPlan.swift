import ParleyClient

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a chaos run does to a process.
public enum FaultKind: String, Codable, Sendable, CaseIterable, Comparable {
    /// SIGKILL: a crash. The supervisor (or the single-server target) starts it again.
    case kill
    /// SIGSTOP, then SIGCONT after a bounded pause: a hang. In a zone the supervisor may kill
    /// the process first, once its heartbeats are overdue.
    case pause
    /// `parley ctl restart NAME` (a graceful stop, then a start), or SIGTERM and a new
    /// process for the single-server target.
    case restart
    /// A whole machine of a cluster lost at once: its supervisor and every process of it
    /// SIGKILLed together, as in a power cut. It comes back (its supervisor starts again)
    /// after a bounded downtime, as a machine that reboots.
    case machineKill = "machine-kill"
    /// A whole machine of a cluster cut off from the network while it keeps running (its link
    /// taken down, in a cluster whose machines have network namespaces), then reconnected
    /// after a bounded time.
    case partition

    /// Whether the fault hits a machine rather than a process.
    public var hitsMachine: Bool { self == .machineKill || self == .partition }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// A process a fault may hit.
public struct Victim: Equatable, Sendable {
    /// The role of a victim that is a whole machine of a cluster (its pid: its supervisor's).
    public static let machineRole = "machine"

    /// Stable across restarts: `collab-1`, `manager-2`, `server`.
    public var name: String
    public var role: String
    public var pid: Int32

    public init(name: String, role: String, pid: Int32) {
        self.name = name
        self.role = role
        self.pid = pid
    }
}

/// One fault, decided.
public struct PlannedFault: Equatable, Sendable {
    public var kind: FaultKind
    public var victim: Victim
    /// For `.pause`: how long to keep the process stopped.
    public var pauseMs: Int?
}

/// Decides when the next fault comes and what it is, from a seeded generator: the same seed
/// and the same victims give the same faults. Time and the victims are inputs; it does no I/O.
public struct FaultPlanner: Sendable {
    public var kinds: [FaultKind]
    public var meanIntervalMs: Int
    public var pauseMs: ClosedRange<Int>
    private var rng: SplitMix64

    public init(seed: UInt64, kinds: [FaultKind], meanIntervalMs: Int, pauseMs: ClosedRange<Int>) {
        precondition(!kinds.isEmpty, "at least one kind of fault")
        precondition(meanIntervalMs > 0 && pauseMs.lowerBound > 0)
        // Sorted and unique, so the order kinds were given in does not change the plan.
        self.kinds = Array(Set(kinds)).sorted()
        self.meanIntervalMs = meanIntervalMs
        self.pauseMs = pauseMs
        rng = SplitMix64(seed: seed)
    }

    /// The wait before the next fault: exponential around the mean (faults arrive as a Poisson
    /// process), kept within [mean/10, 4 × mean] so a run neither bunches nor stalls.
    public mutating func nextDelayMs() -> Int {
        let uniform = Double(rng.next() >> 11) / Double(1 << 53)  // [0, 1)
        let exponential = -Double(meanIntervalMs) * log1p(-uniform)
        let low = max(1, meanIntervalMs / 10)
        return min(max(Int(exponential.rounded()), low), 4 * meanIntervalMs)
    }

    /// A fault on one of `victims`, or nil if none can be hit by the chosen kinds. Victims are
    /// taken in name order, so the caller's order does not matter; machines are hit only by
    /// machine faults, processes only by process faults.
    public mutating func choose(from victims: [Victim]) -> PlannedFault? {
        let fits = { (kind: FaultKind, victim: Victim) in kind.hitsMachine == (victim.role == Victim.machineRole) }
        let sorted = victims.sorted { $0.name < $1.name }.filter { victim in kinds.contains { fits($0, victim) } }
        guard !sorted.isEmpty else { return nil }
        let victim = sorted[Int(rng.next(upperBound: UInt64(sorted.count)))]
        let usable = kinds.filter { fits($0, victim) }
        let kind = usable[Int(rng.next(upperBound: UInt64(usable.count)))]
        let pause = kind == .pause
            ? pauseMs.lowerBound + Int(rng.next(upperBound: UInt64(pauseMs.count)))
            : nil
        return PlannedFault(kind: kind, victim: victim, pauseMs: pause)
    }
}
