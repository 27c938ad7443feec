import Foundation
import ParleyChaos
import Subprocess
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("parley chaos, end to end")
struct ChaosRunTests {
    static var binary: String {
        if let given = ProcessInfo.processInfo.environment["PARLEY_BINARY"] { return given }
        // The test bundle runs from the build products folder, where `parley` is built too.
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return me.deletingLastPathComponent().appendingPathComponent("parley").path
    }

    @Test("a short run with one SIGKILL of a single server finds no anomaly and reports as JSON",
          .timeLimit(.minutes(1)))
    func shortRunAgainstSingleServer() async throws {
        let arguments = ["chaos", "--target", "single", "--duration", "5", "--meetings", "1", "--clients", "2",
                         "--rate", "10", "--fault-interval-ms", "1500", "--faults", "kill", "--max-faults", "1",
                         "--seed", "7", "--settle", "20", "--json"]
        let result = try await Subprocess.run(.path(FilePath(Self.binary)), arguments: Arguments(arguments),
                                              output: .string(limit: 4 << 20), error: .string(limit: 4 << 20))
        let output = result.standardOutput
        #expect(result.terminationStatus == .exited(0), "stderr:\n\(result.standardError)\nstdout:\n\(output)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any],
                                  "not a JSON object:\n\(output)")
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
}
