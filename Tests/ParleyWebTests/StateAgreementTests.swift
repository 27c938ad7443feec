import Foundation
import ParleyClient
import ParleyCore
import ParleyProtocol
import ParleyTestSupport
import Subprocess
import SystemPackage
import Testing

/// The meeting page keeps its own copy of the meeting with `state.js`, a second
/// implementation of the rules in `Meeting+Rules.swift`, written apart from it. Swift writes
/// random op sequences (the replay property's `MeetingScript`) with the state after each op,
/// and Node runs `state.js` over them (`Tests/js/check-state-agreement.mjs`): the first op
/// after which the two states differ fails the test, by name.
@Suite("The meeting page's state.js agrees with the Swift meeting rules", MachineLoad.server)
struct StateAgreementTests {
    static let traceCount = 240
    static let stepsPerTrace = 120
    static let checker = BrowserTests.repository.appendingPathComponent("Tests/js/check-state-agreement.mjs").path

    @Test("state.js, run over 240 random op sequences the Swift rules accepted, holds the Swift state after every op")
    func pageStateAgrees() async throws {
        let traces = (1...UInt64(Self.traceCount)).map { Self.trace(seed: $0) }
        let ops = traces.reduce(0) { $0 + $1.steps.count }
        // Most ops are refused by the rules; enough are accepted to mean something.
        #expect(ops > Self.traceCount * 20, "\(ops) ops accepted")
        let (status, output) = try await Self.check(traces)
        #expect(status.isSuccess, "\(output)")
        #expect(output.contains("\(Self.traceCount) traces, \(ops) ops: state.js agrees"), "\(output)")
    }

    @Test("a state that differs after one op fails the check, naming that op and the field")
    func differenceNamesTheOp() async throws {
        var trace = Self.trace(seed: 7)
        let index = try #require(trace.steps.firstIndex { $0.event.contains("\"chat\":{") }, "seed 7 has a chat")
        // As if the Swift rules kept a chat under another text than state.js does.
        trace.steps[index].state = trace.steps[index].state.replacingOccurrences(of: "\"text\":\"chat ", with: "\"text\":\"Chat ")
        let (status, output) = try await Self.check([trace])
        #expect(!status.isSuccess)
        let seq = try #require(trace.steps[index].event.firstMatch(of: /"seq":(\d+)/)?.1)
        #expect(output.contains("trace agreement-7, seq \(seq): after {\"chat\""), "\(output)")
        #expect(output.contains(".text is \"chat "), "\(output)")
    }

    /// One random session: the empty meeting, then each op the rules accepted, as the event a
    /// client receives, with the meeting's state after it as a snapshot welcome carries it.
    struct Trace {
        var name: String
        var initial: String
        var steps: [(event: String, state: String)]

        var json: String {
            let steps = self.steps.map { #"{"event":\#($0.event),"state":\#($0.state)}"# }
            return #"{"name":"\#(name)","initial":\#(initial),"steps":[\#(steps.joined(separator: ","))]}"#
        }
    }

    static func trace(seed: UInt64) -> Trace {
        var random = SeededSteps(seed: seed)
        var log = MeetingLog(meeting: Meeting(id: MeetingID("m-\(seed)"), title: "Agreement \(seed)"), epoch: Epoch(1))
        let encoder = JSONEncoder()
        func state() -> String { String(decoding: try! encoder.encode(log.meeting), as: UTF8.self) }
        var trace = Trace(name: "agreement-\(seed)", initial: state(), steps: [])
        var now: Millis = 1_767_261_600_000
        for index in 0..<stepsPerTrace {
            now += 250
            let (operation, issuer) = MeetingScript.operation(random.next(), in: log.meeting)
            let opID = issuer == .system ? nil : OpID("op-\(index)")
            guard case .sequenced(let entry) = log.submit(operation, by: issuer, opID: opID, at: now) else { continue }
            _ = log.committed(through: entry.seq)
            let event = String(decoding: FrameEncoder().encode(.event(.visible(entry))), as: UTF8.self)
            trace.steps.append((event, state()))
        }
        return trace
    }

    /// Writes `traces` to a file of its own and runs the Node checker over it.
    static func check(_ traces: [Trace]) async throws -> (TerminationStatus, String) {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("parley-state-traces-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try ("[" + traces.map(\.json).joined(separator: ",") + "]").write(toFile: file, atomically: true, encoding: .utf8)
        let result = try await Subprocess.run(.name("node"), arguments: [checker, file],
                                              output: .string(limit: 1 << 20), error: .string(limit: 1 << 20))
        return (result.terminationStatus, result.standardOutput + result.standardError)
    }
}

/// Steps drawn from a seed: the same seed, the same session.
struct SeededSteps {
    var random: SplitMix64

    init(seed: UInt64) { random = SplitMix64(seed: seed) }

    mutating func next() -> ScriptStep {
        // About a third are joins, so that the other ops have people to act.
        let kind = Int.random(in: 0...39, using: &random)
        return ScriptStep(kind: kind > MeetingScript.kinds.upperBound ? 0 : kind, actor: Int.random(in: 0...6, using: &random),
                          target: Int.random(in: 0...6, using: &random), argument: Int.random(in: 0...3, using: &random), flags: 0)
    }
}
