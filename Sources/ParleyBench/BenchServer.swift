import Foundation
import NIOCore
import NIOPosix
import ParleyChaos
import ParleyClient
import ParleyCore
import Synchronization

/// The server under load: one this process started (`parley serve --single` in a fresh
/// directory), or one already running that the caller names by URL and pid.
public struct BenchServer: Sendable {
    public var url: URL
    /// For CPU and memory readings; nil if the server is elsewhere (then they are omitted).
    public var pid: Int32?
    var host: String { url.host ?? "127.0.0.1" }
    var port: Int { url.port ?? 80 }
    var meter: ProcessMeter? { pid.map(ProcessMeter.init(pid:)) }

    public init(url: URL, pid: Int32?) {
        self.url = url
        self.pid = pid
    }

    /// Options for a server started for benchmarks: the per-connection rate limit raised out
    /// of the way (one generator client may publish thousands of messages a second), a send
    /// queue deep enough for a burst to 1,000 participants, and logging that does not itself
    /// become the load. Durability stays the default: SQLite fsyncs every group commit.
    public static let benchOptions = [
        "--frames-per-second", "1000000", "--burst", "1000000", "--log-level", "warning",
    ]

    /// Starts `executable serve --single` in `directory`, runs `body`, and stops the server
    /// whatever happens.
    public static func withStarted<T: Sendable>(
        executable: String, directory: String, options: [String] = benchOptions,
        _ body: (BenchServer) async throws -> T
    ) async throws -> T {
        let target = SingleServerTarget(executable: executable, directory: directory, options: options)
        do {
            let url = try await target.start()
            guard let pid = await target.victims().first?.pid else {
                throw BenchError.setup("the server exited right after starting; see \(target.logPath)")
            }
            let result = try await body(BenchServer(url: url, pid: pid))
            await target.stop()
            return result
        } catch {
            await target.stop()
            throw error
        }
    }
}

/// Meetings, tokens and joined participants: what every load scenario starts from.
struct BenchMeetings {
    /// Per meeting, its participants' tokens (the first is the host's).
    var tokens: [[String]]
    /// The meetings, in the same order.
    var ids: [MeetingID] = []

    /// Creates `meetings` meetings with `participants` tokens each, issuing tokens
    /// `concurrency` at a time.
    static func create(on server: BenchServer, meetings: Int, participants: Int, title: String,
                       concurrency: Int = 16) async throws -> BenchMeetings {
        var tokens: [[String]] = []
        var ids: [MeetingID] = []
        for index in 0..<meetings {
            let created: CreatedMeeting
            do {
                created = try await ParleyHTTP.createMeeting(server: server.url, title: "\(title) \(index + 1)")
            } catch {
                throw BenchError.setup("creating meeting \(index + 1) failed: \(error)")
            }
            let others = try await issueTokens(on: server, meeting: created.meeting.id, count: participants - 1,
                                               concurrency: concurrency)
            tokens.append([created.hostToken] + others)
            ids.append(created.meeting.id)
        }
        return BenchMeetings(tokens: tokens, ids: ids)
    }

    static func issueTokens(on server: BenchServer, meeting: MeetingID, count: Int, concurrency: Int) async throws -> [String] {
        guard count > 0 else { return [] }
        return try await boundedMap(Array(0..<count), concurrency: concurrency) { index in
            do {
                return try await ParleyHTTP.issueToken(server: server.url, meeting: meeting, name: "p\(index + 2)").token
            } catch {
                throw BenchError.setup("issuing a token for \(meeting) failed: \(error)")
            }
        }
    }
}

/// `transform` over `items`, at most `concurrency` at once, results in the items' order.
func boundedMap<T: Sendable, R: Sendable>(_ items: [T], concurrency: Int,
                                           _ transform: @escaping @Sendable (T) async throws -> R) async throws -> [R] {
    try await withThrowingTaskGroup(of: (Int, R).self) { group in
        var results = [R?](repeating: nil, count: items.count)
        var next = 0
        for _ in 0..<min(concurrency, items.count) {
            let index = next
            group.addTask { (index, try await transform(items[index])) }
            next += 1
        }
        while let (index, result) = try await group.next() {
            results[index] = result
            if next < items.count {
                let index = next
                group.addTask { (index, try await transform(items[index])) }
                next += 1
            }
        }
        return results.map { $0! }
    }
}

/// Counts every frame the generator receives, to wait until the server has gone quiet
/// (the joins' own events fanned out) before measuring.
final class FrameCounter: Sendable {
    private let count = Atomic<Int>(0)
    func increment() { count.wrappingAdd(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }

    /// Returns once no frame arrived for `quietMs`, or after `limitSeconds`.
    func waitForQuiet(quietMs: Int = 500, limitSeconds: Int = 120) async {
        let deadline = ContinuousClock.now + .seconds(limitSeconds)
        var last = value
        var quietSince = ContinuousClock.now
        while ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
            let now = value
            if now != last {
                last = now
                quietSince = ContinuousClock.now
            } else if ContinuousClock.now - quietSince >= .milliseconds(quietMs) {
                return
            }
        }
    }
}

/// CPU seconds this process has used (the generator's share of the cores).
func ownCpuSeconds() -> Double? { try? ProcessMeter(pid: getpid()).cpuSeconds() }
