import ParleyClient
import ParleyCore
import ParleyProtocol
import ParleyServer
import ParleyZone

/// One seeded run of the zone's failover core in a simulated world: the real pure machines
/// (`ManagerElection` and `Placement` in the managers, ``MeetingHostState``, standby
/// `MeetingLog` copies, `StandbyFollower` and `TermFence` on the collab servers,
/// `Supervision` in each machine's supervisor, `PollDelivery` in long-poll sessions, the
/// SDK's ``ClientSession`` in the clients) wired through a simulated network, store and
/// clock. One thread, no I/O, no wall clock: the same seed replays the same run, event for
/// event, in any process.
///
/// The shells around the machines are the simulator's own (see `World`): they do what
/// `ManagerRole`, `CollabRole`, `MeetingHost`, `PollSessions` and the supervisor do,
/// without sockets.
public struct SimulationOptions: Sendable, Equatable {
    public var seed: UInt64
    public var servers = 3
    public var managers = 2
    public var meetings = 2
    public var clientsPerMeeting = 2
    /// Simulated time during which clients send and faults are injected.
    public var activeMs: Int64 = 20_000
    /// Simulated time after the faults stop for every client to resume and every op to be answered.
    public var settleMs: Int64 = 30_000
    public var faults = true
    /// A host checkpoints after this many committed entries.
    public var checkpointEveryEntries = 16
    /// Small, so that resumes from a snapshot and standby reloads happen within a run; and,
    /// like a busy meeting's two minutes, its age keeps more entries in the tail than
    /// `minEntries` (which sizes the op outcomes a meeting remembers for retries).
    public var resumeWindow = ResumeWindow(minEntries: 8, minAgeMillis: 3_000, maxEntries: 24)
    /// The planned faults (by index, see ``faultPlan(for:)``) the run injects; nil: all.
    public var faultsKept: Set<Int>?
    /// A rule broken on purpose, to show the checker catches it.
    public var brokenRule: BrokenRule?

    public init(seed: UInt64) { self.seed = seed }
}

/// Rules the simulator can break on purpose: each must be caught by an invariant.
public enum BrokenRule: String, Sendable, CaseIterable {
    /// The store appends whatever epoch a commit carries: a deposed host keeps committing.
    case skipEpochCheck = "skip-epoch-check"
    /// The client is told its op is done before the store has it.
    case ackBeforeCommit = "ack-before-commit"
    /// A resume replays from one seq too far: the client misses an entry.
    case resumeFromWrongSeq = "resume-from-wrong-seq"
    /// The store grants every lease claim, compared or not: two managers can lead at once.
    case twoManagersOneTerm = "two-managers-one-term"
    /// A checkpoint names the seq before the state it holds: a meeting rebuilt from it
    /// applies that entry twice.
    case checkpointOneSeqEarly = "checkpoint-one-seq-early"
    /// Long-poll requests are taken as they come, their numbers ignored: a receive whose
    /// answer was lost and which is sent again gets the next frames, and the client a gap.
    case unnumberedLongPolls = "unnumbered-long-polls"
}

public struct SimulationReport: Sendable {
    public var seed: UInt64
    public var events = 0
    public var simulatedMs: Int64 = 0
    public var opsSent = 0
    public var opsAcked = 0
    /// Meetings opened or promoted on a server (the first opens included).
    public var hostings = 0
    /// Checkpoints the store took.
    public var checkpointsStored = 0
    /// Resumes answered with a snapshot: the client was behind the resume window.
    public var resumesFromSnapshot = 0
    /// Standby copies rebuilt from the store because their host no longer held what they lacked.
    public var standbyReloads = 0
    public var faults: [String: Int] = [:]
    public var violations: [String] = []
    /// The events of the run, in order, with time and node (kept when asked for).
    public var trace: [String] = []

    /// An empty report of `seed`; also a place to add up several runs (``add(_:)``).
    public init(seed: UInt64) { self.seed = seed }

    /// Adds up another run's counts (not its violations or trace).
    public mutating func add(_ run: SimulationReport) {
        events += run.events
        opsSent += run.opsSent
        opsAcked += run.opsAcked
        hostings += run.hostings
        checkpointsStored += run.checkpointsStored
        resumesFromSnapshot += run.resumesFromSnapshot
        standbyReloads += run.standbyReloads
        faults.merge(run.faults, uniquingKeysWith: +)
    }
}

/// Runs one seed. `keepTrace` keeps the readable event trace (for a failing seed).
public func simulate(_ options: SimulationOptions, keepTrace: Bool = false) -> SimulationReport {
    var world = World(options: options, keepTrace: keepTrace)
    world.run()
    return world.report
}

/// The trace, appended to from non-mutating code (one run, one thread).
final class TraceLines {
    var lines: [String] = []
}
