import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import ParleyCore
import ParleyProtocol
import Synchronization
import WSClient

/// How a ``MeetingClient`` reaches Parley: the seam where an app's tests put a fake
/// server (`ParleyTesting`'s `InMemoryParley` is one) instead of the network.
///
/// The client calls ``open`` once per connection attempt and never decides anything from
/// how it is carried: frames in, frames out.
public struct Connector: Sendable {
    /// Runs one connection until it is over. Call `link.onConnected()` once the transport
    /// is open (the client then sends `hello` through `link.outbound`), and
    /// `link.onFrame(_:)` for each frame from the server, in order. Return (or throw) when
    /// the connection ends; when `link.outbound` finishes, close gracefully and return.
    /// The task is cancelled when the client drops the connection.
    public var open: @Sendable (_ transport: Transport, _ link: ConnectionLink) async throws -> Void
    /// Whether a WebSocket could be opened now. A session live on long-polling asks it
    /// before moving back to WebSocket.
    public var probeWebSocket: @Sendable () async -> Bool

    public init(open: @escaping @Sendable (_ transport: Transport, _ link: ConnectionLink) async throws -> Void,
                probeWebSocket: @escaping @Sendable () async -> Bool = { true }) {
        self.open = open
        self.probeWebSocket = probeWebSocket
    }

    /// The real thing: asks the locator where the meeting lives (when the token names it),
    /// then opens a WebSocket or a long-polling session there. `servers` are the web fronts
    /// that can answer, the app's own first; an attempt that could not locate the meeting
    /// makes the next one ask the next front.
    static func network(servers: [URL], meeting: MeetingID?, longPollWait: Duration, probeTimeout: Duration,
                        probeFronts: Bool, session: URLSession, logger: Logger) -> Connector {
        let fronts = FrontRotation(count: servers.count)
        // Ask where the meeting lives now; after a failover that is another server.
        @Sendable func host() async throws -> URL {
            if probeFronts, fronts.claimRanking() {
                // The nearest front first: time `GET /v1/ping` on each, side by side.
                let trips = await withTaskGroup(of: (Int, Duration?).self) { group in
                    for (index, server) in servers.enumerated() {
                        group.addTask { (index, try? await ParleyHTTP.ping(server: server, timeout: probeTimeout, session: session)) }
                    }
                    var trips = [Duration?](repeating: nil, count: servers.count)
                    for await (index, trip) in group { trips[index] = trip }
                    return trips
                }
                fronts.rank(byRoundTrip: trips)
                logger.debug("web fronts ranked by round trip", metadata: [
                    "fronts": "\(FrontRotation.order(trips).map { "\(servers[$0].absoluteString) \(trips[$0].map { "\($0)" } ?? "no answer")" })"])
            }
            let index = fronts.next()
            guard let meeting else { return servers[index] }
            let located = try await ParleyHTTP.locate(server: servers[index], meeting: meeting)
            fronts.answered(index)
            return located
        }
        return Connector(
            open: { transport, link in
                let host = try await host()
                switch transport {
                case .webSocket:
                    try await WebSocketTransport.run(url: try ParleyHTTP.webSocketURL(host) + "?" + FrameLines.query,
                                                     link: link, logger: logger)
                case .longPolling:
                    try await LongPollTransport.run(server: host, link: link, waitMs: Int(longPollWait.wholeMilliseconds),
                                                    session: session, logger: logger)
                }
            },
            probeWebSocket: {
                do {
                    let url = try ParleyHTTP.webSocketURL(try await host())
                    return try await withThrowingTaskGroup(of: Bool.self) { group in
                        group.addTask { try await WebSocketTransport.probe(url: url, logger: logger) }
                        group.addTask {
                            try await Task.sleep(for: probeTimeout)
                            return false
                        }
                        defer { group.cancelAll() }
                        return try await group.next() ?? false
                    }
                } catch {
                    return false
                }
            })
    }
}

/// Which web front the next locate asks: the one that answered last, or, after an attempt
/// that got no answer (its machine may be gone, or the attempt timed out), the next one.
/// Fronts are tried in the order given until they are ranked by round trip (``rank(byRoundTrip:)``):
/// then the nearest first, and those that did not answer the probe last.
final class FrontRotation: Sendable {
    private struct State {
        /// Front indices in the order they are tried.
        var order: [Int]
        var position = 0
        var unanswered = false
        /// Attempts in a row that got no answer: once every front has had one, rank again.
        var unansweredInARow = 0
        var rankingDue = true
    }
    private let count: Int
    private let state: Mutex<State>

    init(count: Int) {
        precondition(count > 0)
        self.count = count
        state = Mutex(State(order: Array(0..<count)))
    }

    func next() -> Int {
        state.withLock { state in
            if state.unanswered {
                state.position = (state.position + 1) % count
                state.unansweredInARow += 1
                if state.unansweredInARow >= count { state.rankingDue = true }
            }
            state.unanswered = true
            return state.order[state.position]
        }
    }

    func answered(_ index: Int) {
        state.withLock { state in
            state.position = state.order.firstIndex(of: index) ?? state.position
            state.unanswered = false
            state.unansweredInARow = 0
        }
    }

    /// Whether to probe the fronts before this attempt: before the first, and after every
    /// front in turn went unanswered. True once per such time, so one caller probes.
    func claimRanking() -> Bool {
        state.withLock { state in
            defer { state.rankingDue = false }
            return state.rankingDue && count > 1
        }
    }

    /// Orders the fronts by how fast each answered a probe (nil: it did not), fastest first;
    /// ties and fronts that did not answer keep the order given. The next attempt asks the first.
    func rank(byRoundTrip trips: [Duration?]) {
        precondition(trips.count == count)
        state.withLock { state in
            state.order = Self.order(trips)
            state.position = 0
            state.unanswered = false
            state.unansweredInARow = 0
        }
    }

    static func order(_ trips: [Duration?]) -> [Int] {
        trips.indices.sorted { a, b in
            switch (trips[a], trips[b]) {
            case let (x?, y?): x < y || (x == y && a < b)
            case (.some, nil): true
            case (nil, .some): false
            case (nil, nil): a < b
            }
        }
    }
}

/// One connection's I/O, seen from a transport (or a ``Connector`` of an app's own). A
/// transport runs until the connection is over, calling back in order; it never decides
/// anything about the session.
public struct ConnectionLink: Sendable {
    /// Frames to write, in order. Finishing it asks the transport to close gracefully.
    public var outbound: AsyncStream<ClientFrame>
    /// Call once, when the transport is open.
    public var onConnected: @Sendable () async -> Void
    /// Call for each frame, in arrival order; the next frame waits for it to return.
    public var onFrame: @Sendable (ServerFrame) async -> Void

    public init(outbound: AsyncStream<ClientFrame>, onConnected: @escaping @Sendable () async -> Void,
                onFrame: @escaping @Sendable (ServerFrame) async -> Void) {
        self.outbound = outbound
        self.onConnected = onConnected
        self.onFrame = onFrame
    }
}

enum TransportError: Error, CustomStringConvertible {
    case binaryMessage
    case sessionGone
    case http(status: Int, String)

    var description: String {
        switch self {
        case .binaryMessage: "the server sent a binary WebSocket message; Parley frames are text"
        case .sessionGone: "the long-polling session expired or was closed by the server"
        case .http(let status, let message): "long-polling request failed with \(status): \(message)"
        }
    }
}

/// Big enough for a snapshot welcome; the server's own limits are far smaller for other frames.
let maxServerMessageBytes = 16 << 20

enum WebSocketTransport {
    /// Opens a WebSocket and closes it again at once: true if the upgrade went through.
    static func probe(url: String, logger: Logger) async throws -> Bool {
        let configuration = WebSocketClientConfiguration(maxFrameSize: 1 << 16, closeTimeout: .seconds(1))
        try await WebSocketClient.connect(url: url, configuration: configuration, logger: logger) { _, _, _ in }
        return true
    }

    static func run(url: String, link: ConnectionLink, logger: Logger) async throws {
        let encoder = FrameEncoder()
        let configuration = WebSocketClientConfiguration(
            maxFrameSize: maxServerMessageBytes,
            // A dropped connection is resumed on a new one; do not linger on the old.
            closeTimeout: .seconds(1))
        try await WebSocketClient.connect(url: url, configuration: configuration, logger: logger) { inbound, outbound, _ in
            await link.onConnected()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await frame in link.outbound {
                        try await outbound.write(.text(String(decoding: encoder.encode(frame), as: UTF8.self)))
                    }
                }
                group.addTask {
                    for try await message in inbound.messages(maxSize: maxServerMessageBytes) {
                        guard case .text(let text) = message else { throw TransportError.binaryMessage }
                        // The URL asks for frames one per line: a message may carry several.
                        for frame in try encoder.decodeServerFrames(Array(text.utf8)) { await link.onFrame(frame) }
                    }
                }
                // Either side ending ends the connection: the writer when the session
                // closes it, the reader when the server does.
                try await group.next()
                group.cancelAll()
            }
        }
    }
}

/// Virtual sockets over HTTP: `POST /v1/poll` opens one with the hello frame, frames go up
/// with `POST /v1/poll/{sid}` and come down with `GET /v1/poll/{sid}?waitMs=N`.
enum LongPollTransport {
    static func run(server: URL, link: ConnectionLink, waitMs: Int, session: URLSession, logger: Logger) async throws {
        let base = try ParleyHTTP.endpoint(server, "v1/poll")
        // There is no handshake before hello: the virtual socket opens with it.
        await link.onConnected()
        let (sids, sidContinuation) = AsyncStream<String>.makeStream()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                // The sender: opens the session with the first frame (hello), then posts
                // every later frame in order, one request at a time so order is kept.
                defer { sidContinuation.finish() }
                var sid: String?
                // Sends are numbered so that one retried behind our back is taken once.
                var batch: UInt64 = 0
                for await frame in link.outbound {
                    if let sid {
                        let body = try JSONEncoder().encode([frame])
                        batch += 1
                        let (status, data) = try await HTTP.send("POST", numbered(base.appendingPathComponent(sid), ["batch": batch]),
                                                                 body: body, session: session)
                        if status == 404 { throw TransportError.sessionGone }
                        guard (200..<300).contains(status) else { throw TransportError.http(status: status, describe(data)) }
                        continue
                    }
                    let (status, data) = try await HTTP.send("POST", base, body: try JSONEncoder().encode(frame),
                                                             session: session)
                    guard (200..<300).contains(status) else {
                        // A refusal with one of our codes is told to the session like an
                        // error frame, so it can tell "bad token" from "try again".
                        if let body = try? JSONDecoder().decode(ErrorBody.self, from: data),
                           let code = ProtocolErrorCode(rawValue: body.code) {
                            await link.onFrame(.error(ProtocolError(code, body.message, fatal: true)))
                            return
                        }
                        throw TransportError.http(status: status, describe(data))
                    }
                    struct Opened: Decodable { var sid: String }
                    let opened = try JSONDecoder().decode(Opened.self, from: data)
                    sid = opened.sid
                    sidContinuation.yield(opened.sid)
                }
                // The session closed this connection: end the virtual socket now rather
                // than leave it to expire.
                if let sid {
                    _ = try? await HTTP.send("DELETE", base.appendingPathComponent(sid), body: nil, timeoutSeconds: 2,
                                             session: session)
                }
            }
            group.addTask {
                // The receiver: long-polls until the session is gone.
                for await sid in sids {
                    let url = base.appendingPathComponent(sid)
                    // Receives say how many batches were read, so that the server sends
                    // again a batch whose answer a retried request lost.
                    var read: UInt64 = 0
                    while !Task.isCancelled {
                        let pollURL = numbered(url, ["waitMs": UInt64(max(0, waitMs)), "after": read])
                        let (status, data) = try await HTTP.send("GET", pollURL, body: nil,
                                                                 timeoutSeconds: Double(waitMs) / 1000 + 10,
                                                                 session: session)
                        if status == 404 { throw TransportError.sessionGone }
                        guard status == 200 else { throw TransportError.http(status: status, describe(data)) }
                        let frames = try JSONDecoder().decode([ServerFrame].self, from: data)
                        read += 1
                        for frame in frames {
                            await link.onFrame(frame)
                        }
                    }
                }
            }
            try await group.next()
            group.cancelAll()
        }
    }

    private static func numbered(_ url: URL, _ query: KeyValuePairs<String, UInt64>) -> URL {
        var components = URLComponents(url: url, resolvingAgainstBaseURL: false)!
        components.queryItems = query.map { URLQueryItem(name: $0.key, value: String($0.value)) }
        return components.url!
    }

    private static func describe(_ data: Data) -> String {
        if let body = try? JSONDecoder().decode(ErrorBody.self, from: data) { return "\(body.code): \(body.message)" }
        return String(decoding: data.prefix(200), as: UTF8.self)
    }
}
