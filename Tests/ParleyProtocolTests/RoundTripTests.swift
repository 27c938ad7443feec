import FoundationEssentials
import ParleyCore
import ParleyProtocol
import Testing

enum Samples {
    /// Every operation kind at least once, with optional fields both present and absent.
    static let operations: [MeetingOp] = [
        .join(participant: "cy", name: "Cy", role: .presenter),
        .leave(participant: "cy"),
        .presence(participant: "cy", presence: .reconnecting),
        .handOverHost(to: "ari"),
        .setPresenter(to: "ari"),
        .chat(text: "hi \"there\" \\ / \u{0} ✓"),
        .privateMessage(to: "ben", text: "psst"),
        .addDocument(id: "deck", title: "Deck", pages: ["p1", "p2", "p3"]),
        .addWhiteboard(id: "wb", title: "Board"),
        .addWhiteboardPage(document: "wb", page: "wb.2"),
        .turnPage(to: "p2"),
        .draw(page: "p1", stroke: "s1", tool: .ellipse, color: "#a1b2c3", width: 0.5,
              points: [Point(x: -1.5, y: 2e10), Point(x: 0, y: 0.1)], text: nil),
        .draw(page: "p1", stroke: "s2", tool: .text, color: "#000000", width: 12, points: [Point(x: 3, y: 4)], text: "note"),
        .erase(page: "p1", stroke: "s1"),
        .clearPage(page: "p1"),
        .createPoll(id: "q1", question: "Lunch?", options: ["yes", "no", "later"]),
        .vote(poll: "q1", option: 2),
        .closePoll(poll: "q1"),
        .startShare(kind: .screen, title: "Slides"),
        .stopShare,
        .requestControl,
        .grantControl(to: "ari"),
        .revokeControl,
        .releaseControl,
        .lock,
        .unlock,
        .end,
    ]

    /// Every signal kind, with optional fields both present and absent.
    static let signals: [Signal] = [
        .cursor(page: "p1", x: 0.25, y: -1),
        .cursor(page: nil, x: 0, y: 0),
        .pointer(page: "p2", x: 100, y: 200.5),
        .typing(active: true),
        .typing(active: false),
        .shareFrame(mime: "image/webp", width: 1280, height: 720, data: "UklGRg=="),
        .input(event: "keydown", x: nil, y: nil, key: "Enter"),
        .input(event: "click", x: 12.5, y: 40, key: nil),
    ]

    static func clientFrames() -> [ClientFrame] {
        [
            .hello(token: "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhcmkifQ.c2ln", resume: nil),
            .hello(token: "t", resume: ResumePoint(meeting: "m-1", seq: 41)),
            .ping(nonce: nil),
            .ping(nonce: "n-1"),
            .leave,
        ]
            + operations.enumerated().map { .op(id: OpID("o-\($0.offset)"), operation: $0.element) }
            + signals.map { .signal($0) }
    }

    static func serverFrames() throws -> [ServerFrame] {
        let limits = ConnectionLimits()
        let chat = LogEntry(seq: 12, epoch: Epoch(3), at: 1_700_000_000_123, issuer: .participant("ari"), opID: "o-9",
                            operation: .chat(text: "hi"))
        var frames: [ServerFrame] = [
            .welcome(Welcome(meeting: "m-1", participant: "ari", epoch: Epoch(3), mode: .replay, seq: 41, state: nil, limits: limits)),
            .welcome(Welcome(meeting: "m-1", participant: "ari", epoch: Epoch(3), mode: .snapshot, seq: 16,
                             state: try busyMeeting().visible(to: "ari"),
                             limits: ConnectionLimits(maxFrameBytes: 1_024, framesPerSecond: 5, burst: 10, sendQueueFrames: 64))),
            .event(.visible(chat)),
            .event(.visible(LogEntry(seq: 13, epoch: Epoch(3), at: 5, issuer: .system, opID: nil,
                                     operation: .presence(participant: "ben", presence: .reconnecting)))),
            .event(.redacted(seq: 14, epoch: Epoch(3), at: 1_700_000_000_200)),
            .ack(id: "o-9", epoch: Epoch(3), seq: 12),
            .pong(nonce: nil),
            .pong(nonce: "n-1"),
        ]
        frames += Samples.operations.enumerated().map { index, operation in
            .event(.visible(LogEntry(seq: Seq(100 + index), epoch: Epoch(UInt64.max), at: Millis(index),
                                     issuer: .participant("hana"), opID: OpID("o-\(index)"), operation: operation)))
        }
        frames += Samples.signals.map { .signal(from: "ari", $0) }
        frames += RejectionCode.allCases.map { .reject(id: "o-1", Rejection($0, "why: \($0.rawValue)")) }
        frames += ProtocolErrorCode.allCases.flatMap { code in
            [ServerFrame.error(ProtocolError(code, "about \(code.rawValue)", fatal: true)),
             .error(ProtocolError(code, "about \(code.rawValue)", fatal: false))]
        }
        return frames
    }
}

@Suite("Protocol: frames survive encoding and decoding unchanged")
struct RoundTripTests {
    @Test("the samples cover every operation and signal kind")
    func coverage() {
        #expect(Set(Samples.operations.map(\.kind)) == MeetingOp.allKinds)
        #expect(Set(Samples.signals.map(\.kind)) == Signal.allKinds)
    }

    @Test("every client frame decodes to itself after encoding")
    func clientFrames() throws {
        for frame in Samples.clientFrames() {
            let bytes = encoder.encode(frame)
            #expect(try decoder.decode(bytes) == frame, "\(String(decoding: bytes, as: UTF8.self))")
        }
    }

    @Test("every server frame decodes to itself after encoding, including redacted events and snapshot welcomes")
    func serverFrames() throws {
        for frame in try Samples.serverFrames() {
            let bytes = encoder.encode(frame)
            #expect(try encoder.decodeServerFrame(bytes) == frame, "\(String(decoding: bytes, as: UTF8.self))")
        }
    }

    @Test("operations and signals are objects with one key, the kind, holding the arguments")
    func operationShapes() {
        let expected: [(ClientFrame, String)] = [
            (.op(id: "o-1", operation: .chat(text: "hi")), #"{"type":"op","id":"o-1","op":{"chat":{"text":"hi"}}}"#),
            (.op(id: "o-2", operation: .lock), #"{"type":"op","id":"o-2","op":{"lock":{}}}"#),
            (.op(id: "o-3", operation: .vote(poll: "q1", option: 0)), #"{"type":"op","id":"o-3","op":{"vote":{"poll":"q1","option":0}}}"#),
            (.op(id: "o-4", operation: .draw(page: "p1", stroke: "s1", tool: .pen, color: "#ff0000", width: 2,
                                             points: [Point(x: 1, y: 2)], text: nil)),
             ##"{"type":"op","id":"o-4","op":{"draw":{"page":"p1","stroke":"s1","tool":"pen","color":"#ff0000","width":2,"points":[{"x":1,"y":2}]}}}"##),
            (.signal(.typing(active: true)), #"{"type":"signal","signal":{"typing":{"active":true}}}"#),
            (.signal(.input(event: "click", x: 1, y: 2, key: nil)), #"{"type":"signal","signal":{"input":{"event":"click","x":1,"y":2}}}"#),
            (.hello(token: "t", resume: ResumePoint(meeting: "m-1", seq: 7)), #"{"type":"hello","token":"t","resume":{"meeting":"m-1","seq":7}}"#),
            (.hello(token: "t", resume: nil), #"{"type":"hello","token":"t"}"#),
            (.ping(nonce: nil), #"{"type":"ping"}"#),
            (.leave, #"{"type":"leave"}"#),
        ]
        for (frame, json) in expected {
            #expect(JSONValue.parse(encoder.encode(frame)) == JSONValue.parse(json))
        }
    }

    @Test("server frames have the documented flat shapes")
    func serverShapes() {
        let expected: [(ServerFrame, String)] = [
            (.ack(id: "o-1", epoch: Epoch(2), seq: 9), #"{"type":"ack","id":"o-1","epoch":2,"seq":9}"#),
            (.reject(id: "o-1", Rejection(.notHost, "only the host can lock")),
             #"{"type":"reject","id":"o-1","code":"not_host","message":"only the host can lock"}"#),
            (.event(.visible(LogEntry(seq: 9, epoch: Epoch(2), at: 100, issuer: .participant("ari"), opID: "o-1", operation: .lock))),
             #"{"type":"event","seq":9,"epoch":2,"at":100,"issuer":"ari","opId":"o-1","op":{"lock":{}}}"#),
            (.event(.visible(LogEntry(seq: 10, epoch: Epoch(2), at: 101, issuer: .system, opID: nil, operation: .leave(participant: "ari")))),
             #"{"type":"event","seq":10,"epoch":2,"at":101,"issuer":"system","op":{"leave":{"participant":"ari"}}}"#),
            (.event(.redacted(seq: 11, epoch: Epoch(2), at: 102)), #"{"type":"event","seq":11,"epoch":2,"at":102,"redacted":true}"#),
            (.signal(from: "ari", .typing(active: false)), #"{"type":"signal","from":"ari","signal":{"typing":{"active":false}}}"#),
            (.error(ProtocolError(.slowConsumer, "behind", fatal: true)), #"{"type":"error","code":"slow_consumer","message":"behind","fatal":true}"#),
            (.pong(nonce: "n"), #"{"type":"pong","nonce":"n"}"#),
            (.welcome(Welcome(meeting: "m-1", participant: "ari", epoch: Epoch(2), mode: .replay, seq: 8, state: nil, limits: ConnectionLimits())),
             #"{"type":"welcome","meeting":"m-1","participant":"ari","epoch":2,"mode":"replay","seq":8,"limits":{"maxFrameBytes":65536,"framesPerSecond":50,"burst":200,"sendQueueFrames":4096}}"#),
        ]
        for (frame, json) in expected {
            #expect(JSONValue.parse(encoder.encode(frame)) == JSONValue.parse(json))
        }
    }

    @Test("a private message is delivered whole to its two parties and as a redacted position to everyone else")
    func redaction() {
        let entry = LogEntry(seq: 5, epoch: Epoch(1), at: 77, issuer: .participant("ari"), opID: "o-1",
                             operation: .privateMessage(to: "ben", text: "psst"))
        #expect(DeliveredEntry(entry, for: "ari") == .visible(entry))
        #expect(DeliveredEntry(entry, for: "ben") == .visible(entry))
        let redacted = DeliveredEntry(entry, for: "hana")
        #expect(redacted == .redacted(seq: 5, epoch: Epoch(1), at: 77))
        #expect(redacted.seq == 5)
        #expect(redacted.epoch == Epoch(1))
        let bytes = encoder.encode(ServerFrame.event(redacted))
        #expect(!String(decoding: bytes, as: UTF8.self).contains("psst"))
        let chat = LogEntry(seq: 6, epoch: Epoch(1), at: 78, issuer: .participant("ari"), opID: "o-2", operation: .chat(text: "hi"))
        #expect(DeliveredEntry(chat, for: "hana") == .visible(chat))
    }

    @Test("a snapshot welcome carries only the recipient's own private messages")
    func snapshotVisibility() throws {
        let meeting = try busyMeeting()
        #expect(meeting.privateMessages.count == 1)
        #expect(meeting.visible(to: "hana").privateMessages.isEmpty)
        let bytes = encoder.encode(ServerFrame.welcome(Welcome(
            meeting: "m-1", participant: "hana", epoch: Epoch(1), mode: .snapshot, seq: 16,
            state: meeting.visible(to: "hana"), limits: ConnectionLimits())))
        #expect(!String(decoding: bytes, as: UTF8.self).contains("psst"))
    }
}
