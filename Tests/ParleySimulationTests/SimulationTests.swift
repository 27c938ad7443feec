import Foundation
import ParleySimulation
import Testing

/// Runs CPU-bound work on a thread of its own. Swift's cooperative pool has as many threads as
/// cores (2 here), and every async test in the run shares them: seconds of simulation on them
/// would starve the in-process clients of the process tests (seen: pure tests finishing 34 s
/// after they started).
func onOwnThread<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: work()) }.start()
    }
}

@Suite("Simulation: a meeting's failover core in a seeded world")
struct SimulationTests {
    @Test("the same seed replays the same run, event for event")
    func replays() async {
        let (first, second, other) = await onOwnThread {
            (simulate(SimulationOptions(seed: 42), keepTrace: true), simulate(SimulationOptions(seed: 42), keepTrace: true),
             simulate(SimulationOptions(seed: 43), keepTrace: true))
        }
        #expect(first.trace == second.trace)
        #expect(first.events == second.events && first.opsAcked == second.opsAcked)
        #expect(other.trace != first.trace)
    }

    /// 1,000 seeds in two slices, each on a thread of its own, beside the rest of the run.
    static let slices: [ClosedRange<UInt64>] = [1...500, 501...1_000]

    @Test("seeded runs of a zone with two managers and a supervisor per machine, and clients on WebSocket and long-polling, under every fault (crashes, pauses, frozen machines, partitions, broken links losing what was in flight, lost answers retried, wall clock jumps, slow and failed commits) keep every acknowledged op, once, in order, and every client resumes",
          arguments: slices)
    func seeds(_ slice: ClosedRange<UInt64>) async {
        let (failures, total) = await onOwnThread {
            var failures: [String] = []
            var total = SimulationReport(seed: slice.lowerBound)
            for seed in slice {
                let report = simulate(SimulationOptions(seed: seed))
                total.add(report)
                if !report.violations.isEmpty { failures.append("seed \(seed): \(report.violations.prefix(3))") }
            }
            return (failures, total)
        }
        #expect(failures.isEmpty, "\(failures.count) seeds failed: \(failures.prefix(5))")
        // The runs did something: ops were answered, meetings moved, checkpoints were taken,
        // clients fell behind the resume window, copies were rebuilt from the store, and
        // every kind of fault struck.
        #expect(total.opsAcked > 150 * slice.count && total.hostings > 8 * slice.count,
                "\(total.opsAcked) ops acked, \(total.hostings) meetings hosted")
        #expect(total.checkpointsStored > 5 * slice.count && total.resumesFromSnapshot > 0 && total.standbyReloads > 0,
                "\(total.checkpointsStored) checkpoints, \(total.resumesFromSnapshot) resumes from a snapshot, \(total.standbyReloads) reloads")
        let kinds = ["crash", "pause", "manager crash", "manager pause", "zone link dropped", "connection dropped",
                     "message lost in a cut", "partition of a server from the zone", "partition of a server from everything",
                     "partition of a manager", "wall clock jump", "slow store", "commit failed",
                     // Machines frozen with their supervisor; paused processes killed by it.
                     "machine frozen", "killed by its supervisor",
                     // Long-poll answers lost and their requests sent again: taken once, sent again.
                     "long-poll request retried", "long-poll batch sent again", "long-poll send taken once"]
        #expect(kinds.filter { total.faults[$0, default: 0] == 0 }.isEmpty, "faults that never struck: \(total.faults)")
    }

    /// Seeds that catch a bug the simulator found, kept clean. Each fails without its fix
    /// (checked in the world of this commit, which has supervisors and long-polling clients;
    /// a change in the world changes what a seed runs, so they are checked again then):
    /// - 8 and 9: a host that stopped by itself after a failed commit stayed placed on its
    ///   server, and every client sent there was told `moved`, forever (found by seed 8 of the
    ///   first world; 83 of seeds 1-200 fail without `MeetingDirectory.stoppedByThemselves`).
    /// - 31, 102, 49, 83, 137 and 458 (found once checkpoints and a small resume window came
    ///   in): a retried op applied twice. 31 and 102: ops resent with a replay welcome reached
    ///   the host after it had forgotten them (36 of seeds 1-2,000 fail unless
    ///   `MeetingHostState` answers them from the replay it sent). 49 and 83: a client resumed
    ///   from behind the window (a snapshot) and resent an op sent before (33 of seeds 1-2,000
    ///   fail while `ClientSession` still resends it). 137 and 458: a client that had seen its
    ///   own op's event (its ack lost) resent the op after resuming from beyond it (17 of seeds
    ///   1-5,000 fail unless `ClientSession` settles an op on its own event).
    ///
    /// - 27457 and 38465: the simulator itself trapped. A supervisor that woke with its
    ///   machine killed a manager that had crashed meanwhile, and read "manager-1" as collab
    ///   server -1 (`World.number(of:after:)`).
    ///
    /// A lost long-poll answer whose request is sent again is kept answered once by the
    /// broken rule `unnumbered-long-polls` instead, which shows the gap it causes.
    ///
    /// Two bugs no seed reaches any more once the world changed, so their golden traces keep
    /// them fixed: a standby whose promotion outlived its move, released and kept as a standby
    /// holding nothing (seeds 3031, then 6131; `placement-late-hosting-from-standby`), and a
    /// standby reported before its host, remembered after the meeting was placed otherwise
    /// and handed to a later host (seed 55239, the only failure of seeds 1-100,000 at f66c60a;
    /// `placement-unplaced-standby`; 55239 passes without the fix since checkpoints came in).
    @Test("regression seeds stay clean", arguments: [UInt64(8), 9, 31, 102, 49, 83, 137, 458, 27_457, 38_465])
    func regressionSeeds(_ seed: UInt64) async {
        let report = await onOwnThread { simulate(SimulationOptions(seed: seed)) }
        #expect(report.violations.isEmpty, "\(report.violations.prefix(3))")
    }

    @Test("a failing run's fault schedule shrinks to a few faults that still fail it, each of them needed")
    func shrinksTheFaultSchedule() async throws {
        let result: (planned: Int, shrunk: SimulationOptions?, withoutEach: [Bool])? = await onOwnThread {
            // A deposed host committing needs a failover: some fault, but not all a seed plans.
            guard let seed = (UInt64(1)...50).first(where: { seed in
                var options = SimulationOptions(seed: seed)
                options.brokenRule = .skipEpochCheck
                return !simulate(options).violations.isEmpty
            }) else { return nil }
            var options = SimulationOptions(seed: seed)
            options.brokenRule = .skipEpochCheck
            guard let shrunk = shrink(options) else { return (faultPlan(for: options).count, nil, []) }
            let withoutEach = shrunk.faultsKept!.sorted().map { left in
                var trial = shrunk
                trial.faultsKept!.remove(left)
                return simulate(trial).violations.isEmpty
            }
            return (faultPlan(for: options).count, shrunk, withoutEach)
        }
        let (planned, shrunk, withoutEach) = try #require(result, "skip-epoch-check was caught by none of seeds 1-50")
        let kept = try #require(shrunk?.faultsKept, "the failing seed passed when shrunk")
        #expect(!simulate(shrunk!).violations.isEmpty, "the shrunk schedule replays the failure")
        #expect(kept.count < planned, "\(kept.count) of \(planned) faults kept")
        #expect(withoutEach.allSatisfy { $0 }, "every fault kept is needed: \(withoutEach)")
    }

    @Test("each deliberately broken rule is caught within 50 seeds", arguments: BrokenRule.allCases)
    func brokenRulesAreCaught(_ rule: BrokenRule) async {
        let caughtAt: UInt64? = await onOwnThread {
            for seed in UInt64(1)...50 {
                var options = SimulationOptions(seed: seed)
                options.brokenRule = rule
                if !simulate(options).violations.isEmpty { return seed }
            }
            return nil
        }
        #expect(caughtAt != nil, "\(rule.rawValue) went unnoticed for 50 seeds")
    }
}
