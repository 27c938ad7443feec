import Foundation
import Subprocess
import SystemPackage
import ParleyTestSupport
import Testing

/// `parley sim` as a user runs it: the summary, the exit status, shrinking and replaying.
@Suite("parley sim, the command")
struct SimCommandTests {
    static var binary: String { BuiltProducts.parley }

    static func sim(_ arguments: [String]) async throws -> (status: TerminationStatus, output: String, error: String) {
        let result = try await Subprocess.run(.path(FilePath(binary)), arguments: Arguments(["sim"] + arguments),
                                              output: .string(limit: 1 << 20), error: .string(limit: 1 << 20))
        return (result.terminationStatus, result.standardOutput, result.standardError)
    }

    @Test("clean seeds exit 0 with a summary of runs per second and the faults that struck")
    func cleanSeeds() async throws {
        let run = try await Self.sim(["--seeds", "3"])
        #expect(run.status == .exited(0), "\(run.error)")
        #expect(run.output.contains("3 seeds from 1: 0 with violations"), "\(run.output)")
        #expect(run.output.contains("runs/s"))
        #expect(run.output.contains("faults: ") && run.output.contains("crash"), "\(run.output)")
    }

    @Test("a failing seed exits 1; --shrink names the faults it needs, and --faults replays just those, failing again")
    func shrinkAndReplay() async throws {
        let shrunk = try await Self.sim(["--seed", "2", "--break-rule", "skip-epoch-check", "--shrink"])
        #expect(shrunk.status == .exited(1), "\(shrunk.output)\(shrunk.error)")
        let pattern = #/still fails with (\d+) of its (\d+) planned faults \(--seed 2 --faults ([0-9,]+|none)\)/#
        let match = try #require(shrunk.output.firstMatch(of: pattern), "\(shrunk.output)")
        #expect(Int(match.1)! < Int(match.2)!, "\(shrunk.output)")
        let replay = try await Self.sim(["--seed", "2", "--break-rule", "skip-epoch-check", "--faults", String(match.3), "--trace"])
        #expect(replay.status == .exited(1))
        #expect(replay.output.contains("VIOLATION") && replay.output.contains("1 seeds from 2: 1 with violations"), "\(replay.output)")
    }

    @Test("a malformed --faults is refused with what it takes")
    func malformedFaults() async throws {
        let run = try await Self.sim(["--faults", "2,x"])
        #expect(run.status != .exited(0))
        #expect(run.error.contains("--faults takes fault indices separated by commas"), "\(run.error)")
    }
}
