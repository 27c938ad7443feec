import Foundation
@testable import ParleyChaos
import Subprocess
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
import ParleyTestSupport
#endif

@Suite("parley chaos, end to end", MachineLoad.processes, .serialized)
struct ChaosRunTests {
    static var binary: String { BuiltProducts.parley }

    /// `parley chaos ARGUMENTS --json`: its exit status and its report.
    static func chaos(_ arguments: [String]) async throws -> (TerminationStatus, [String: Any]) {
        let result = try await Subprocess.run(.path(FilePath(binary)), arguments: Arguments(["chaos"] + arguments + ["--json"]),
                                              output: .string(limit: 4 << 20), error: .string(limit: 4 << 20))
        let output = result.standardOutput
        let report = try #require(try? JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any],
                                  "not a JSON report; stderr:\n\(result.standardError)\nstdout:\n\(output)")
        return (result.terminationStatus, report)
    }

    @Test("a short run with one SIGKILL of a single server finds no anomaly and reports as JSON",
          .timeLimit(.minutes(1)))
    func shortRunAgainstSingleServer() async throws {
        let (status, report) = try await Self.chaos(
            ["--target", "single", "--duration", "5", "--meetings", "1", "--clients", "2", "--rate", "10",
             "--fault-interval-ms", "1500", "--faults", "kill", "--max-faults", "1", "--seed", "7", "--settle", "20"])
        #expect(status == .exited(0))
        #expect(Set(report.keys) == ["run", "faults", "ops", "anomalies", "recovery", "notes"])

        let anomalies = try #require(report["anomalies"] as? [String: Any])
        #expect(anomalies["count"] as? Int == 0, "anomalies: \(anomalies)")

        let faults = try #require(report["faults"] as? [String: Any])
        #expect(faults["injected"] as? Int == 1, "faults: \(faults)")
        #expect(faults["byKind"] as? [String: Int] == ["kill": 1])
        let list = try #require(faults["list"] as? [[String: Any]])
        #expect(list.first?["target"] as? String == "server")

        let ops = try #require(report["ops"] as? [String: Int])
        #expect(Set(ops.keys) == ["sent", "acked", "rejected", "unknown"])
        #expect((ops["acked"] ?? 0) > 20, "ops: \(ops)")
        #expect(ops["sent"] == (ops["acked"] ?? 0) + (ops["rejected"] ?? 0) + (ops["unknown"] ?? 0))

        let run = try #require(report["run"] as? [String: Any])
        #expect(run["target"] as? String == "single")
        #expect(run["transports"] as? [String: Int] == ["webSocket": 1, "longPolling": 1])
        #expect(run["data"] == nil, "the temporary directory is removed, so the report names none")

        let recovery = try #require(report["recovery"] as? [String: Any])
        for key in ["acceptingOps", "allResumed"] {
            let summary = try #require(recovery[key] as? [String: Any], "recovery.\(key)")
            #expect(Set(summary.keys) == ["samples", "p50Ms", "p99Ms", "maxMs"])
        }
        // A SIGKILL of the only server disrupts every client: one sample of each.
        #expect((recovery["allResumed"] as? [String: Any])?["samples"] as? Int == 1, "recovery: \(recovery)")
        #expect((recovery["acceptingOps"] as? [String: Any])?["samples"] as? Int == 1, "recovery: \(recovery)")
    }

    @Test("a short run against a zone kills one of its collab servers or managers and finds no anomaly",
          .timeLimit(.minutes(1)))
    func shortRunAgainstZone() async throws {
        let (status, report) = try await Self.chaos(
            ["--target", "zone", "--duration", "6", "--meetings", "2", "--clients", "2", "--rate", "10",
             "--fault-interval-ms", "2000", "--faults", "kill", "--max-faults", "1", "--seed", "11", "--settle", "20"])
        #expect(status == .exited(0))
        let anomalies = try #require(report["anomalies"] as? [String: Any])
        #expect(anomalies["count"] as? Int == 0, "anomalies: \(anomalies)")
        let faults = try #require(report["faults"] as? [String: Any])
        #expect(faults["injected"] as? Int == 1, "faults: \(faults)")
        let target = (faults["list"] as? [[String: Any]])?.first?["role"] as? String
        #expect(target == "collab" || target == "manager", "faults: \(faults)")
        let ops = try #require(report["ops"] as? [String: Int])
        #expect((ops["acked"] ?? 0) > 40, "ops: \(ops)")
    }
}

@Suite("ChaosEmergency: a wedged run still stops what it started", MachineLoad.processes)
struct ChaosEmergencyTests {
    @Test("every child is stopped: by SIGTERM, or by SIGKILL when it ignores SIGTERM", .timeLimit(.minutes(1)))
    func stopsEveryChild() async throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("chaos-emergency-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        let polite = try await ChildProcess.start(executable: "/bin/sleep", arguments: ["30"], logPath: log)
        // An ignored signal stays ignored across exec.
        let stubborn = try await ChildProcess.start(executable: "/bin/sh", arguments: ["-c", "trap '' TERM; exec sleep 30"],
                                                    logPath: log)
        try await Task.sleep(for: .milliseconds(200))  // let sh install its trap
        let stopped = ChaosEmergency.stopChildren(graceSeconds: 1)
        #expect(stopped.count == 2)
        #expect(await polite.waitForExit(within: .seconds(5)))
        #expect(await stubborn.waitForExit(within: .seconds(5)))
        #expect(polite.terminationStatus == .some(.signaled(SIGTERM)))
        #expect(stubborn.terminationStatus == .some(.signaled(SIGKILL)))
    }
}
