import ParleySimulation
import Testing

@Suite("Simulation: a meeting's failover core in a seeded world")
struct SimulationTests {
    @Test("the same seed replays the same run, event for event")
    func replays() {
        let first = simulate(SimulationOptions(seed: 42), keepTrace: true)
        let second = simulate(SimulationOptions(seed: 42), keepTrace: true)
        #expect(first.trace == second.trace)
        #expect(first.events == second.events && first.opsAcked == second.opsAcked)
        #expect(simulate(SimulationOptions(seed: 43), keepTrace: true).trace != first.trace)
    }

    /// 1,000 seeds in four slices, which Swift Testing runs side by side on both cores.
    static let slices: [ClosedRange<UInt64>] = [1...250, 251...500, 501...750, 751...1_000]

    @Test("seeded runs of a zone with two managers under every fault (crashes, pauses, partitions, broken links losing what was in flight, wall clock jumps, slow and failed commits) keep every acknowledged op, once, in order, and every client resumes",
          arguments: slices)
    func seeds(_ slice: ClosedRange<UInt64>) {
        var failures: [String] = []
        var acked = 0, hostings = 0
        var faults: [String: Int] = [:]
        for seed in slice {
            let report = simulate(SimulationOptions(seed: seed))
            acked += report.opsAcked
            hostings += report.hostings
            faults.merge(report.faults, uniquingKeysWith: +)
            if !report.violations.isEmpty { failures.append("seed \(seed): \(report.violations.prefix(3))") }
        }
        #expect(failures.isEmpty, "\(failures.count) seeds failed: \(failures.prefix(5))")
        // The runs did something: ops were answered, meetings moved, and every kind of fault struck.
        #expect(acked > 150 * slice.count && hostings > 8 * slice.count, "\(acked) ops acked, \(hostings) meetings hosted")
        let kinds = ["crash", "pause", "manager crash", "manager pause", "zone link dropped", "connection dropped",
                     "message lost in a cut", "partition of a server from the zone", "partition of a server from everything",
                     "partition of a manager", "wall clock jump", "slow store", "commit failed"]
        #expect(kinds.filter { faults[$0, default: 0] == 0 }.isEmpty, "faults that never struck: \(faults)")
    }

    /// Seeds that catch a bug the simulator found, kept clean. Each fails without its fix
    /// (checked in the world of this commit; adding faults changes what a seed runs):
    /// - 3 and 4: a host that stopped by itself after a failed commit stayed placed on its
    ///   server, and every client sent there was told `moved`, forever (found by seed 8 of the
    ///   first world; 36 of seeds 1-100 fail without `MeetingDirectory.stoppedByThemselves`).
    /// - 5270: a standby whose promotion outlived its move hosted the meeting late; the
    ///   manager's release took its copy too, and the placement kept it as the standby of a
    ///   meeting it held nothing of (`Placement.hosting` now tells it to follow again).
    @Test("regression seeds stay clean", arguments: [UInt64(3), 4, 5_270])
    func regressionSeeds(_ seed: UInt64) {
        let report = simulate(SimulationOptions(seed: seed))
        #expect(report.violations.isEmpty, "\(report.violations.prefix(3))")
    }

    @Test("each deliberately broken rule is caught within 50 seeds", arguments: BrokenRule.allCases)
    func brokenRulesAreCaught(_ rule: BrokenRule) {
        var caughtAt: UInt64?
        for seed in UInt64(1)...50 {
            var options = SimulationOptions(seed: seed)
            options.brokenRule = rule
            if !simulate(options).violations.isEmpty { caughtAt = seed; break }
        }
        #expect(caughtAt != nil, "\(rule.rawValue) went unnoticed for 50 seeds")
    }
}
