import Foundation
@testable import ParleyChaos
import Testing

@Suite("Percentiles: nearest rank, always a measured value")
struct PercentileTests {
    @Test("no samples give no percentiles")
    func empty() {
        #expect(Percentile.nearestRank(50, ofSorted: []) == nil)
        #expect(LatencySummary(samplesMs: []) == LatencySummary(samplesMs: []))
        #expect(LatencySummary(samplesMs: []).p99Ms == nil)
    }

    @Test("one sample is every percentile")
    func single() {
        let summary = LatencySummary(samplesMs: [42])
        #expect(summary.samples == 1 && summary.p50Ms == 42 && summary.p99Ms == 42 && summary.maxMs == 42)
    }

    @Test("p50 and p99 of 1...100 are 50 and 99; of ten samples, p99 is the largest")
    func ranks() {
        let hundred = (1...100).map(Double.init)
        #expect(Percentile.nearestRank(50, ofSorted: hundred) == 50)
        #expect(Percentile.nearestRank(99, ofSorted: hundred) == 99)
        #expect(Percentile.nearestRank(100, ofSorted: hundred) == 100)
        let ten = (1...10).map(Double.init)
        #expect(Percentile.nearestRank(50, ofSorted: ten) == 5)
        #expect(Percentile.nearestRank(99, ofSorted: ten) == 10)
        #expect(Percentile.nearestRank(1, ofSorted: ten) == 1)
    }

    @Test("samples are sorted first, and durations are read in milliseconds")
    func unsortedAndDurations() {
        let summary = LatencySummary(samplesMs: [900, 100, 300, 200, 5_000])
        #expect(summary.p50Ms == 300 && summary.p99Ms == 5_000 && summary.maxMs == 5_000)
        let fromDurations = LatencySummary([.milliseconds(250), .seconds(1), .microseconds(1_500)])
        #expect(fromDurations.p50Ms == 250 && fromDurations.maxMs == 1_000)
        #expect(LatencySummary([.microseconds(1_500)]).p50Ms == 1.5)
    }

    @Test("the JSON form has every key, null when there are no samples")
    func jsonKeys() throws {
        let empty = try JSONSerialization.jsonObject(with: JSONEncoder().encode(LatencySummary(samplesMs: []))) as? [String: Any]
        #expect(Set(empty.map { Array($0.keys) } ?? []) == ["samples", "p50Ms", "p99Ms", "maxMs"])
        #expect(empty?["p50Ms"] is NSNull)
        let decoded = try JSONDecoder().decode(LatencySummary.self, from: JSONEncoder().encode(LatencySummary(samplesMs: [3, 1])))
        #expect(decoded == LatencySummary(samplesMs: [1, 3]))
    }
}

@Suite("Recovery: the time from each fault until meetings accept ops and clients have resumed")
struct RecoveryTests {
    /// A kill at 1 s disrupts both clients of m-1 (resumed at 1.6 s and 1.9 s); m-2 is
    /// untouched. A pause at 5 s disrupts nobody. A kill at 8 s leaves a client of m-2 never
    /// resumed and m-2 never accepting again.
    @Test("samples per disruptive fault: the slowest client and the slowest meeting")
    func measure() {
        let faults = [FaultRecord(atMs: 1_000, kind: .kill, target: "collab-1", role: "collab"),
                      FaultRecord(atMs: 5_000, kind: .pause, target: "manager-2", role: "manager", pauseMs: 800),
                      FaultRecord(atMs: 8_000, kind: .kill, target: "collab-2", role: "collab")]
        let clients = [
            ClientTimeline(client: "c0", meeting: "m-1", changes: [.init(atMs: 1_100, .lost), .init(atMs: 1_600, .resumed)]),
            ClientTimeline(client: "c1", meeting: "m-1", changes: [.init(atMs: 1_150, .lost), .init(atMs: 1_900, .resumed)]),
            // Lost before any fault, and at the third fault for good.
            ClientTimeline(client: "c0", meeting: "m-2", changes: [.init(atMs: 200, .lost), .init(atMs: 300, .resumed),
                                                                  .init(atMs: 8_200, .lost)]),
        ]
        let ops = [
            OpTiming(meeting: "m-1", sentAtMs: 900, ackedAtMs: 1_620),  // sent before the fault: not counted
            OpTiming(meeting: "m-1", sentAtMs: 1_050, ackedAtMs: 1_700),
            OpTiming(meeting: "m-1", sentAtMs: 1_200, ackedAtMs: 1_650),  // the first ack of an op sent after it
            OpTiming(meeting: "m-1", sentAtMs: 1_300, ackedAtMs: nil),
            OpTiming(meeting: "m-2", sentAtMs: 1_100, ackedAtMs: 1_110),
            OpTiming(meeting: "m-2", sentAtMs: 8_100, ackedAtMs: nil),
        ]
        let measured = RecoveryMeasurement.measure(faults: faults, clients: clients, ops: ops)
        #expect(measured.allResumedMs == [900])
        #expect(measured.acceptingOpsMs == [650])
        #expect(measured.neverResumed == 1)
        #expect(measured.neverAccepting == 1)
        #expect(measured.unattributedLosses == 1)
    }

    @Test("a loss is blamed on the latest fault before it, not a later one")
    func attribution() {
        let faults = [FaultRecord(atMs: 1_000, kind: .pause, target: "server", role: "server", pauseMs: 2_000),
                      FaultRecord(atMs: 4_000, kind: .kill, target: "server", role: "server")]
        // The pause is noticed only after the heartbeat timeout, at 2.5 s.
        let clients = [ClientTimeline(client: "c0", meeting: "m-1", changes: [.init(atMs: 2_500, .lost), .init(atMs: 3_100, .resumed),
                                                                             .init(atMs: 4_050, .lost), .init(atMs: 4_400, .resumed)])]
        let ops = [OpTiming(meeting: "m-1", sentAtMs: 1_100, ackedAtMs: 3_200), OpTiming(meeting: "m-1", sentAtMs: 4_100, ackedAtMs: 4_450)]
        let measured = RecoveryMeasurement.measure(faults: faults, clients: clients, ops: ops)
        #expect(measured.allResumedMs == [2_100, 400])
        #expect(measured.acceptingOpsMs == [2_200, 450])
    }
}

@Suite("FaultPlanner: seeded, bounded, reproducible")
struct FaultPlannerTests {
    static let victims = [Victim(name: "collab-1", role: "collab", pid: 11), Victim(name: "collab-2", role: "collab", pid: 12),
                          Victim(name: "manager-1", role: "manager", pid: 21), Victim(name: "manager-2", role: "manager", pid: 22)]

    static func plan(seed: UInt64, victims: [Victim] = victims, kinds: [FaultKind] = FaultKind.allCases) -> [String] {
        var planner = FaultPlanner(seed: seed, kinds: kinds, meanIntervalMs: 3_000, pauseMs: 200...2_000)
        return (0..<50).map { _ in
            let delay = planner.nextDelayMs()
            let fault = planner.choose(from: victims)!
            return "\(delay) \(fault.kind) \(fault.victim.name) \(fault.pauseMs.map(String.init) ?? "-")"
        }
    }

    @Test("the same seed gives the same faults, whatever order the victims are listed in")
    func reproducible() {
        #expect(Self.plan(seed: 7) == Self.plan(seed: 7))
        #expect(Self.plan(seed: 7) == Self.plan(seed: 7, victims: Self.victims.reversed()))
        #expect(Self.plan(seed: 7, kinds: [.pause, .kill]) == Self.plan(seed: 7, kinds: [.kill, .pause]))
        #expect(Self.plan(seed: 7) != Self.plan(seed: 8))
    }

    @Test("only the chosen kinds, every victim in turn, pauses within bounds")
    func bounds() {
        var planner = FaultPlanner(seed: 3, kinds: [.pause], meanIntervalMs: 3_000, pauseMs: 200...2_000)
        var hit: Set<String> = []
        for _ in 0..<400 {
            let fault = planner.choose(from: Self.victims)!
            #expect(fault.kind == .pause)
            #expect((200...2_000).contains(fault.pauseMs ?? 0))
            hit.insert(fault.victim.name)
        }
        #expect(hit.count == 4)
        #expect(planner.choose(from: []) == nil)
        var killer = FaultPlanner(seed: 3, kinds: [.kill], meanIntervalMs: 3_000, pauseMs: 200...2_000)
        #expect(killer.choose(from: Self.victims)?.pauseMs == nil)
    }

    @Test("machine faults hit only machines, process faults only processes; no fitting victim, no fault")
    func machines() {
        let machines = [Victim(name: "m2", role: Victim.machineRole, pid: 2), Victim(name: "m3", role: Victim.machineRole, pid: 3)]
        var planner = FaultPlanner(seed: 5, kinds: FaultKind.allCases, meanIntervalMs: 3_000, pauseMs: 200...2_000)
        var seen: Set<String> = []
        for _ in 0..<400 {
            let fault = planner.choose(from: Self.victims + machines)!
            #expect(fault.kind.hitsMachine == (fault.victim.role == Victim.machineRole), "\(fault)")
            seen.insert("\(fault.kind.rawValue) \(fault.victim.role)")
        }
        #expect(seen.contains("machine-kill machine") && seen.contains("kill collab"))
        var onlyMachines = FaultPlanner(seed: 5, kinds: [.machineKill], meanIntervalMs: 3_000, pauseMs: 200...2_000)
        #expect(onlyMachines.choose(from: Self.victims) == nil)
        #expect(onlyMachines.choose(from: Self.victims + machines)?.victim.role == Victim.machineRole)
    }

    @Test("waits are exponential around the mean, clamped to [mean/10, 4 × mean]")
    func delays() {
        var planner = FaultPlanner(seed: 11, kinds: [.kill], meanIntervalMs: 1_000, pauseMs: 1...2)
        let delays = (0..<20_000).map { _ in planner.nextDelayMs() }
        #expect(delays.allSatisfy { (100...4_000).contains($0) })
        let mean = Double(delays.reduce(0, +)) / Double(delays.count)
        // The clamps move the mean a little: up at the bottom (+~5 ms), down at the top (-~18 ms).
        #expect(abs(mean - 1_000) < 60, "mean \(mean)")
        #expect(delays.filter { $0 < 1_000 }.count > delays.count / 2, "an exponential has more short waits than long")
    }
}

@Suite("ChaosReport: the same content for people and for machines")
struct ChaosReportTests {
    static let report = ChaosReport(
        run: .init(target: "zone", seed: 42, durationSeconds: 60, meetings: 2, clientsPerMeeting: 3, opsPerSecondPerClient: 5,
                   faultIntervalMs: 3_000, transports: ["webSocket": 3, "longPolling": 3], elapsedMs: 61_234, data: nil),
        faults: .init(injected: 2, failed: 1, byKind: ["kill": 1, "pause": 1], byTarget: ["collab-1": 2],
                      list: [FaultRecord(atMs: 2_000, kind: .kill, target: "collab-1", role: "collab"),
                             FaultRecord(atMs: 5_000, kind: .pause, target: "collab-1", role: "collab", pauseMs: 900),
                             FaultRecord(atMs: 9_000, kind: .restart, target: "manager-1", role: "manager",
                                         error: "the supervisor refused 'restart'")]),
        ops: .init(sent: 600, acked: 598, rejected: 0, unknown: 2),
        anomalies: .init(count: 1, list: [.init(meeting: "m-1", code: "gap",
                                                description: "m-1: c1 expected seq 3 next but received 4")]),
        recovery: .init(acceptingOps: LatencySummary(samplesMs: [400, 700]), allResumed: LatencySummary(samplesMs: []),
                        neverAccepting: 0, neverResumed: 1, snapshotResumes: 0, unattributedLosses: 0),
        notes: ["a note"])

    @Test("the text names faults by kind and target, the ops, each anomaly and the percentiles")
    func text() {
        let text = Self.report.text
        for line in ["parley chaos: 60 s against a zone target, 2 meetings × 3 clients (3 WebSocket, 3 long-polling), "
                        + "5 ops/s each, seed 42; took 61.2 s",
                     "faults injected: 2 (and 1 that failed)",
                     "  kill    1   collab-1 ×1",
                     "  pause   1   collab-1 ×1",
                     "  failed: restart manager-1 at 9000 ms: the supervisor refused 'restart'",
                     "ops: 600 sent, 598 acknowledged, 0 rejected, 2 unknown",
                     "anomalies: 1",
                     "  [gap] m-1: c1 expected seq 3 next but received 4",
                     "  accepting ops again    p50 400 ms   p99 700 ms",
                     "  every client resumed   no samples   never: 1",
                     "note: a note"] {
            #expect(text.contains(line + "\n"), "missing: \(line)\nin:\n\(text)")
        }
    }

    @Test("the JSON form decodes to the same report")
    func json() throws {
        let decoded = try JSONDecoder().decode(ChaosReport.self, from: Data(try Self.report.json().utf8))
        #expect(decoded == Self.report)
    }
}
