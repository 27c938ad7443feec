import FoundationEssentials
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import ParleyCore
import ParleyProtocol
@testable import ParleyServer
import ParleyStore
import Testing
import WSClient

/// A temporary directory removed when the test ends.
struct TemporaryDirectory: ~Copyable {
    let path: String
    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("parley-test-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

let testLogger: Logger = {
    var logger = Logger(label: "parley-test")
    logger.logLevel = ProcessInfo.processInfo.environment["PARLEY_TEST_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .critical
    return logger
}()

/// Runs an in-process server on a free loopback port for the duration of `body`, on `store`
/// if given (the test owns it), else on SQLite in a temporary data directory.
func withServer<T: Sendable>(
    _ configure: (inout ServerConfiguration) -> Void = { _ in },
    store: (any ZoneStore)? = nil,
    _ body: (TestEndpoint) async throws -> T
) async throws -> T {
    let directory = try TemporaryDirectory()
    var configuration = ServerConfiguration(host: "127.0.0.1", port: 0, dataDirectory: directory.path)
    configuration.fsyncEveryCommit = false
    configure(&configuration)
    let server = ParleyServer(configuration: configuration, store: store, logger: testLogger)
    let (ports, portSink) = AsyncStream<Int>.makeStream()
    return try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask {
            try await server.run { port in portSink.yield(port) }
            return nil
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw TestFailure("server did not start") }
        let result = try await body(TestEndpoint(port: port))
        group.cancelAll()
        return result
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The HTTP side of a running server.
struct TestEndpoint: Sendable {
    let port: Int
    var base: String { "http://127.0.0.1:\(port)" }
    var webSocketURL: String { "ws://127.0.0.1:\(port)/v1/ws" }

    struct Created: Decodable { var meeting: Record; var hostToken: String; var participant: String }
    struct Record: Decodable { var id: String }
    struct Issued: Decodable { var token: String; var participant: String }

    func createMeeting(title: String = "Test meeting", settings: String = "") async throws -> Created {
        let settingsField = settings.isEmpty ? "" : ", \"settings\": \(settings)"
        let (data, status) = try await http("POST", "/v1/meetings", body: "{\"title\": \"\(title)\"\(settingsField)}")
        guard status == 201 else { throw TestFailure("create meeting: \(status) \(String(decoding: data, as: UTF8.self))") }
        return try JSONDecoder().decode(Created.self, from: data)
    }

    func issueToken(meeting: String, name: String, role: String = "attendee") async throws -> Issued {
        let (data, status) = try await http("POST", "/v1/meetings/\(meeting)/tokens", body: "{\"name\": \"\(name)\", \"role\": \"\(role)\"}")
        guard status == 201 else { throw TestFailure("issue token: \(status) \(String(decoding: data, as: UTF8.self))") }
        return try JSONDecoder().decode(Issued.self, from: data)
    }

    func http(_ method: String, _ path: String, body: String? = nil) async throws -> (Data, Int) {
        var request = URLRequest(url: URL(string: base + path)!)
        request.httpMethod = method
        if let body {
            request.httpBody = Data(body.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        request.timeoutInterval = 40
        let (data, response) = try await URLSession.shared.data(for: request)
        return (data, (response as? HTTPURLResponse)?.statusCode ?? 0)
    }
}

/// A bare protocol client: sends raw text frames and reads decoded server frames, so tests
/// can check the exact bytes-level behaviour without the SDK in between.
final class RawSocket {
    private let outbound: WebSocketOutboundWriter
    private var iterator: WebSocketInboundMessageStream.AsyncIterator
    private var pending: ArraySlice<ServerFrame> = []

    init(outbound: WebSocketOutboundWriter, inbound: WebSocketInboundStream) {
        self.outbound = outbound
        iterator = inbound.messages(maxSize: 16 << 20).makeAsyncIterator()
    }

    func send(_ text: String) async throws { try await outbound.write(.text(text)) }
    func send(_ frame: ClientFrame) async throws {
        try await send(String(decoding: FrameEncoder().encode(frame), as: UTF8.self))
    }

    /// Every frame of the next message (several with `?frames=lines`), or nil when the server closed the socket.
    func receiveMessage() async throws -> [ServerFrame]? {
        while true {
            guard let message = try await iterator.next() else { return nil }
            if case .text(let text) = message {
                do { return try FrameEncoder().decodeServerFrames(Array(text.utf8)) } catch {
                    throw TestFailure("a message that is not frames, one per line (\(error)): \(text.debugDescription)")
                }
            }
        }
    }

    /// The next frame, or nil when the server closed the socket. Frames of a message that
    /// carried several (`?frames=lines`) are handed out one at a time.
    func receive() async throws -> ServerFrame? {
        while pending.isEmpty {
            guard let frames = try await receiveMessage() else { return nil }
            pending = frames[...]
        }
        return pending.popFirst()
    }

    /// Reads frames until `predicate` matches one; returns all frames read, in order.
    func receive(until predicate: (ServerFrame) -> Bool) async throws -> [ServerFrame] {
        var frames: [ServerFrame] = []
        while let frame = try await receive() {
            frames.append(frame)
            if predicate(frame) { return frames }
        }
        throw TestFailure("socket closed before the expected frame; got \(frames)")
    }

    /// Sends hello and returns the welcome plus the frames up to it.
    func join(token: String, resume: ResumePoint? = nil) async throws -> Welcome {
        try await send(.hello(token: token, resume: resume))
        let frames = try await receive { if case .welcome = $0 { true } else if case .error = $0 { true } else { false } }
        guard case .welcome(let welcome) = frames.last else { throw TestFailure("no welcome: \(frames)") }
        return welcome
    }
}

func withRawSocket<T: Sendable>(_ endpoint: TestEndpoint, query: String? = nil,
                                _ script: @escaping @Sendable (RawSocket) async throws -> T) async throws -> T {
    let result = ResultBox<T>()
    // Welcome frames carry a snapshot and may be large, as the SDK allows.
    let configuration = WebSocketClientConfiguration(maxFrameSize: 16 << 20)
    let url = endpoint.webSocketURL + (query.map { "?" + $0 } ?? "")
    try await WebSocketClient.connect(url: url, configuration: configuration, logger: testLogger) { inbound, outbound, _ in
        let socket = RawSocket(outbound: outbound, inbound: inbound)
        result.set(try await script(socket))
        try? await outbound.close(.normalClosure, reason: nil)
    }
    return try result.get()
}

final class ResultBox<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T?
    func set(_ value: T) { lock.withLock { self.value = value } }
    func get() throws -> T {
        guard let value = lock.withLock({ value }) else { throw TestFailure("the script did not finish") }
        return value
    }
}

extension ServerFrame {
    var errorCode: ProtocolErrorCode? { if case .error(let error) = self { error.code } else { nil } }
    var entry: LogEntry? { if case .event(.visible(let entry)) = self { entry } else { nil } }
}
