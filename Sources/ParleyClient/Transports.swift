import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import ParleyCore
import ParleyProtocol
import WSClient

/// One connection's I/O, seen from a transport. A transport runs until the connection is
/// over, calling back in order; it never decides anything about the session.
struct TransportLink: Sendable {
    /// Frames to write, in order. Finishing it asks the transport to close gracefully.
    var outbound: AsyncStream<ClientFrame>
    var onConnected: @Sendable () async -> Void
    /// Called for each frame, in arrival order; the next frame waits for it to return.
    var onFrame: @Sendable (ServerFrame) async -> Void
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
    static func run(url: String, link: TransportLink, logger: Logger) async throws {
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
    static func run(server: URL, link: TransportLink, waitMs: Int, session: URLSession, logger: Logger) async throws {
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
                for await frame in link.outbound {
                    if let sid {
                        let body = try JSONEncoder().encode([frame])
                        let (status, data) = try await HTTP.send("POST", base.appendingPathComponent(sid), body: body,
                                                                 session: session)
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
                    var components = URLComponents(url: url, resolvingAgainstBaseURL: false)!
                    components.queryItems = [URLQueryItem(name: "waitMs", value: String(waitMs))]
                    let pollURL = components.url!
                    while !Task.isCancelled {
                        let (status, data) = try await HTTP.send("GET", pollURL, body: nil,
                                                                 timeoutSeconds: Double(waitMs) / 1000 + 10,
                                                                 session: session)
                        if status == 404 { throw TransportError.sessionGone }
                        guard status == 200 else { throw TransportError.http(status: status, describe(data)) }
                        for frame in try JSONDecoder().decode([ServerFrame].self, from: data) {
                            await link.onFrame(frame)
                        }
                    }
                }
            }
            try await group.next()
            group.cancelAll()
        }
    }

    private static func describe(_ data: Data) -> String {
        if let body = try? JSONDecoder().decode(ErrorBody.self, from: data) { return "\(body.code): \(body.message)" }
        return String(decoding: data.prefix(200), as: UTF8.self)
    }
}
