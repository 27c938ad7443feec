import Foundation
import Logging
import NIOCore
import NIOPosix

/// Fan-out: meetings full of participants, chat messages published at increasing offered
/// rates, every delivery timed from publication to the last recipient.
public struct FanOutConfiguration: Sendable {
    public var meetings = 1
    /// Per meeting, every one of them connected over a WebSocket.
    public var participants = 100
    /// Size of each chat message's text.
    public var messageBytes = 128
    public var stepSeconds = 10.0
    /// Offered deliveries per second (messages per second × participants per meeting), in
    /// order; the ladder stops after the first rate that is not sustained.
    public var offeredDeliveries: [Double] = [12_500, 25_000, 50_000, 100_000, 200_000, 400_000, 800_000]
    /// After the ladder, one more step at half of the peak delivered rate.
    public var halfPeak = true
    /// How long a step's last messages get to reach everyone before the step is judged.
    public var drainSeconds = 5.0
    public var joinConcurrency = 32
    public var joinTimeoutMs = 30_000
    public var logger = Logger(label: "parley.bench")

    public init() {}

    public func problems() -> [String] {
        var problems: [String] = []
        if meetings < 1 || meetings > 10_000 { problems.append("meetings must be 1 to 10000") }
        if participants < 2 || participants > 100_000 { problems.append("participants must be 2 to 100000") }
        if messageBytes < 13 || messageBytes > 60_000 { problems.append("the message size must be 13 to 60000 bytes") }
        if !(stepSeconds >= 0.5 && stepSeconds <= 3_600) { problems.append("a step lasts 0.5 s to 1 h") }
        if offeredDeliveries.isEmpty || offeredDeliveries.contains(where: { !($0 > 0) }) {
            problems.append("at least one offered rate, each above 0")
        }
        if meetings * participants > 50_000 { problems.append("at most 50000 participants in all") }
        return problems
    }
}

public enum FanOutBench {
    public static func run(_ configuration: FanOutConfiguration, on server: BenchServer) async throws -> FanOutResult {
        let problems = configuration.problems()
        guard problems.isEmpty else { throw BenchError.setup(problems.joined(separator: "; ")) }
        let logger = configuration.logger
        let group = MultiThreadedEventLoopGroup.singleton

        let (ledger, frames, sink) = instruments()
        /// Meetings full of joined participants, once the server has fanned their joins out.
        func seat(_ title: String) async throws -> [[BenchParticipant]] {
            let meetings = try await BenchMeetings.create(on: server, meetings: configuration.meetings,
                                                          participants: configuration.participants, title: title)
            let participants = meetings.tokens.enumerated().map { meeting, tokens in
                tokens.map { BenchParticipant(meeting: meeting, token: $0, sink: sink) }
            }
            try await BenchParticipant.joinAll(participants.flatMap { $0 }, concurrency: configuration.joinConcurrency,
                                               timeoutMs: configuration.joinTimeoutMs, server: server, group: group)
            logger.info("participants joined", metadata: ["participants": "\(participants.count * configuration.participants)"])
            await frames.waitForQuiet()
            return participants
        }
        let participants = try await seat("fan-out")

        var result = FanOutResult(meetings: configuration.meetings, participants: configuration.participants,
                                  messageBytes: configuration.messageBytes, stepSeconds: configuration.stepSeconds)
        let message = BenchMessage(textBytes: configuration.messageBytes)
        for offered in configuration.offeredDeliveries {
            let step = await runStep(offeredDeliveries: offered, participants, message, ledger, server, configuration)
            result.steps.append(step)
            logger.info("step", metadata: [
                "offered": "\(Int(offered))", "delivered_per_s": "\(Int(step.deliveriesPerSecond))",
                "p99_ms": "\(step.latencyMs.p99 ?? -1)", "sustained": "\(step.sustained)",
            ])
            if step.sustained, step.deliveriesPerSecond > (result.peak?.deliveriesPerSecond ?? 0) {
                result.peak = .init(deliveriesPerSecond: step.deliveriesPerSecond, step: result.steps.count - 1)
            }
            if !step.sustained { break }
            // Let the server settle before the next rate.
            await frames.waitForQuiet(quietMs: 300, limitSeconds: 10)
            await server.meter?.waitUntilIdle(logger: logger)
        }
        await close(participants)
        if configuration.halfPeak, let peak = result.peak {
            // The ladder ended by overloading the server on purpose. Measured on the same
            // meetings and connections, half of the peak then showed latencies tens of times
            // those of the ladder's own steps near that rate, with the server idle before it;
            // fresh meetings and connections, once the server is idle, measure the rate alone.
            await server.meter?.waitUntilIdle(logger: logger)
            let fresh = try await seat("fan-out, half peak")
            await server.meter?.waitUntilIdle(logger: logger)
            let step = await runStep(offeredDeliveries: peak.deliveriesPerSecond / 2, fresh, message, ledger, server,
                                     configuration)
            await close(fresh)
            result.steps.append(step)
            result.halfPeak = .init(step: result.steps.count - 1)
        }
        return result
    }

    /// The ledger every delivery is recorded in, a count of frames received, and the sink
    /// participants report both to.
    static func instruments() -> (DeliveryLedger, FrameCounter, BenchParticipant.Sink) {
        let ledger = DeliveryLedger()
        let frames = FrameCounter()
        let sink = BenchParticipant.Sink(
            benchEvent: { message, at in ledger.delivered(message, at: at) },
            ack: { message in ledger.acked(message) },
            reject: { code in ledger.problem(code: code) },
            error: { code in ledger.problem(code: code) },
            frame: { frames.increment() })
        return (ledger, frames, sink)
    }

    static func close(_ participants: [[BenchParticipant]]) async {
        await withTaskGroup(of: Void.self) { closing in
            for participant in participants.joined() { closing.addTask { await participant.close() } }
        }
    }

    /// Publishes at the offered rate for one step, round-robin over meetings and, within a
    /// meeting, over its participants; then waits for the last deliveries and judges the step.
    static func runStep(offeredDeliveries: Double, _ participants: [[BenchParticipant]], _ message: BenchMessage,
                        _ ledger: DeliveryLedger, _ server: BenchServer,
                        _ configuration: FanOutConfiguration) async -> FanOutResult.Step {
        let perMeeting = configuration.participants
        let messagesPerSecond = offeredDeliveries / Double(perMeeting)
        let step = ledger.beginStep()
        let serverCpuBefore = try? server.meter?.cpuSeconds()
        let ownCpuBefore = ownCpuSeconds()
        let start = monotonicNanos()
        let windowNanos = UInt64(configuration.stepSeconds * 1e9)
        var published = 0
        var turn = [Int](repeating: 0, count: participants.count)
        while true {
            let now = monotonicNanos()
            let elapsed = now - start
            if elapsed >= windowNanos { break }
            let due = Int(Double(elapsed) / 1e9 * messagesPerSecond)
            while published < due {
                let meeting = published % participants.count
                let members = participants[meeting]
                // The next participant still connected publishes.
                for _ in 0..<members.count {
                    let sender = members[turn[meeting] % members.count]
                    turn[meeting] += 1
                    guard sender.isJoined else { continue }
                    let number = ledger.publish(step: step, recipients: perMeeting, at: monotonicNanos())
                    sender.send(message.frame(number))
                    break
                }
                published += 1
            }
            try? await Task.sleep(for: .milliseconds(1))
        }
        ledger.closeWindow()
        let windowSeconds = Double(monotonicNanos() - start) / 1e9
        let windowEnd = monotonicNanos()
        // The backlog: wait until every message reached everyone, or the drain time is over.
        let drainDeadline = ContinuousClock.now + .milliseconds(Int(configuration.drainSeconds * 1_000))
        while ContinuousClock.now < drainDeadline {
            let tally = ledger.tally(step)
            if tally.completed == tally.published { break }
            try? await Task.sleep(for: .milliseconds(20))
        }
        let tally = ledger.tally(step)
        let serverCpu = (try? server.meter?.cpuSeconds()).flatMap { after in serverCpuBefore.map { after - $0 } }
        let ownCpu = ownCpuSeconds().flatMap { after in ownCpuBefore.map { after - $0 } }
        let expected = Int(windowSeconds * messagesPerSecond)
        let backlogSeconds = tally.lastDeliveryNanos > windowEnd ? Double(tally.lastDeliveryNanos - windowEnd) / 1e9 : 0
        let errors = tally.problems.values.reduce(0, +)
        let deliveriesPerSecond = Double(tally.deliveriesInWindow) / windowSeconds
        let sustained = tally.published > 0 && tally.completed == tally.published && errors == 0
            && backlogSeconds <= 0.5 && Double(tally.published) >= 0.95 * Double(expected)
            && deliveriesPerSecond >= 0.95 * Double(expected * perMeeting) / windowSeconds
        return FanOutResult.Step(
            offeredMessagesPerSecond: messagesPerSecond, offeredDeliveriesPerSecond: offeredDeliveries,
            messagesSent: tally.published, messagesAcked: tally.acked, messagesDelivered: tally.completed,
            deliveries: tally.deliveries, seconds: windowSeconds,
            deliveriesPerSecond: deliveriesPerSecond,
            latencyMs: LatencyStats(micros: tally.latency), latencyCdf: LatencyStats.cdf(micros: tally.latency),
            serverCpuSeconds: serverCpu,
            serverCpuMicrosPerDelivery: serverCpu.flatMap { tally.deliveries > 0 ? $0 * 1e6 / Double(tally.deliveries) : nil },
            generatorCpuSeconds: ownCpu, slowConsumers: tally.problems["slow_consumer"] ?? 0, errors: errors,
            sustained: sustained)
    }
}
