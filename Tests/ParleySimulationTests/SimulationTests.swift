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

    @Test("seeded runs of a zone with two managers, crashes, pauses, manager crashes and pauses, dropped links and failed commits keep every acknowledged op, once, in order, and every client resumes")
    func seeds() {
        var failures: [String] = []
        var acked = 0, hostings = 0
        for seed in UInt64(1)...100 {
            let report = simulate(SimulationOptions(seed: seed))
            acked += report.opsAcked
            hostings += report.hostings
            if !report.violations.isEmpty { failures.append("seed \(seed): \(report.violations.prefix(3))") }
        }
        #expect(failures.isEmpty, "\(failures.count) seeds failed: \(failures.prefix(5))")
        #expect(acked > 15_000 && hostings > 400, "the runs did something: \(acked) ops acked, \(hostings) meetings hosted")
    }

    /// Seeds that found a bug, kept clean. 2, 3 and 4 (in the world with two managers; seed
    /// 8 in the first world with one): a host that stopped by itself after a failed commit
    /// stayed placed on its server, and every client sent there was told `moved`, forever.
    /// Each fails with the server's report of such a stop taken out.
    @Test("regression seeds stay clean", arguments: [UInt64(2), 3, 4])
    func regressionSeeds(_ seed: UInt64) {
        let report = simulate(SimulationOptions(seed: seed))
        #expect(report.violations.isEmpty, "\(report.violations.prefix(3))")
        #expect(report.faults["commit failed", default: 0] > 0)
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
