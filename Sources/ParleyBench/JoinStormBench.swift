import Foundation
import Histogram
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Join storm: participants join (connect, hello, welcome) at increasing offered rates into
/// fresh meetings, until the first join is refused or times out.
public struct JoinStormConfiguration: Sendable {
    public var participantsPerMeeting = 50
    /// Offered joins per second, in order; the ladder stops after the first step with a failure.
    public var offeredJoins: [Double] = [50, 100, 200, 400, 800, 1_600, 3_200, 6_400]
    public var stepSeconds = 2.0
    /// A join without a welcome after this long counts as timed out.
    public var timeoutMs = 5_000
    public var logger = Logger(label: "parley.bench")

    public init() {}

    public func problems() -> [String] {
        var problems: [String] = []
        if participantsPerMeeting < 1 || participantsPerMeeting > 10_000 { problems.append("participants per meeting must be 1 to 10000") }
        if offeredJoins.isEmpty || offeredJoins.contains(where: { !($0 > 0) }) { problems.append("at least one offered rate, each above 0") }
        if !(stepSeconds >= 0.1 && stepSeconds <= 600) { problems.append("a step lasts 0.1 s to 10 min") }
        if timeoutMs < 100 { problems.append("the join timeout must be at least 100 ms") }
        if offeredJoins.contains(where: { $0 * stepSeconds > 15_000 }) { problems.append("at most 15000 joins in one step") }
        return problems
    }
}

public enum JoinStormBench {
    public static func run(_ configuration: JoinStormConfiguration, on server: BenchServer) async throws -> JoinStormResult {
        let problems = configuration.problems()
        guard problems.isEmpty else { throw BenchError.setup(problems.joined(separator: "; ")) }
        let group = MultiThreadedEventLoopGroup.singleton
        let frames = FrameCounter()
        var result = JoinStormResult(participantsPerMeeting: configuration.participantsPerMeeting,
                                     timeoutMs: configuration.timeoutMs, stepSeconds: configuration.stepSeconds)
        for (index, offered) in configuration.offeredJoins.enumerated() {
            let count = max(1, Int(offered * configuration.stepSeconds))
            let meetingCount = (count + configuration.participantsPerMeeting - 1) / configuration.participantsPerMeeting
            // Tokens come first and are not timed: a join here is the connection, hello and welcome.
            let meetings = try await BenchMeetings.create(on: server, meetings: meetingCount,
                                                          participants: configuration.participantsPerMeeting,
                                                          title: "join storm \(index + 1)")
            let tokens = Array(meetings.tokens.flatMap { $0 }.prefix(count))
            let sink = BenchParticipant.Sink(frame: { frames.increment() })
            let participants = tokens.enumerated().map { position, token in
                BenchParticipant(meeting: position / configuration.participantsPerMeeting, token: token, sink: sink)
            }
            let (step, failure) = await runStep(offered: offered, participants, configuration, server: server, group: group)
            result.steps.append(step)
            configuration.logger.info("join step", metadata: [
                "offered": "\(Int(offered))", "joined_per_s": "\(Int(step.joinsPerSecond))",
                "p99_ms": "\(step.latencyMs.p99 ?? -1)", "failed": "\(step.rejected + step.timedOut)",
            ])
            await withTaskGroup(of: Void.self) { closing in
                for participant in participants { closing.addTask { await participant.close() } }
            }
            await frames.waitForQuiet(quietMs: 300, limitSeconds: 20)
            if let failure {
                result.firstFailure = .init(step: index, reason: failure)
                break
            }
            result.peakJoinsPerSecond = max(result.peakJoinsPerSecond ?? 0, step.joinsPerSecond)
        }
        return result
    }

    /// Starts join `i` at `i / offered` seconds (latency counts from that moment, so a late
    /// generator does not hide a slow server) and waits for every answer.
    static func runStep(offered: Double, _ participants: [BenchParticipant], _ configuration: JoinStormConfiguration,
                        server: BenchServer, group: any EventLoopGroup) async -> (JoinStormResult.Step, String?) {
        let tally = JoinTally()
        let start = monotonicNanos()
        await withTaskGroup(of: Void.self) { joins in
            for (index, participant) in participants.enumerated() {
                let scheduled = start + UInt64(Double(index) / offered * 1e9)
                let now = monotonicNanos()
                if scheduled > now { try? await Task.sleep(for: .nanoseconds(Int64(scheduled - now))) }
                joins.addTask {
                    var failure: String?
                    var timedOut = false
                    do {
                        try await participant.join(group: group, host: server.host, port: server.port,
                                                   timeoutMs: configuration.timeoutMs)
                    } catch BenchParticipant.JoinError.timedOut(let ms) {
                        failure = "a join got no welcome within \(ms) ms"
                        timedOut = true
                    } catch {
                        failure = "a join failed: \(error)"
                    }
                    tally.record(scheduled: scheduled, done: monotonicNanos(), failure: failure, timedOut: timedOut)
                }
            }
        }
        let counts = tally.state.withLock { $0 }
        let seconds = Double(max(counts.lastNanos, start + 1) - start) / 1e9
        let step = JoinStormResult.Step(
            offeredJoinsPerSecond: offered, attempted: participants.count, joined: counts.joined, rejected: counts.rejected,
            timedOut: counts.timedOut, seconds: seconds, joinsPerSecond: Double(counts.joined) / seconds,
            latencyMs: LatencyStats(micros: counts.latency))
        return (step, counts.firstFailure)
    }
}

/// The answers of one step's joins, as they come in.
private final class JoinTally: Sendable {
    struct Counts {
        var latency = Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)
        var joined = 0
        var rejected = 0
        var timedOut = 0
        var firstFailure: String?
        var lastNanos: UInt64 = 0
    }

    let state = Mutex(Counts())

    func record(scheduled: UInt64, done: UInt64, failure: String?, timedOut: Bool) {
        state.withLock { counts in
            counts.lastNanos = max(counts.lastNanos, done)
            guard let failure else {
                counts.joined += 1
                _ = counts.latency.record(max(1, (done - scheduled) / 1_000))
                return
            }
            if timedOut { counts.timedOut += 1 } else { counts.rejected += 1 }
            if counts.firstFailure == nil { counts.firstFailure = failure }
        }
    }
}
