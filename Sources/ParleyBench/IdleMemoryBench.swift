import Foundation
import Logging
import NIOCore
import NIOPosix

/// Memory per idle connection: the server's resident memory before and after thousands of
/// participants join and then say nothing.
public struct IdleMemoryConfiguration: Sendable {
    public var clients = 5_000
    public var meetings = 50
    /// After the last join, how long the server gets to settle before the reading.
    public var settleSeconds = 5.0
    public var joinConcurrency = 32
    public var logger = Logger(label: "parley.bench")

    public init() {}

    public func problems() -> [String] {
        var problems: [String] = []
        if meetings < 1 { problems.append("at least one meeting") }
        if clients < 2 * meetings { problems.append("at least two clients per meeting") }
        if clients > 50_000 { problems.append("at most 50000 clients") }
        if !(settleSeconds >= 0 && settleSeconds <= 600) { problems.append("the settle time must be 0 to 600 s") }
        return problems
    }
}

public enum IdleMemoryBench {
    /// One participant per meeting joins first, so the baseline already has every meeting
    /// loaded and the server's buffers warm; the growth is then divided among the others.
    public static func run(_ configuration: IdleMemoryConfiguration, on server: BenchServer) async throws -> IdleMemoryResult {
        let problems = configuration.problems()
        guard problems.isEmpty else { throw BenchError.setup(problems.joined(separator: "; ")) }
        guard let meter = server.meter else { throw BenchError.setup("the server's pid is needed to read its memory") }
        let group = MultiThreadedEventLoopGroup.singleton
        let perMeeting = configuration.clients / configuration.meetings
        let meetings = try await BenchMeetings.create(on: server, meetings: configuration.meetings,
                                                      participants: perMeeting, title: "idle")
        let frames = FrameCounter()
        let sink = BenchParticipant.Sink(frame: { frames.increment() })
        let participants = meetings.tokens.enumerated().map { meeting, tokens in
            tokens.map { BenchParticipant(meeting: meeting, token: $0, sink: sink) }
        }
        let first = participants.map { $0[0] }
        let rest = participants.flatMap { $0.dropFirst() }
        try await BenchParticipant.joinAll(first, concurrency: configuration.joinConcurrency, timeoutMs: 60_000,
                                            server: server, group: group)
        await frames.waitForQuiet()
        try await Task.sleep(for: .milliseconds(Int(configuration.settleSeconds * 1_000)))
        let before = try meter.residentBytes()
        try await BenchParticipant.joinAll(rest, concurrency: configuration.joinConcurrency, timeoutMs: 60_000,
                                            server: server, group: group)
        await frames.waitForQuiet()
        try await Task.sleep(for: .milliseconds(Int(configuration.settleSeconds * 1_000)))
        let after = try meter.residentBytes()
        let stillJoined = rest.filter(\.isJoined).count
        configuration.logger.info("idle clients measured", metadata: [
            "clients": "\(rest.count)", "still_joined": "\(stillJoined)", "rss_before": "\(before)", "rss_after": "\(after)",
        ])
        await withTaskGroup(of: Void.self) { closing in
            for participant in first + rest { closing.addTask { await participant.close() } }
        }
        guard stillJoined == rest.count else {
            throw BenchError.measurement("\(rest.count - stillJoined) of \(rest.count) idle clients were disconnected")
        }
        return IdleMemoryResult(clients: rest.count, meetings: configuration.meetings, rssBeforeBytes: before,
                                rssAfterBytes: after, bytesPerConnection: Double(after - before) / Double(rest.count),
                                settleSeconds: configuration.settleSeconds)
    }
}
