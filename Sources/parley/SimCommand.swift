import ArgumentParser
import Foundation
import ParleySimulation
import Synchronization

/// `parley sim`: seeded runs of the failover core in a simulated world, offline.
struct SimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sim",
        abstract: "Run the meeting's failover core in a seeded, simulated world and check its guarantees.",
        discussion: """
            Each seed runs a zone of simulated collab servers and managers hosting meetings, a \
            supervisor per machine, and clients on WebSocket and long-polling that send ops, while \
            servers and managers crash, pause (alone or with their machine) and restart, \
            connections and zone links break (losing what was in flight), servers and managers \
            are partitioned off and healed, wall clocks jump, and the store slows down or fails \
            commits. It checks that every acknowledged op is in the store once, at its seq, that \
            no client saw a gap, that at most one host committed under each epoch and at most one \
            manager led each term, and that every client resumed with all its ops answered. No \
            processes, sockets or clocks: a seed replays exactly. The exit status is 1 if any seed \
            found a violation; each such seed is printed. `parley sim --seed N --trace` prints \
            its events, `--shrink` finds the few planned faults it needs, and `--faults` \
            replays those only.
            """)

    @Option(help: "The first seed.")
    var seed: UInt64 = 1

    @Option(help: "How many seeds to run, from --seed on.")
    var seeds: UInt64 = 1

    @Flag(help: "Print every event of the run (for one seed).")
    var trace = false

    @Flag(help: "Shrink a failing seed's fault schedule to the few faults it needs, and print them (for one seed).")
    var shrink = false

    @Option(help: ArgumentHelp("Inject only these planned faults, by index (as --shrink prints them), e.g. 2,5,7, or none.", valueName: "indices"))
    var faults: String?

    @Option(help: "Break a rule on purpose, to see the checker catch it: \(BrokenRule.allCases.map(\.rawValue).joined(separator: ", ")).")
    var breakRule: String?

    @Option(help: "Seeds run side by side, one thread each (each run is single-threaded and replays alike on any).")
    var jobs: Int = ProcessInfo.processInfo.activeProcessorCount

    mutating func validate() throws {
        guard seeds >= 1 else { throw ValidationError("--seeds must be 1 or more") }
        guard jobs >= 1 else { throw ValidationError("--jobs must be 1 or more") }
        if trace, seeds != 1 { throw ValidationError("--trace prints one run: use it with --seeds 1") }
        if shrink, seeds != 1 { throw ValidationError("--shrink works on one run: use it with --seeds 1") }
        if faults != nil, faultsKept == nil {
            throw ValidationError("--faults takes fault indices separated by commas, e.g. 2,5,7; got \(faults!)")
        }
        if let breakRule, BrokenRule(rawValue: breakRule) == nil {
            throw ValidationError("unknown --break-rule \(breakRule); known: \(BrokenRule.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    /// The indices `--faults` names, if it parses.
    var faultsKept: Set<Int>? {
        guard let faults else { return nil }
        if faults == "none" { return [] }
        let indices = faults.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard indices.allSatisfy({ $0 != nil && $0! >= 0 }) else { return nil }
        return Set(indices.map { $0! })
    }

    func run() throws {
        let started = ContinuousClock.now
        var failed: [UInt64] = []
        var total = SimulationReport(seed: seed)
        if !trace && !shrink {
            let (sum, failures) = Self.runSeeds(seed..<(seed + seeds), jobs: jobs, brokenRule: breakRule.flatMap(BrokenRule.init(rawValue:)),
                                                faultsKept: faultsKept)
            total = sum
            for (current, violations) in failures {
                failed.append(current)
                print("seed \(current): \(violations.count) violations")
                violations.prefix(5).forEach { print("  \($0)") }
            }
        }
        for current in seed..<(seed + seeds) where trace || shrink {
            var options = SimulationOptions(seed: current)
            options.brokenRule = breakRule.flatMap(BrokenRule.init(rawValue:))
            options.faultsKept = faultsKept
            if shrink {
                let planned = faultPlan(for: options).filter { options.faultsKept?.contains($0.index) ?? true }
                guard let shrunk = ParleySimulation.shrink(options) else {
                    print("seed \(current) finds no violation: nothing to shrink")
                    return
                }
                let kept = faultPlan(for: options).filter { shrunk.faultsKept!.contains($0.index) }
                print("seed \(current) still fails with \(kept.count) of its \(planned.count) planned faults "
                      + "(--seed \(current) --faults \(kept.isEmpty ? "none" : kept.map { String($0.index) }.joined(separator: ","))):")
                kept.forEach { print("  \($0)") }
                options = shrunk
            }
            let report = simulate(options, keepTrace: trace)
            total.add(report)
            if trace {
                report.trace.forEach { print($0) }
                print("\(report.events) events over \(report.simulatedMs) simulated ms")
            }
            if !report.violations.isEmpty {
                failed.append(current)
                print("seed \(current): \(report.violations.count) violations")
                report.violations.prefix(5).forEach { print("  \($0)") }
            }
        }
        let seconds = Double((ContinuousClock.now - started).components.attoseconds) / 1e18
            + Double((ContinuousClock.now - started).components.seconds)
        print("\(seeds) seeds from \(seed): \(failed.count) with violations; \(total.opsAcked) ops acknowledged, "
              + "\(total.hostings) meetings hosted (first opens and failovers), \(total.checkpointsStored) checkpoints, "
              + "\(total.resumesFromSnapshot) resumes from a snapshot, \(total.standbyReloads) standby copies reloaded"
              + (shrink ? "" : "; \(String(format: "%.1f", Double(seeds) / max(seconds, 0.001))) runs/s"))
        print("faults: " + total.faults.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        if !failed.isEmpty { throw ExitCode(1) }
    }

    /// Runs `range` on `jobs` threads, each taking the next seed; the failures come back in
    /// seed order, whichever thread ran them.
    static func runSeeds(_ range: Range<UInt64>, jobs: Int, brokenRule: BrokenRule?, faultsKept: Set<Int>?)
        -> (SimulationReport, [(UInt64, [String])]) {
        struct Shared {
            var next: UInt64
            var total: SimulationReport
            var failures: [(UInt64, [String])] = []
        }
        let shared = Mutex(Shared(next: range.lowerBound, total: SimulationReport(seed: range.lowerBound)))
        DispatchQueue.concurrentPerform(iterations: min(jobs, range.count)) { _ in
            var total = SimulationReport(seed: range.lowerBound)
            var failures: [(UInt64, [String])] = []
            while true {
                let current: UInt64? = shared.withLock { state in
                    guard state.next < range.upperBound else { return nil }
                    defer { state.next += 1 }
                    return state.next
                }
                guard let current else { break }
                var options = SimulationOptions(seed: current)
                options.brokenRule = brokenRule
                options.faultsKept = faultsKept
                let report = simulate(options)
                total.add(report)
                if !report.violations.isEmpty { failures.append((current, report.violations)) }
            }
            shared.withLock { state in
                state.total.add(total)
                state.failures += failures
            }
        }
        return shared.withLock { state in (state.total, state.failures.sorted { $0.0 < $1.0 }) }
    }
}
