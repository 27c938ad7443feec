import FoundationEssentials
import HTTPTypes
import HummingbirdWebSocket
import Logging
import ParleyZone
import WSClient

/// One authenticated link between two processes of a zone: ``ZoneMessage``s as JSON text
/// over a WebSocket, so the same link works between machines. Either side may send at any
/// time; a message that does not decode breaks the link, since both ends are ours.
public struct ZoneLink: Sendable {
    /// The process at the other end, as its authentication proved.
    public let peer: NodeName
    private let inbound: WebSocketInboundStream
    private let outbound: WebSocketOutboundWriter
    /// Large enough for a batch of log entries streamed to a standby.
    public static let maxMessageBytes = 16 << 20
    public static let path = "/zone/link"

    init(peer: NodeName, inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) {
        self.peer = peer
        self.inbound = inbound
        self.outbound = outbound
    }

    public func send(_ message: ZoneMessage) async throws {
        let data = try JSONEncoder().encode(message)
        try await outbound.write(.text(String(decoding: data, as: UTF8.self)))
    }

    /// Every message from the peer, in order; ends when the link closes.
    public func messages() -> AsyncThrowingMapSequence<WebSocketInboundMessageStream, ZoneMessage> {
        inbound.messages(maxSize: Self.maxMessageBytes).map { message throws -> ZoneMessage in
            switch message {
            case .text(let text): try JSONDecoder().decode(ZoneMessage.self, from: Data(text.utf8))
            case .binary(let buffer): try JSONDecoder().decode(ZoneMessage.self, from: Data(buffer.readableBytesView))
            }
        }
    }

    // MARK: Accepting

    /// For an HTTP server's upgrade decision: the peer a `/zone/link` request authenticates
    /// as, or why it is refused (nil peer and a reason), or nil for any other path.
    public static func authenticate(_ request: HTTPRequest, secret: ZoneSecret, nowMs: Int64) -> Result<NodeName, ZoneSecretError>? {
        guard request.path == path else { return nil }
        guard let name = HTTPField.Name(ZoneSecret.headerName), let header = request.headerFields[name] else {
            return .failure(.refused("no \(ZoneSecret.headerName) header"))
        }
        return secret.verify(header, nowMs: nowMs)
    }

    /// The accepting side, once upgraded: runs `body` with the link; the link closes when it returns.
    public static func accept(peer: NodeName, inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter,
                              _ body: (ZoneLink) async throws -> Void) async {
        let link = ZoneLink(peer: peer, inbound: inbound, outbound: outbound)
        try? await body(link)
        try? await outbound.close(.normalClosure, reason: nil)
    }

    // MARK: Connecting

    /// Connects to `url` (an `http://` or, in a cluster, `https://` `host:port` base) as
    /// `me`, and runs `body` with the link until it returns or the link closes. Throws if the
    /// peer refuses or cannot be reached.
    public static func connect(to url: String, as me: NodeName, peer: NodeName, credentials: ZoneCredentials, nowMs: Int64,
                               logger: Logger, _ body: @escaping @Sendable (ZoneLink) async throws -> Void) async throws {
        var headers = HTTPFields()
        if let name = HTTPField.Name(ZoneSecret.headerName) { headers[name] = credentials.secret.header(for: me, nowMs: nowMs) }
        let configuration = WebSocketClientConfiguration(maxFrameSize: maxMessageBytes, additionalHeaders: headers,
                                                         closeTimeout: .seconds(1), sniHostname: ZoneTLS.serverName)
        let wsURL = url.replacingOccurrences(of: "http://", with: "ws://").replacingOccurrences(of: "https://", with: "wss://") + path
        if credentials.tls != nil, !wsURL.hasPrefix("wss://") {
            throw ZoneTLSError.plainAddress(url)
        }
        // A refused upgrade (bad secret, wrong path) or a refused handshake makes `connect` throw.
        _ = try await WebSocketClient.connect(url: wsURL, configuration: configuration, tlsConfiguration: credentials.tls?.client,
                                              logger: logger) { inbound, outbound, _ in
            try await body(ZoneLink(peer: peer, inbound: inbound, outbound: outbound))
        }
    }
}
