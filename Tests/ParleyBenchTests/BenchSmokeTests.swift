import Foundation
@testable import ParleyBench
import Subprocess
import SystemPackage
import Testing
import ParleyTestSupport

/// Benchmarks are not timed tests: these run each benchmark briefly against a debug build and
/// check that it produces a well-formed, self-consistent result. The figures are not judged.
@Suite("parley bench, smoke runs", MachineLoad.processes, .serialized)
struct BenchSmokeTests {
    static var binary: String { BuiltProducts.parley }

    /// `parley bench ARGUMENTS --output FILE`: the decoded result.
    static func bench(_ arguments: [String]) async throws -> BenchResult {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("bench-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: output) }
        let result = try await Subprocess.run(.path(FilePath(binary)),
                                              arguments: Arguments(["bench"] + arguments + ["--output", output]),
                                              output: .string(limit: 1 << 20), error: .string(limit: 4 << 20))
        #expect(result.terminationStatus == .exited(0), "stderr:\n\(result.standardError)")
        let data = try #require(FileManager.default.contents(atPath: output), "no result written; stderr:\n\(result.standardError)")
        return try JSONDecoder().decode(BenchResult.self, from: data)
    }

    @Test("fan-out: every published message reaches every participant, and the figures add up",
          .timeLimit(.minutes(2)))
    func fanOut() async throws {
        let result = try await Self.bench(["fanout", "--meetings", "2", "--participants", "3", "--step-seconds", "1",
                                           "--deliveries", "150", "--log-level", "error"])
        #expect(result.schema == "parley-bench/1")
        #expect(result.benchmark == "fanout")
        #expect(result.build == "debug")
        let fanout = try #require(result.fanout)
        #expect(fanout.meetings == 2 && fanout.participants == 3)
        let first = try #require(fanout.steps.first)
        for step in fanout.steps {
            #expect(step.messagesSent > 0)
            #expect(step.messagesDelivered == step.messagesSent, "a message did not reach everyone: \(step)")
            #expect(step.messagesAcked == step.messagesSent)
            #expect(step.deliveries == step.messagesSent * 3)
            #expect(step.latencyMs.count == step.messagesDelivered)
            let p50 = try #require(step.latencyMs.p50)
            let p99 = try #require(step.latencyMs.p99)
            let max = try #require(step.latencyMs.max)
            #expect(p50 > 0 && p50 <= p99 && p99 <= max)
            #expect(step.latencyCdf.last?[1] == 100)
            #expect(try #require(step.serverCpuMicrosPerDelivery) > 0)
            #expect(step.errors == 0 && step.slowConsumers == 0)
        }
        // 150 deliveries/s to 3 participants is 50 messages/s, for a second.
        #expect((40...55).contains(first.messagesSent))
        // Whether a step counts as sustained depends on how loaded the machine is (a debug
        // build beside the rest of the tests); the ladder's bookkeeping must hold either way.
        guard let peak = fanout.peak else {
            #expect(fanout.steps.count == 1 && !first.sustained && fanout.halfPeak == nil)
            return
        }
        #expect(fanout.steps[peak.step].sustained)
        let half = try #require(fanout.halfPeak)
        #expect(half.step == fanout.steps.count - 1)
        #expect(abs(fanout.steps[half.step].offeredDeliveriesPerSecond - peak.deliveriesPerSecond / 2) < 1)
    }

    @Test("large meeting: the same meeting on one server, then spread over the servers by the locator; every message reaches everyone",
          .timeLimit(.minutes(3)))
    func largeMeeting() async throws {
        let result = try await Self.bench(["large-meeting", "--participants", "12", "--collabs", "3", "--step-seconds", "1",
                                           "--deliveries", "60", "--log-level", "error"])
        #expect(result.benchmark == "large-meeting")
        let large = try #require(result.largeMeeting)
        #expect(large.participants == 12 && large.collabs == 3)
        // One server: all twelve on the host. Spread: four on each of the three servers.
        #expect(large.oneServer.connections.values.sorted() == [0, 0, 12], "\(large.oneServer.connections)")
        #expect(large.spread.connections.values.sorted() == [4, 4, 4], "\(large.spread.connections)")
        for run in [large.oneServer, large.spread] {
            let step = try #require(run.steps.first)
            #expect(step.messagesSent > 0)
            #expect(step.messagesDelivered == step.messagesSent, "a message did not reach everyone: \(step)")
            #expect(step.deliveries == step.messagesSent * 12)
            #expect(run.hostCpuMicrosPerMessage.count == run.steps.count)
        }
    }

    @Test("join storm: every join of a gentle ladder is welcomed, with its latency", .timeLimit(.minutes(2)))
    func joins() async throws {
        let result = try await Self.bench(["joins", "--participants-per-meeting", "5", "--rates", "10,20",
                                           "--step-seconds", "1", "--log-level", "error"])
        let joins = try #require(result.joins)
        #expect(joins.steps.count == 2)
        #expect(joins.firstFailure == nil)
        for step in joins.steps {
            #expect(step.joined == step.attempted && step.rejected == 0 && step.timedOut == 0)
            #expect(step.latencyMs.count == step.joined)
        }
        #expect(joins.steps.map(\.attempted) == [10, 20])
        #expect(try #require(joins.peakJoinsPerSecond) > 0)
    }

    @Test("idle memory: the server's resident memory is read before and after", .timeLimit(.minutes(2)))
    func idle() async throws {
        let result = try await Self.bench(["idle", "--clients", "40", "--meetings", "2", "--settle-seconds", "0.2",
                                           "--log-level", "error"])
        let idle = try #require(result.idle)
        // One per meeting joins before the baseline; the rest are measured.
        #expect(idle.clients == 38)
        #expect(idle.rssBeforeBytes > 1 << 20)
        #expect(abs(idle.bytesPerConnection - Double(idle.rssAfterBytes - idle.rssBeforeBytes) / 38) < 0.001)
    }

    @Test("bad settings are refused before anything starts, with the reason")
    func refusals() async throws {
        let result = try await Subprocess.run(.path(FilePath(Self.binary)),
                                              arguments: ["bench", "fanout", "--participants", "1"],
                                              output: .string(limit: 1 << 16), error: .string(limit: 1 << 16))
        #expect(result.terminationStatus != .exited(0))
        #expect(result.standardError.contains("participants must be 2 to 100000") == true)
    }
}
