import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import ParleyCore
import ParleyProtocol
@testable import ParleyServer
import Testing
import ParleyTestSupport

/// A resume replays the server's own backlog. It is streamed as the client reads and never
/// counts as the client falling behind: a client that reads is never cut off, however far
/// back it resumes from.
@Suite("Server: a resume's replay is streamed under flow control", MachineLoad.server, .timeLimit(.minutes(1)))
struct ResumeBacklogTests {
    /// Far more events than the send queue holds.
    static let queue = 64
    static let missed = 300

    /// A server whose send queue is small next to the replay, and whose rate limit lets the
    /// host commit quickly.
    static func configure(_ configuration: inout ServerConfiguration) {
        configuration.limits.sendQueueFrames = queue
        configuration.limits.framesPerSecond = 100_000
        configuration.limits.burst = 100_000
    }

    /// Commits `count` chats as the host, waiting for each batch's acks so the host itself
    /// never falls behind. Returns the seq of the last one.
    @discardableResult
    static func chat(_ host: RawSocket, _ count: Int, prefix: String) async throws -> Seq {
        let text = String(repeating: "x", count: 1_500)
        var last: Seq = 0
        for batch in stride(from: 0, to: count, by: 20) {
            let ids = (batch..<min(count, batch + 20)).map { OpID("\(prefix)-\($0)") }
            for id in ids { try await host.send(.op(id: id, operation: .chat(text: "\(id) \(text)"))) }
            let frames = try await host.receive { if case .ack(let id, _, _) = $0 { id == ids.last } else { false } }
            guard case .ack(_, _, let seq)? = frames.last else { throw TestFailure("no ack") }
            last = seq
        }
        return last
    }

    struct Missed {
        var meeting: TestEndpoint.Created
        var away: TestEndpoint.Issued
        /// The last seq Away saw: its own join.
        var lastSeen: Seq
        /// The last missed chat's seq.
        var committed: Seq
        var resumePoint: ResumePoint { ResumePoint(meeting: MeetingID(meeting.meeting.id), seq: lastSeen) }
    }

    /// A meeting that "Away" joined once and left, then missed ``missed`` chats of the host's.
    static func awayMissedChats(_ endpoint: TestEndpoint) async throws -> Missed {
        let meeting = try await endpoint.createMeeting()
        let away = try await endpoint.issueToken(meeting: meeting.meeting.id, name: "Away")
        let lastSeen = try await joinOnce(endpoint, token: away.token, name: "Away")
        let committed = try await withRawSocket(endpoint) { host in
            _ = try await host.join(token: meeting.hostToken)
            return try await Self.chat(host, Self.missed, prefix: "missed")
        }
        return Missed(meeting: meeting, away: away, lastSeen: lastSeen, committed: committed)
    }

    /// Joins `token` once, returns the last seq it saw (its own join), and disconnects.
    static func joinOnce(_ endpoint: TestEndpoint, token: String, name: String) async throws -> Seq {
        try await withRawSocket(endpoint) { socket in
            _ = try await socket.join(token: token)
            let frames = try await socket.receive {
                if case .join(_, let joined, _) = $0.entry?.operation { joined == name } else { false }
            }
            return frames.last?.entry?.seq ?? 0
        }
    }

    @Test("a WebSocket resume replays more events than the send queue holds, after a pause in reading, without slow_consumer; live events follow in order")
    func webSocketReplayLongerThanQueue() async throws {
        try await withServer(Self.configure) { endpoint in
            let missed = try await Self.awayMissedChats(endpoint)
            let lastSeen = missed.lastSeen
            let seqs = try await withRawSocket(endpoint) { away -> [Seq] in
                try await away.send(.hello(token: missed.away.token, resume: missed.resumePoint))
                // Not reading for a while: the replay must wait for the reader, not drop it.
                try await Task.sleep(for: .milliseconds(300))
                // Events committed while the replay streams come after it, in order.
                try await withRawSocket(endpoint) { host in
                    _ = try await host.join(token: missed.meeting.hostToken)
                    try await Self.chat(host, 40, prefix: "live")
                }
                var seqs: [Seq] = []
                var welcome: Welcome?
                while let frame = try await away.receive() {
                    if let code = frame.errorCode { throw TestFailure("error \(code) after \(seqs.count) events") }
                    if case .welcome(let got) = frame { welcome = got }
                    if let seq = frame.entry?.seq {
                        seqs.append(seq)
                        if case .chat(let text) = frame.entry?.operation, text.hasPrefix("live-39 ") { break }
                    }
                }
                #expect(welcome?.mode == .replay)
                #expect(welcome?.seq == lastSeen)
                return seqs
            }
            // Every event after the resume point, once, in order: the missed chats, the
            // presence changes, then the live chats.
            #expect(seqs.count > Self.missed + 40)
            #expect(seqs == Array((lastSeen + 1)...(lastSeen + Seq(seqs.count))), "gaps or repeats in \(seqs.count) events")
        }
    }

    @Test("a long-poll resume replays more events than the send queue holds: each receive returns the next part, never slow_consumer")
    func longPollReplayLongerThanQueue() async throws {
        try await withServer(Self.configure) { endpoint in
            let missed = try await Self.awayMissedChats(endpoint)
            let (lastSeen, committed) = (missed.lastSeen, missed.committed)
            let hello = String(decoding: FrameEncoder().encode(ClientFrame.hello(token: missed.away.token, resume: missed.resumePoint)),
                               as: UTF8.self)
            let (opened, status) = try await endpoint.http("POST", "/v1/poll", body: hello)
            #expect(status == 200)
            struct Opened: Decodable { var sid: String }
            let sid = try JSONDecoder().decode(Opened.self, from: opened).sid
            var seqs: [Seq] = []
            var receives = 0
            while seqs.last ?? 0 < committed {
                receives += 1
                guard receives < 100 else { throw TestFailure("only reached seq \(seqs.last ?? 0) of \(committed)") }
                let frames = try await endpoint.receivePoll(sid, waitMs: 1_000)
                #expect(frames.count <= Self.queue + 1, "a receive returns at most sendQueueFrames of the replay")
                for frame in frames {
                    if let code = frame.errorCode { throw TestFailure("error \(code) after \(seqs.count) events") }
                    if let seq = frame.entry?.seq { seqs.append(seq) }
                }
            }
            #expect(receives > 1, "the replay came in parts")
            #expect(seqs == Array((lastSeen + 1)...(lastSeen + Seq(seqs.count))), "gaps or repeats in \(seqs.count) events")
        }
    }
}
