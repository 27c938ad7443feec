import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import ParleyCore
import ParleyProtocol
@testable import ParleyServer
import Testing
import WSClient
import ParleyTestSupport

@Suite("Server: long-polling and per-connection limits", MachineLoad.server, .timeLimit(.minutes(1)))
struct TransportLimitTests {
    @Test("a long-poll session joins, sends an op and receives its event and ack, like a WebSocket")
    func longPollSession() async throws {
        try await withServer { endpoint in
            let meeting = try await endpoint.createMeeting()
            let hello = String(decoding: FrameEncoder().encode(ClientFrame.hello(token: meeting.hostToken, resume: nil)), as: UTF8.self)
            let (opened, status) = try await endpoint.http("POST", "/v1/poll", body: hello)
            #expect(status == 200)
            struct Opened: Decodable { var sid: String }
            let sid = try JSONDecoder().decode(Opened.self, from: opened).sid

            let first = try await endpoint.receivePoll(sid)
            guard case .welcome(let welcome) = first.first else { throw TestFailure("expected welcome first, got \(first)") }
            #expect(welcome.mode == .snapshot)

            // One good op and one bad frame in one batch: the bad one gets an error, the good one is applied.
            let (_, sent) = try await endpoint.http("POST", "/v1/poll/\(sid)",
                                                    body: #"[{"type":"op","id":"lp-1","op":{"chat":{"text":"over HTTP"}}},{"type":"teleport"}]"#)
            #expect(sent == 204)
            var frames: [ServerFrame] = []
            let deadline = ContinuousClock.now + .seconds(10)
            while !frames.contains(where: { if case .ack = $0 { true } else { false } }), ContinuousClock.now < deadline {
                frames += try await endpoint.receivePoll(sid)
            }
            let chat = frames.compactMap(\.entry).first { if case .chat = $0.operation { true } else { false } }
            #expect(chat?.operation == .chat(text: "over HTTP"))
            #expect(chat?.opID == OpID("lp-1"))
            #expect(frames.contains { $0.errorCode == .unknownFrameType })
            let ack = frames.first { if case .ack = $0 { true } else { false } }
            #expect(ack == .ack(id: OpID("lp-1"), epoch: welcome.epoch, seq: chat?.seq ?? 0))

            // A body that is not an array is refused with the frame code; the session lives on.
            let (notArray, badStatus) = try await endpoint.http("POST", "/v1/poll/\(sid)", body: #"{"type":"ping"}"#)
            #expect(badStatus == 400)
            #expect(String(decoding: notArray, as: UTF8.self).contains("malformed_frame"))

            // Closing the session ends it: later requests get unknown_session.
            let (_, deleted) = try await endpoint.http("DELETE", "/v1/poll/\(sid)")
            #expect(deleted == 204)
            let (gone, goneStatus) = try await endpoint.http("GET", "/v1/poll/\(sid)?waitMs=0")
            #expect(goneStatus == 404)
            #expect(String(decoding: gone, as: UTF8.self).contains("unknown_session"))
        }
    }

    @Test("a long-poll receive whose answer was lost is answered again, and a send retried behind the client's back is taken once")
    func longPollRetries() async throws {
        try await withServer { endpoint in
            let meeting = try await endpoint.createMeeting()
            let hello = String(decoding: FrameEncoder().encode(ClientFrame.hello(token: meeting.hostToken, resume: nil)), as: UTF8.self)
            let (opened, _) = try await endpoint.http("POST", "/v1/poll", body: hello)
            struct Opened: Decodable { var sid: String }
            let sid = try JSONDecoder().decode(Opened.self, from: opened).sid
            var read: UInt64 = 0
            var frames = try await endpoint.receivePoll(sid, after: read)
            read += 1
            guard case .welcome = frames.first else { throw TestFailure("expected welcome first, got \(frames)") }

            // The same send twice, as a retry makes it: one op in the log, one ack.
            let op = #"[{"type":"op","id":"lp-1","op":{"chat":{"text":"once"}}}]"#
            for _ in 0..<2 {
                let (_, status) = try await endpoint.http("POST", "/v1/poll/\(sid)?batch=1", body: op)
                #expect(status == 204)
            }
            frames = []
            var lastBatch: [ServerFrame] = []
            let deadline = ContinuousClock.now + .seconds(10)
            while !frames.contains(where: { if case .ack = $0 { true } else { false } }), ContinuousClock.now < deadline {
                lastBatch = try await endpoint.receivePoll(sid, after: read)
                read += 1
                frames += lastBatch
            }
            // A later op, so that a second ack for lp-1 would have arrived before its own.
            let (_, second) = try await endpoint.http("POST", "/v1/poll/\(sid)?batch=2",
                                                      body: #"[{"type":"op","id":"lp-2","op":{"chat":{"text":"twice?"}}}]"#)
            #expect(second == 204)

            // The last answer is lost: asking again with the same count gets it again.
            let again = try await endpoint.receivePoll(sid, after: read - 1)
            #expect(again == lastBatch)
            while !frames.contains(where: { if case .ack(OpID("lp-2"), _, _) = $0 { true } else { false } }),
                  ContinuousClock.now < deadline {
                frames += try await endpoint.receivePoll(sid, after: read)
                read += 1
            }
            let chats = frames.compactMap(\.entry).filter { if case .chat = $0.operation { true } else { false } }
            #expect(chats.map(\.opID) == [OpID("lp-1"), OpID("lp-2")])
            #expect(frames.filter { if case .ack(let id, _, _) = $0 { id == OpID("lp-1") } else { false } }.count == 1)

            // A count that no lost answer explains, or a send that skips one, ends the session's use.
            let (ahead, aheadStatus) = try await endpoint.http("GET", "/v1/poll/\(sid)?waitMs=0&after=\(read + 1)")
            #expect(aheadStatus == 409)
            #expect(String(decoding: ahead, as: UTF8.self).contains("poll_out_of_step"))
            let (skipped, skippedStatus) = try await endpoint.http("POST", "/v1/poll/\(sid)?batch=4", body: "[]")
            #expect(skippedStatus == 409)
            #expect(String(decoding: skipped, as: UTF8.self).contains("poll_out_of_step"))
            let (_, badCount) = try await endpoint.http("GET", "/v1/poll/\(sid)?waitMs=0&after=-1")
            #expect(badCount == 400)
        }
    }

    @Test("a client that stops reading is disconnected as a slow consumer; the meeting and its other clients go on")
    func slowConsumerIsDisconnected() async throws {
        try await withServer({ configuration in
            configuration.limits.sendQueueFrames = 256
            configuration.limits.framesPerSecond = 10_000
            configuration.limits.burst = 10_000
        }) { endpoint in
            let meeting = try await endpoint.createMeeting()
            let slow = try await endpoint.issueToken(meeting: meeting.meeting.id, name: "Sleepy")
            // The slow client joins and then never reads again; its socket buffers fill up.
            let slowClosed = try await withRawSocket(endpoint) { sleeper in
                _ = try await sleeper.join(token: slow.token)
                // The host floods the meeting with large messages meanwhile.
                let acked = try await withRawSocket(endpoint) { host in
                    _ = try await host.join(token: meeting.hostToken)
                    let text = String(repeating: "z", count: 3_900)
                    var acked = 0
                    for index in 0..<3_000 {
                        try await host.send(.op(id: OpID("flood-\(index)"), operation: .chat(text: text)))
                        if index % 50 == 49 {
                            // Keep the host itself reading so it is not the slow one.
                            let last = OpID("flood-\(index)")
                            let frames = try await host.receive {
                                switch $0 {
                                case .ack(let id, _, _), .reject(let id, _): id == last
                                default: false
                                }
                            }
                            acked += frames.filter { if case .ack = $0 { true } else { false } }.count
                        }
                    }
                    return acked
                }
                #expect(acked > 0)
                // Now read: after whatever was already buffered, the server must have cut us off
                // with slow_consumer rather than queue everything.
                var received = 0
                var lastError: ProtocolErrorCode?
                while let frame = try await sleeper.receive() {
                    received += 1
                    if let code = frame.errorCode { lastError = code }
                }
                return (received, lastError)
            }
            #expect(slowClosed.1 == .slowConsumer)
            #expect(slowClosed.0 < 3_000, "the slow client got \(slowClosed.0) frames; nothing was dropped")

            // The meeting is still healthy for others, and shows the sleeper as reconnecting.
            try await withRawSocket(endpoint) { host in
                let welcome = try await host.join(token: meeting.hostToken)
                let sleeper = welcome.state?.participants.first { $0.name == "Sleepy" }
                #expect(sleeper?.presence == .reconnecting)
                try await host.send(.op(id: OpID("after"), operation: .chat(text: "still here")))
                let frames = try await host.receive { if case .ack = $0 { true } else { false } }
                let chat = frames.compactMap(\.entry).first { $0.opID == OpID("after") }
                #expect(chat?.operation == .chat(text: "still here"))
                #expect(frames.last == .ack(id: OpID("after"), epoch: welcome.epoch, seq: chat?.seq ?? 0))
            }
        }
    }

    @Test("opening a long-poll session needs a readable hello; anything else is a 400 with the frame's code")
    func pollOpenNeedsHello() async throws {
        try await withServer { endpoint in
            for (body, code) in [("garbage", "malformed_frame"), (#"{"type":"ping"}"#, "malformed_frame"),
                                 (#"{"type":"teleport"}"#, "unknown_frame_type")] {
                let (answer, status) = try await endpoint.http("POST", "/v1/poll", body: body)
                #expect(status == 400, "\(body)")
                #expect(String(decoding: answer, as: UTF8.self).contains("\"\(code)\""), "\(body)")
            }
        }
    }

    @Test("long-poll bodies over their limits get 413 with a code: frame_too_large for a hello, request_too_large for a batch")
    func pollBodiesOverLimits() async throws {
        try await withServer { endpoint in
            let meeting = try await endpoint.createMeeting()
            let huge = String(repeating: "x", count: 70_000)
            let (tooLarge, status) = try await endpoint.http("POST", "/v1/poll", body: #"{"type":"hello","token":"\#(huge)"}"#)
            #expect(status == 413)
            #expect(String(decoding: tooLarge, as: UTF8.self).contains(#""code":"frame_too_large""#))

            let hello = String(decoding: FrameEncoder().encode(ClientFrame.hello(token: meeting.hostToken, resume: nil)), as: UTF8.self)
            let (opened, _) = try await endpoint.http("POST", "/v1/poll", body: hello)
            struct Opened: Decodable { var sid: String }
            let sid = try JSONDecoder().decode(Opened.self, from: opened).sid
            let chunk = #"{"type":"ping"},"#
            let batch = "[" + String(repeating: chunk, count: (1 << 20) / chunk.utf8.count + 1) + #"{"type":"ping"}]"#
            let (refused, batchStatus) = try await endpoint.http("POST", "/v1/poll/\(sid)", body: batch)
            #expect(batchStatus == 413)
            #expect(String(decoding: refused, as: UTF8.self).contains(#""code":"request_too_large""#))
        }
    }

    @Test("the locator sends a single server's clients to itself; an unknown meeting is 404")
    func locate() async throws {
        try await withServer { endpoint in
            let meeting = try await endpoint.createMeeting()
            let (body, status) = try await endpoint.http("GET", "/v1/meetings/\(meeting.meeting.id)/locate")
            #expect(status == 200)
            struct Located: Decodable { var meeting: String; var url: String }
            let located = try JSONDecoder().decode(Located.self, from: body)
            #expect(located.meeting == meeting.meeting.id)
            #expect(located.url == endpoint.base)
            let (missing, missingStatus) = try await endpoint.http("GET", "/v1/meetings/m-nope/locate")
            #expect(missingStatus == 404)
            #expect(String(decoding: missing, as: UTF8.self).contains("unknown_meeting"))
        }
    }

    @Test("GET /health answers ok; unknown meetings and bad bodies get API error codes")
    func httpErrors() async throws {
        try await withServer { endpoint in
            let (health, status) = try await endpoint.http("GET", "/health")
            #expect(status == 200)
            #expect(String(decoding: health, as: UTF8.self).contains("ok"))
            let (unknown, unknownStatus) = try await endpoint.http("POST", "/v1/meetings/nope/tokens", body: #"{"name":"X"}"#)
            #expect(unknownStatus == 404)
            #expect(String(decoding: unknown, as: UTF8.self).contains("unknown_meeting"))
            let (bad, badStatus) = try await endpoint.http("POST", "/v1/meetings", body: "{not json")
            #expect(badStatus == 400)
            #expect(String(decoding: bad, as: UTF8.self).contains("\"code\""))
            // Settings without every field: malformed_request, naming the field.
            let (partial, partialStatus) = try await endpoint.http(
                "POST", "/v1/meetings", body: #"{"title": "T", "settings": {"maxParticipants": 5, "features": {"chat": true}}}"#)
            #expect(partialStatus == 400)
            let answer = try JSONDecoder().decode([String: String].self, from: partial)
            #expect(answer["code"] == "malformed_request")
            #expect(answer["message"]?.contains("settings.features.privateChat is missing") == true, "\(answer)")
        }
    }
}

extension TestEndpoint {
    /// One receive; `after` is how many batches were read (nil: not counted).
    func receivePoll(_ sid: String, after: UInt64? = nil, waitMs: Int = 2_000) async throws -> [ServerFrame] {
        let (data, status) = try await http("GET", "/v1/poll/\(sid)?waitMs=\(waitMs)" + (after.map { "&after=\($0)" } ?? ""))
        guard status == 200 else { throw TestFailure("poll receive: \(status) \(String(decoding: data, as: UTF8.self))") }
        return try JSONDecoder().decode([ServerFrame].self, from: data)
    }
}
