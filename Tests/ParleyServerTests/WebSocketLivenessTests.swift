import Dispatch
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif
import ParleyCore
import ParleyProtocol
import ParleyServer
import Testing
import ParleyTestSupport

/// A WebSocket client made of a bare TCP socket, so a test decides exactly what it answers
/// to the server's pings: nothing at all, or a pong.
private final class SilentSocket: @unchecked Sendable {  // used by one thread at a time
    private let fd: Int32
    private var buffer: [UInt8] = []

    init(port: Int, path: String = "/v1/ws") throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw TestFailure("connect: errno \(errno)") }
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        try write(Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".utf8))
        while true {
            if let end = buffer.indices.first(where: { buffer[$0...].starts(with: Array("\r\n\r\n".utf8)) }) {
                let head = String(decoding: buffer[..<end], as: UTF8.self)
                buffer.removeFirst(end + 4)
                guard head.hasPrefix("HTTP/1.1 101") else { throw TestFailure("no upgrade: \(head)") }
                return
            }
            guard try read() != false else { throw TestFailure("closed during the upgrade") }
        }
    }

    deinit { close(fd) }

    /// Sends a masked text frame (clients must mask).
    func send(_ text: String) throws { try send(opcode: 1, Array(text.utf8)) }

    func send(opcode: UInt8, _ payload: [UInt8]) throws {
        let mask: [UInt8] = [1, 2, 3, 4]
        var frame: [UInt8] = [0x80 | opcode]
        if payload.count < 126 {
            frame.append(0x80 | UInt8(payload.count))
        } else {
            frame.append(0x80 | 126)
            frame += [UInt8(payload.count >> 8), UInt8(payload.count & 0xff)]
        }
        frame += mask
        frame += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
        try write(frame)
    }

    /// The next frame's opcode and payload; nil once the server closed the connection.
    /// Waits at most 10 s.
    func receive() throws -> (opcode: UInt8, payload: [UInt8])? {
        let deadline = ContinuousClock.now + .seconds(10)
        while true {
            switch try receive(until: deadline) {
            case .frame(let opcode, let payload): return (opcode, payload)
            case .closed: return nil
            case .nothingYet: throw TestFailure("no frame within 10 s")
            }
        }
    }

    enum Received { case frame(UInt8, [UInt8]), closed, nothingYet }

    /// The next frame, or `.nothingYet` at the deadline.
    func receive(until deadline: ContinuousClock.Instant) throws -> Received {
        while true {
            if buffer.count >= 2 {
                var length = Int(buffer[1] & 0x7f)
                var offset = 2
                if length == 126, buffer.count >= 4 {
                    length = Int(buffer[2]) << 8 | Int(buffer[3])
                    offset = 4
                } else if length == 127, buffer.count >= 10 {
                    length = buffer[2..<10].reduce(0) { $0 << 8 | Int($1) }
                    offset = 10
                }
                if length < 126 || offset > 2, buffer.count >= offset + length {
                    let frame = Received.frame(buffer[0] & 0x0f, Array(buffer[offset..<(offset + length)]))
                    buffer.removeFirst(offset + length)
                    return frame
                }
            }
            guard ContinuousClock.now < deadline else { return .nothingYet }
            switch try read() {
            case false?: return .closed
            case true?, nil: continue
            }
        }
    }

    /// True if bytes came, false if the server closed, nil if nothing came for a moment.
    private func read() throws -> Bool? {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let count = recv(fd, &chunk, chunk.count, 0)
        if count < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return nil }
            throw TestFailure("recv: errno \(errno)")
        }
        buffer += chunk[..<count]
        return count > 0
    }

    /// Ends this side of the TCP connection without a WebSocket close frame, as the kernel
    /// does for a process that was killed: a FIN, nothing else.
    func shutdownWrite() {
        _ = Glibc.shutdown(fd, Int32(SHUT_WR))
    }

    /// Text frames until one contains every one of `parts`, or nil at the deadline or close.
    func waitForText(containing parts: [String], until deadline: ContinuousClock.Instant) throws -> String? {
        while true {
            switch try receive(until: deadline) {
            case .frame(1, let payload):
                let text = String(decoding: payload, as: UTF8.self)
                if parts.allSatisfy(text.contains) { return text }
            case .frame:
                continue
            case .closed, .nothingYet:
                return nil
            }
        }
    }

    private func write(_ bytes: [UInt8]) throws {
        guard Glibc.send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else { throw TestFailure("send: errno \(errno)") }
    }
}

/// A hello frame as a WebSocket text message.
private func helloText(_ token: String) -> String {
    String(decoding: FrameEncoder().encode(.hello(token: token, resume: nil)), as: UTF8.self)
}

/// Runs blocking socket calls on a thread of their own: on the concurrency pool they would
/// starve the in-process server under test (two threads on two cores).
private func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}

@Suite("Client WebSockets: liveness without a task per connection", MachineLoad.server, .timeLimit(.minutes(1)))
struct WebSocketLivenessTests {
    @Test("a client that goes silent and ignores the server's ping is closed after two intervals, and shows as reconnecting")
    func silentClientIsClosed() async throws {
        try await withServer({ $0.webSocketPingSeconds = 1 }) { endpoint in
            let meeting = try await endpoint.createMeeting()
            let guest = try await endpoint.issueToken(meeting: meeting.meeting.id, name: "Ghost")
            let hello = helloText(guest.token)
            let port = endpoint.port
            // Alive (answering pings) until its welcome, however long a loaded server takes to
            // verify the hello; then silent, as a client whose machine died.
            let (opcodes, texts, closedAfter) = try await blocking { () throws -> ([UInt8], [String], Duration?) in
                let socket = try SilentSocket(port: port)
                try socket.send(hello)
                var welcomedAt: ContinuousClock.Instant?
                var opcodes: [UInt8] = []
                var texts: [String] = []
                while let (opcode, payload) = try socket.receive() {
                    if welcomedAt == nil {
                        if opcode == 9 { try socket.send(opcode: 10, payload) }
                        if opcode == 1, String(decoding: payload, as: UTF8.self).contains(#""type":"welcome""#) {
                            welcomedAt = .now
                        }
                        continue
                    }
                    opcodes.append(opcode)
                    if opcode == 1 { texts.append(String(decoding: payload, as: UTF8.self)) }
                }
                return (opcodes, texts, welcomedAt.map { ContinuousClock.now - $0 })
            }
            guard let closedAfter else {
                Issue.record("closed before any welcome")
                return
            }
            // After the welcome: text frames (events), then one ping (9), then nothing: the
            // server closed the socket without waiting for a close handshake from a dead peer.
            #expect(opcodes.filter { $0 != 1 } == [9], "opcodes after the welcome: \(opcodes), texts: \(texts)")
            #expect(closedAfter < .seconds(8), "closed \(closedAfter) after the welcome")

            try await withRawSocket(endpoint) { host in
                let welcome = try await host.join(token: meeting.hostToken)
                let ghost = welcome.state?.participants.first { $0.name == "Ghost" }
                #expect(ghost?.presence == .reconnecting)
            }
        }
    }

    @Test("a quiet client that answers the server's pings stays connected through several intervals and still gets events")
    func answeringClientStays() async throws {
        try await withServer({ $0.webSocketPingSeconds = 1 }) { endpoint in
            let meeting = try await endpoint.createMeeting()
            let guest = try await endpoint.issueToken(meeting: meeting.meeting.id, name: "Quiet")
            let hello = helloText(guest.token)
            let socket = try await blocking { try SilentSocket(port: endpoint.port) }
            // Says nothing but pongs, from the hello until the event arrives: for 4.5 intervals
            // with nothing to read, then while the host joins and chats (which takes as long
            // as it takes on a loaded machine; a client that stopped answering meanwhile would
            // rightly be closed).
            async let client = blocking { () throws -> (pings: Int, closedAfter: Duration?, delivered: Bool) in
                try socket.send(hello)
                let started = ContinuousClock.now
                let quietUntil = started + .milliseconds(4_500)
                var pings = 0
                while ContinuousClock.now < quietUntil + .seconds(20) {
                    switch try socket.receive(until: quietUntil + .seconds(20)) {
                    case .frame(9, let payload):
                        if ContinuousClock.now < quietUntil { pings += 1 }
                        try socket.send(opcode: 10, payload)
                    case .frame(1, let payload):
                        if String(decoding: payload, as: UTF8.self).contains("are you there?") { return (pings, nil, true) }
                    case .frame, .nothingYet:
                        continue
                    case .closed:
                        return (pings, ContinuousClock.now - started, false)
                    }
                }
                return (pings, nil, false)
            }
            try await Task.sleep(for: .milliseconds(4_600))
            try await withRawSocket(endpoint) { host in
                _ = try await host.join(token: meeting.hostToken)
                try await host.send(.op(id: OpID("still-there"), operation: .chat(text: "are you there?")))
                _ = try await host.receive { if case .ack = $0 { true } else { false } }
            }
            let (pings, closedAfter, delivered) = try await client
            #expect(closedAfter == nil, "closed after \(closedAfter.map { "\($0)" } ?? "-") although it answered every ping")
            #expect(pings >= 1, "the server pings a client that has been silent for an interval")
            #expect(delivered)
        }
    }

    @Test("a client whose TCP connection ends without a close frame (its process was killed) shows as reconnecting at once, not after the ping timeout")
    func deadSocketIsNoticedAtOnce() async throws {
        // The default ping interval (30 s): only the end of the stream can tell in time.
        try await withServer { endpoint in
            let meeting = try await endpoint.createMeeting()
            let ari = try await endpoint.issueToken(meeting: meeting.meeting.id, name: "Ari")
            let (hostHello, ariHello, port) = (helloText(meeting.hostToken), helloText(ari.token), endpoint.port)
            let (noticedAfter, closedSeen) = try await blocking { () throws -> (Duration?, Bool) in
                let host = try SilentSocket(port: port)
                try host.send(hostHello)
                guard try host.waitForText(containing: [#""type":"welcome""#], until: .now + .seconds(10)) != nil else {
                    throw TestFailure("the host got no welcome")
                }
                let socket = try SilentSocket(port: port)
                try socket.send(ariHello)
                guard try socket.waitForText(containing: [#""type":"welcome""#], until: .now + .seconds(10)) != nil,
                      try host.waitForText(containing: [#""join""#, #""Ari""#], until: .now + .seconds(10)) != nil else {
                    throw TestFailure("Ari did not join")
                }
                let dropped = ContinuousClock.now
                socket.shutdownWrite()
                let presence = try host.waitForText(containing: [#""presence""#, #""reconnecting""#, ari.participant],
                                                    until: dropped + .seconds(10))
                // The server closes its side too: nothing is left half-open.
                var closed = false
                while !closed, ContinuousClock.now < dropped + .seconds(10) {
                    if case .closed = try socket.receive(until: dropped + .seconds(10)) { closed = true }
                }
                return (presence == nil ? nil : ContinuousClock.now - dropped, closed)
            }
            guard let noticedAfter else {
                Issue.record("the host saw no presence change within 10 s of Ari's connection ending")
                return
            }
            #expect(noticedAfter < .seconds(5), "noticed after \(noticedAfter)")
            #expect(closedSeen, "the server closed Ari's socket")
        }
    }

    @Test("when the server stops, it closes its client WebSockets itself, joined or not (no task holds them)")
    func stoppingServerClosesSockets() async throws {
        let directory = try TemporaryDirectory()
        var configuration = ServerConfiguration(host: "127.0.0.1", port: 0, dataDirectory: directory.path)
        configuration.fsyncEveryCommit = false
        let server = ParleyServer(configuration: configuration, logger: testLogger)
        let (ports, portSink) = AsyncStream<Int>.makeStream()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run { portSink.yield($0) } }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { throw TestFailure("server did not start") }
            let meeting = try await TestEndpoint(port: port).createMeeting()
            let hello = helloText(meeting.hostToken)
            let socket = try await blocking { try SilentSocket(port: port) }
            let welcomed = try await blocking { () throws -> Bool in
                try socket.send(hello)
                while let (opcode, payload) = try socket.receive() {
                    if opcode == 1, String(decoding: payload, as: UTF8.self).contains(#""type":"welcome""#) { return true }
                }
                return false
            }
            #expect(welcomed)
            // One that never said hello has no meeting to close it.
            let stranger = try await blocking { try SilentSocket(port: port) }
            group.cancelAll()
            _ = try? await group.next()
            // Closed, not left open: receive() fails the test after 10 s of silence.
            for open in [socket, stranger] {
                let closed = try await blocking { () throws -> Bool in
                    while try open.receive() != nil {}
                    return true
                }
                #expect(closed)
            }
        }
    }

    @Test("a second hello while the first is being verified is refused with already_joined")
    func secondHelloRefused() async throws {
        try await withServer { endpoint in
            let meeting = try await endpoint.createMeeting()
            try await withRawSocket(endpoint) { socket in
                try await socket.send(.hello(token: meeting.hostToken, resume: nil))
                try await socket.send(.hello(token: meeting.hostToken, resume: nil))
                // The refusal may come before or after the welcome; read until both are in.
                var frames: [ServerFrame] = []
                while !(frames.contains { if case .welcome = $0 { true } else { false } } && frames.contains { $0.errorCode != nil }) {
                    guard let frame = try await socket.receive() else { throw TestFailure("closed; got \(frames)") }
                    frames.append(frame)
                }
                #expect(frames.compactMap(\.errorCode) == [.alreadyJoined])
            }
        }
    }
}
