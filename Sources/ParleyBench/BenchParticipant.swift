import Foundation
import NIOCore
import ParleyCore
import ParleyProtocol
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One participant of the load: a token, and while connected, a socket that has been welcomed.
///
/// Frames are scanned on the event loop and reported to ``BenchParticipant/Sink``; the only
/// thing waited on is the welcome.
final class BenchParticipant: Sendable {
    /// Where a participant's frames go. Called on event loops, concurrently for different participants.
    struct Sink: Sendable {
        var benchEvent: @Sendable (_ message: Int, _ atNanos: UInt64) -> Void = { _, _ in }
        var ack: @Sendable (_ message: Int) -> Void = { _ in }
        var reject: @Sendable (_ code: String) -> Void = { _ in }
        /// An error frame; `slow_consumer` and other fatal ones end the connection after it.
        var error: @Sendable (_ code: String) -> Void = { _ in }
        /// Any frame at all (for waiting until the server has gone quiet).
        var frame: @Sendable () -> Void = {}
    }

    enum JoinError: Error, CustomStringConvertible {
        case refused(code: String)
        case closed
        case timedOut(ms: Int)
        case connect(String)

        var description: String {
            switch self {
            case .refused(let code): "the join was refused: \(code)"
            case .closed: "the connection closed before the welcome"
            case .timedOut(let ms): "no welcome within \(ms) ms"
            case .connect(let why): "could not connect: \(why)"
            }
        }
    }

    private struct State {
        var socket: BenchSocket?
        var welcome: CheckedContinuation<Void, any Error>?
        var welcomed = false
        var connected = false
        /// The socket closed (possibly before the welcome wait began).
        var gone = false
    }

    let meeting: Int
    let token: String
    private let sink: Sink
    private let state = Mutex(State())

    init(meeting: Int, token: String, sink: Sink) {
        self.meeting = meeting
        self.token = token
        self.sink = sink
    }

    /// Connected and welcomed, as far as the generator knows.
    var isJoined: Bool { state.withLock { $0.connected && $0.welcomed } }

    /// Connects, says hello and waits for the welcome, at most `timeoutMs`.
    func join(group: any EventLoopGroup, host: String, port: Int, timeoutMs: Int) async throws {
        let hello = ByteBuffer(bytes: FrameEncoder().encode(ClientFrame.hello(token: token, resume: nil)))
        state.withLock { $0 = State() }
        try await withThrowingTaskGroup(of: Void.self) { group_ in
            group_.addTask { [self] in
                let socket: BenchSocket
                do {
                    socket = try await BenchSocket.connect(
                        group: group, host: host, port: port,
                        onText: { [self] buffer in received(buffer) },
                        onClose: { [self] in closed() })
                } catch {
                    throw JoinError.connect("\(error)")
                }
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    let gone = state.withLock { state -> Bool in
                        state.socket = socket
                        if state.gone { return true }
                        state.connected = true
                        state.welcome = continuation
                        return false
                    }
                    if gone { continuation.resume(throwing: JoinError.closed) } else { socket.send(hello) }
                }
            }
            group_.addTask {
                try await Task.sleep(for: .milliseconds(timeoutMs))
                throw JoinError.timedOut(ms: timeoutMs)
            }
            defer { group_.cancelAll() }
            do {
                try await group_.next()
            } catch {
                // The timeout won: the welcome wait must end too, or the group would wait for it.
                let (socket, waiting) = state.withLock { state in
                    defer { state.welcome = nil }
                    return (state.socket, state.welcome)
                }
                waiting?.resume(throwing: error)
                await socket?.close()
                throw error
            }
        }
    }

    /// Joins every one of `participants`, `concurrency` at a time; the first failure ends it.
    static func joinAll(_ participants: [BenchParticipant], concurrency: Int, timeoutMs: Int, server: BenchServer,
                        group: any EventLoopGroup) async throws {
        try await joinAll(participants.map { ($0, server.url) }, concurrency: concurrency, timeoutMs: timeoutMs, group: group)
    }

    /// Joins each participant at its own server.
    static func joinAll(_ participants: [(BenchParticipant, URL)], concurrency: Int, timeoutMs: Int,
                        group: any EventLoopGroup) async throws {
        _ = try await boundedMap(participants, concurrency: concurrency) { participant, server in
            do {
                try await participant.join(group: group, host: server.host ?? "127.0.0.1", port: server.port ?? 80, timeoutMs: timeoutMs)
            } catch {
                throw BenchError.setup("a participant of meeting \(participant.meeting + 1) could not join: \(error)")
            }
        }
    }

    /// Sends one op frame; false if not connected.
    @discardableResult
    func send(_ frame: ByteBuffer) -> Bool {
        guard let socket = state.withLock({ $0.connected ? $0.socket : nil }) else { return false }
        socket.send(frame)
        return true
    }

    func close() async {
        let socket = state.withLock { state -> BenchSocket? in
            defer { state.socket = nil; state.connected = false }
            return state.socket
        }
        await socket?.close()
    }

    /// A message of one frame per line (the generator asks for `frames=lines`, as the SDK does).
    private func received(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            var start = 0
            while start < bytes.count {
                let rest = UnsafeRawBufferPointer(rebasing: bytes[start...])
                let end = memchr(rest.baseAddress!, Int32(UInt8(ascii: "\n")), rest.count)
                    .map { start + rest.baseAddress!.distance(to: UnsafeRawPointer($0)) } ?? bytes.count
                if end > start { handle(ScannedFrame.scan(UnsafeRawBufferPointer(rebasing: bytes[start..<end]))) }
                start = end + 1
            }
        }
    }

    private func handle(_ frame: ScannedFrame) {
        sink.frame()
        switch frame {
        case .benchEvent(let message):
            sink.benchEvent(message, monotonicNanos())
        case .ack(let message):
            if let message { sink.ack(message) }
        case .reject(let code):
            sink.reject(code)
        case .welcome:
            resolveWelcome(nil)
        case .error(let code):
            sink.error(code)
            resolveWelcome(JoinError.refused(code: code))
        case .otherEvent, .other:
            break
        }
    }

    private func closed() {
        state.withLock { state in
            state.connected = false
            state.gone = true
        }
        resolveWelcome(JoinError.closed)
    }

    private func resolveWelcome(_ error: (any Error)?) {
        let continuation = state.withLock { state -> CheckedContinuation<Void, any Error>? in
            defer { state.welcome = nil }
            if error == nil { state.welcomed = true }
            return state.welcome
        }
        if let error { continuation?.resume(throwing: error) } else { continuation?.resume() }
    }
}
