import Foundation
import ParleyCore
import ParleyProtocol
import Testing
import ParleyTestSupport

@Suite("Server protocol, over a real WebSocket", MachineLoad.server, .timeLimit(.minutes(1)))
struct ServerProtocolTests {
    @Test("bad frames get precise error codes and the connection stays up")
    func badFramesKeepConnection() async throws {
        try await withServer { endpoint in
            let meeting = try await endpoint.createMeeting()
            try await withRawSocket(endpoint) { socket in
                // Before hello, an op is refused.
                try await socket.send(#"{"type":"op","id":"o1","op":{"chat":{"text":"hi"}}}"#)
                #expect(try await socket.receive()?.errorCode == .notJoined)
                _ = try await socket.join(token: meeting.hostToken)
                var codes: [ProtocolErrorCode?] = []
                var ids: [OpID?] = []
                for bad in [
                    "{not json",
                    #"{"type":"teleport"}"#,
                    #"{"type":"op","id":"o2","op":{"summon":{}}}"#,
                    #"{"type":"op","id":"o3","op":{"chat":{"text":42}}}"#,
                    #"{"type":"signal","signal":{"telepathy":{}}}"#,
                    #"{"type":"op","id":"o4","op":{"chat":{"text":""#
                        + String(repeating: "x", count: 70_000) + #""}}}"#,
                ] {
                    try await socket.send(bad)
                    let frames = try await socket.receive { $0.errorCode != nil }
                    codes.append(frames.last?.errorCode)
                    if case .error(let error)? = frames.last { ids.append(error.opID) }
                }
                #expect(codes == [.malformedFrame, .unknownFrameType, .unknownOp, .malformedFrame, .unknownSignal, .frameTooLarge])
                // Readable op ids are named, so a client can drop exactly that op; an
                // oversized frame is refused before it is parsed, so its id is unknown.
                #expect(ids == [nil, nil, OpID("o2"), OpID("o3"), nil, nil])
                // Still connected and working.
                try await socket.send(.ping(nonce: "still-here"))
                let frames = try await socket.receive { if case .pong = $0 { true } else { false } }
                #expect(frames.last == .pong(nonce: "still-here"))
            }
        }
    }

    @Test("a forged token is refused with invalid_token and the socket is closed")
    func forgedToken() async throws {
        try await withServer { endpoint in
            _ = try await endpoint.createMeeting()
            let frames = try await withRawSocket(endpoint) { socket in
                try await socket.send(.hello(token: "eyJhbGciOiJFZERTQSJ9.e30.AAAA", resume: nil))
                var frames: [ServerFrame] = []
                while let frame = try await socket.receive() { frames.append(frame) }
                return frames
            }
            #expect(frames.map(\.errorCode) == [.invalidToken])
        }
    }

    @Test("a genuine token with its payload changed to an old exp is invalid_token, not token_expired: the signature is checked first")
    func tamperedExpiredToken() async throws {
        try await withServer { endpoint in
            let meeting = try await endpoint.createMeeting()
            let parts = meeting.hostToken.split(separator: ".").map(String.init)
            #expect(parts.count == 3)
            func base64URL(_ data: Data) -> String {
                data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                    .replacingOccurrences(of: "=", with: "")
            }
            func decoded(_ text: String) -> Data? {
                var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
                base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
                return Data(base64Encoded: base64)
            }
            guard let payload = decoded(parts[1]),
                  var claims = try JSONSerialization.jsonObject(with: payload) as? [String: Any] else {
                throw TestFailure("the token's payload is not JSON")
            }
            claims["exp"] = 1_000_000_000  // 2001
            let tampered = [parts[0], base64URL(try JSONSerialization.data(withJSONObject: claims)), parts[2]].joined(separator: ".")
            let code = try await withRawSocket(endpoint) { socket in
                try await socket.send(.hello(token: tampered, resume: nil))
                return try await socket.receive()?.errorCode
            }
            #expect(code == .invalidToken)
        }
    }

    @Test("a participant that never connected may hello with a resume point: it gets the replay from there, then its own join")
    func resumeWithoutHavingConnected() async throws {
        try await withServer { endpoint in
            let meeting = try await endpoint.createMeeting()
            let newcomer = try await endpoint.issueToken(meeting: meeting.meeting.id, name: "Nova")
            let hostSeq = try await withRawSocket(endpoint) { host -> Seq in
                _ = try await host.join(token: meeting.hostToken)
                try await host.send(.op(id: OpID("c1"), operation: .chat(text: "one")))
                try await host.send(.op(id: OpID("c2"), operation: .chat(text: "two")))
                let frames = try await host.receive { if case .ack(let id, _, _) = $0 { id == OpID("c2") } else { false } }
                return frames.compactMap(\.entry).first { $0.opID == OpID("c1") }?.seq ?? 0
            }
            let (welcome, entries) = try await withRawSocket(endpoint) { socket -> (Welcome, [LogEntry]) in
                let welcome = try await socket.join(token: newcomer.token, resume: ResumePoint(meeting: MeetingID(meeting.meeting.id), seq: hostSeq - 1))
                let frames = try await socket.receive { if case .join(_, let name, _) = $0.entry?.operation { name == "Nova" } else { false } }
                return (welcome, frames.compactMap(\.entry))
            }
            #expect(welcome.mode == .replay)
            #expect(entries.first?.seq == hostSeq)
            #expect(entries.map(\.seq) == Array(hostSeq...(hostSeq + Seq(entries.count) - 1)))
            #expect(entries.compactMap { if case .chat(let text) = $0.operation { text } else { nil } } == ["one", "two"])
        }
    }

    @Test("resume from the future or from another meeting is refused with its code")
    func resumeRefusals() async throws {
        try await withServer { endpoint in
            let first = try await endpoint.createMeeting(title: "One")
            let second = try await endpoint.createMeeting(title: "Two")
            let future = try await withRawSocket(endpoint) { socket in
                try await socket.send(.hello(token: first.hostToken, resume: ResumePoint(meeting: MeetingID(first.meeting.id), seq: 999)))
                return try await socket.receive()?.errorCode
            }
            #expect(future == .seqFromFuture)
            let mismatch = try await withRawSocket(endpoint) { socket in
                try await socket.send(.hello(token: first.hostToken, resume: ResumePoint(meeting: MeetingID(second.meeting.id), seq: 0)))
                return try await socket.receive()?.errorCode
            }
            #expect(mismatch == .meetingMismatch)
        }
    }

    @Test("an op is acknowledged after its event; a retried op id is applied once and gets the same ack")
    func ackAndRetry() async throws {
        try await withServer { endpoint in
            let meeting = try await endpoint.createMeeting()
            try await withRawSocket(endpoint) { socket in
                let welcome = try await socket.join(token: meeting.hostToken)
                #expect(welcome.mode == .snapshot)
                // Our own join arrives first.
                let joined = try await socket.receive()
                #expect(joined?.entry?.operation == .join(participant: ParticipantID(meeting.participant), name: "Host", role: .host))
                try await socket.send(.op(id: "c-1", operation: .chat(text: "hello")))
                let first = try await socket.receive { if case .ack = $0 { true } else { false } }
                #expect(first.count == 2)
                #expect(first[0].entry?.operation == .chat(text: "hello"))
                #expect(first[0].entry?.opID == "c-1")
                guard case .ack(let id, let epoch, let seq) = first[1] else { throw TestFailure("no ack") }
                #expect(id == "c-1" && seq == 2 && epoch == first[0].entry?.epoch)
                // Retry: no new event, the same ack.
                try await socket.send(.op(id: "c-1", operation: .chat(text: "hello")))
                let second = try await socket.receive { if case .ack = $0 { true } else { false } }
                #expect(second == [.ack(id: "c-1", epoch: epoch, seq: 2)])
            }
        }
    }

    @Test("ops without the right are rejected with their reason and never logged")
    func permissions() async throws {
        try await withServer { endpoint in
            let meeting = try await endpoint.createMeeting()
            let guest = try await endpoint.issueToken(meeting: meeting.meeting.id, name: "Guest")
            try await withRawSocket(endpoint) { socket in
                _ = try await socket.join(token: guest.token)
                var results: [Rejection] = []
                for (index, op) in [MeetingOp.turnPage(to: "p1"), .lock, .end, .createPoll(id: "q", question: "Why?", options: ["a", "b"])].enumerated() {
                    try await socket.send(.op(id: OpID("x\(index)"), operation: op))
                    let frames = try await socket.receive { if case .reject = $0 { true } else { false } }
                    if case .reject(_, let rejection) = frames.last { results.append(rejection) }
                }
                #expect(results.map(\.code) == [.notPresenter, .notHost, .notHost, .notPresenter])
            }
        }
    }

    @Test("private messages reach only their two parties; others get a redacted event at the same seq")
    func privateMessages() async throws {
        try await withServer { endpoint in
            let meeting = try await endpoint.createMeeting()
            let bob = try await endpoint.issueToken(meeting: meeting.meeting.id, name: "Bob")
            let carol = try await endpoint.issueToken(meeting: meeting.meeting.id, name: "Carol")
            // Everyone joins first, then the host whispers to Bob; Carol resumes from her join.
            try await withRawSocket(endpoint) { host in
                _ = try await host.join(token: meeting.hostToken)
                for token in [bob.token, carol.token] {
                    try await withRawSocket(endpoint) { other in _ = try await other.join(token: token) }
                }
                try await host.send(.op(id: "pm", operation: .privateMessage(to: ParticipantID(bob.participant), text: "psst")))
                _ = try await host.receive { if case .ack = $0 { true } else { false } }
            }
            let meetingID = MeetingID(meeting.meeting.id)
            let seen = try await withRawSocket(endpoint) { carolSocket in
                _ = try await carolSocket.join(token: carol.token, resume: ResumePoint(meeting: meetingID, seq: 1))
                return try await carolSocket.receive { if case .event(.redacted) = $0 { true } else { false } }
            }
            guard case .event(.redacted(let seq, _, _)) = seen.last else { throw TestFailure("no redacted event") }
            let bobSeen = try await withRawSocket(endpoint) { bobSocket in
                _ = try await bobSocket.join(token: bob.token, resume: ResumePoint(meeting: meetingID, seq: seq - 1))
                return try await bobSocket.receive()
            }
            #expect(bobSeen?.entry?.operation == .privateMessage(to: ParticipantID(bob.participant), text: "psst"))
            #expect(bobSeen?.entry?.seq == seq)
        }
    }

    @Test("a resume with a gap replays exactly the missed events, in order")
    func resumeWithGap() async throws {
        try await withServer { endpoint in
            let meeting = try await endpoint.createMeeting()
            let meetingID = MeetingID(meeting.meeting.id)
            let guest = try await endpoint.issueToken(meeting: meeting.meeting.id, name: "Guest")
            let lastSeen = try await withRawSocket(endpoint) { socket in
                let welcome = try await socket.join(token: guest.token)
                let join = try await socket.receive()
                return join?.entry?.seq ?? welcome.seq
            }
            let sent = try await withRawSocket(endpoint) { host in
                _ = try await host.join(token: meeting.hostToken)
                var seqs: [Seq] = []
                for index in 1...3 {
                    try await host.send(.op(id: OpID("m\(index)"), operation: .chat(text: "missed \(index)")))
                    let frames = try await host.receive { if case .ack = $0 { true } else { false } }
                    if case .ack(_, _, let seq) = frames.last { seqs.append(seq) }
                }
                return seqs
            }
            let replayed = try await withRawSocket(endpoint) { socket in
                let welcome = try await socket.join(token: guest.token, resume: ResumePoint(meeting: meetingID, seq: lastSeen))
                #expect(welcome.mode == .replay)
                #expect(welcome.seq == lastSeen)
                return try await socket.receive { $0.entry?.operation == .chat(text: "missed 3") }
            }
            let entries = replayed.compactMap(\.entry)
            // Contiguous from lastSeen+1, and the chats are exactly the three sent.
            #expect(entries.map(\.seq) == Array((lastSeen + 1)...(lastSeen + Seq(entries.count))))
            #expect(entries.filter { if case .chat = $0.operation { true } else { false } }.map(\.seq) == sent)
        }
    }

    @Test("an up-to-date resume replays nothing")
    func resumeWithoutGap() async throws {
        try await withServer { endpoint in
            let meeting = try await endpoint.createMeeting()
            let meetingID = MeetingID(meeting.meeting.id)
            let seq = try await withRawSocket(endpoint) { socket in
                _ = try await socket.join(token: meeting.hostToken)
                try await socket.send(.op(id: "a", operation: .chat(text: "one")))
                let frames = try await socket.receive { if case .ack = $0 { true } else { false } }
                guard case .ack(_, _, let seq) = frames.last else { throw TestFailure("no ack") }
                return seq
            }
            try await withRawSocket(endpoint) { socket in
                let welcome = try await socket.join(token: meeting.hostToken, resume: ResumePoint(meeting: meetingID, seq: seq + 1))
                #expect(welcome.mode == .replay)
                // The only event is our own presence change back to connected.
                let next = try await socket.receive()
                #expect(next?.entry?.operation == .presence(participant: ParticipantID(meeting.participant), presence: .connected))
                #expect(next?.entry?.seq == seq + 2)
            }
        }
    }

    @Test("too far behind the resume window gets a snapshot and is told so")
    func resumeTooFarBack() async throws {
        try await withServer({ $0.resumeWindow = ResumeWindow(minEntries: 3, minAgeMillis: 0, maxEntries: 3) }) { endpoint in
            let meeting = try await endpoint.createMeeting()
            let meetingID = MeetingID(meeting.meeting.id)
            try await withRawSocket(endpoint) { socket in
                _ = try await socket.join(token: meeting.hostToken)
                for index in 1...8 {
                    try await socket.send(.op(id: OpID("f\(index)"), operation: .chat(text: "filler \(index)")))
                    _ = try await socket.receive { if case .ack = $0 { true } else { false } }
                }
            }
            try await withRawSocket(endpoint) { socket in
                let welcome = try await socket.join(token: meeting.hostToken, resume: ResumePoint(meeting: meetingID, seq: 1))
                #expect(welcome.mode == .snapshot)
                #expect(welcome.state?.chat.map(\.text) == (1...8).map { "filler \($0)" })
            }
        }
    }

    @Test("a rate-limited op is rejected with rate_limited and not applied")
    func rateLimit() async throws {
        try await withServer({ $0.limits.framesPerSecond = 1; $0.limits.burst = 3 }) { endpoint in
            let meeting = try await endpoint.createMeeting()
            try await withRawSocket(endpoint) { socket in
                _ = try await socket.join(token: meeting.hostToken)
                for index in 1...5 {
                    try await socket.send(.op(id: OpID("r\(index)"), operation: .chat(text: "spam \(index)")))
                }
                var outcomes: [String: String] = [:]
                while outcomes.count < 5, let frame = try await socket.receive() {
                    switch frame {
                    case .ack(let id, _, _): outcomes[id.rawValue] = "ack"
                    case .reject(let id, let rejection): outcomes[id.rawValue] = rejection.code.rawValue
                    default: break
                    }
                }
                #expect(outcomes == ["r1": "ack", "r2": "ack", "r3": "ack", "r4": "rate_limited", "r5": "rate_limited"])
            }
        }
    }

    @Test("a second connection of a participant replaces the first, which is told so; a refused join says why")
    func replacedAndRefused() async throws {
        try await withServer { endpoint in
            let meeting = try await endpoint.createMeeting()
            let guest = try await endpoint.issueToken(meeting: meeting.meeting.id, name: "Guest")
            let firstSaw = try await withRawSocket(endpoint) { first in
                let welcome = try await first.join(token: guest.token)
                try await withRawSocket(endpoint) { second in
                    _ = try await second.join(token: guest.token, resume: ResumePoint(meeting: welcome.meeting, seq: welcome.seq))
                }
                var frames: [ServerFrame] = []
                while let frame = try await first.receive() { frames.append(frame) }
                return frames
            }
            #expect(firstSaw.last?.errorCode == .replaced)
            // The host locks the meeting; a newcomer is refused with a machine-readable reason.
            try await withRawSocket(endpoint) { host in
                _ = try await host.join(token: meeting.hostToken)
                try await host.send(.op(id: "lock", operation: .lock))
                _ = try await host.receive { if case .ack = $0 { true } else { false } }
                let late = try await endpoint.issueToken(meeting: meeting.meeting.id, name: "Late")
                try await withRawSocket(endpoint) { newcomer in
                    try await newcomer.send(.hello(token: late.token, resume: nil))
                    let refusal = try await newcomer.receive()
                    guard case .error(let error)? = refusal else {
                        Issue.record("expected a join_refused error, got \(String(describing: refusal))")
                        return
                    }
                    #expect(error.code == .joinRefused)
                    #expect(error.reason == "meeting_locked")
                    #expect(error.fatal)
                }
            }
        }
    }

    @Test("ending the meeting closes every connection with meeting_ended and refuses new joins")
    func meetingEnd() async throws {
        try await withServer { endpoint in
            let meeting = try await endpoint.createMeeting()
            let frames = try await withRawSocket(endpoint) { socket in
                _ = try await socket.join(token: meeting.hostToken)
                try await socket.send(.op(id: "end", operation: .end))
                var frames: [ServerFrame] = []
                while let frame = try await socket.receive() { frames.append(frame) }
                return frames
            }
            #expect(frames.last?.errorCode == .meetingEnded)
            #expect(frames.contains { $0.entry?.operation == .end })
            let later = try await withRawSocket(endpoint) { socket in
                try await socket.send(.hello(token: meeting.hostToken, resume: nil))
                return try await socket.receive()?.errorCode
            }
            #expect(later == .meetingEnded)
        }
    }
}
