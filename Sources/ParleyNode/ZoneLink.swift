import FoundationEssentials
import HTTPTypes
import HummingbirdWebSocket
import Logging
import ParleyZone
import Synchronization
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

/// What a process has queued to send on one zone link and not yet written. Whoever sends
/// on the link queues here without waiting; one task writes the messages out in order
/// (``write(to:)``).
///
/// Bounded at ``capacity`` messages. A full outbox means the peer is not reading: hung,
/// cut off, or far behind. Every message on a link is a protocol step (an order, an answer
/// a caller waits for, a heartbeat, a registration), so none is dropped on its own, which
/// would leave the two sides disagreeing silently. The link is cut instead, with everything
/// queued: the peer's agent reconnects and registers again with what it holds, from which
/// the manager rebuilds its view, and callers waiting on the cut link fail at once and retry.
public final class ZoneOutbox: Sendable {
    /// The largest burst a link carries comes with a failover: every client of a lost
    /// server asks the locator at once (up to `scaling.connectionsPerServer`, 2 000 by
    /// default, through the web process's link and back) and every meeting the server held
    /// is ordered somewhere else. A link that is read writes such a burst as fast as it
    /// comes; 16 384 holds several at once, a few MB of small messages. A queue that still
    /// fills is a peer that does not read, and memory must not grow without end for it.
    public static let capacity = 16_384

    /// What became of a message given to ``send(_:)``.
    public enum Queued: Equatable, Sendable {
        case queued
        /// The outbox was full: the link is cut now, and this message and every one queued
        /// with it are dropped.
        case full
        /// The link is closing or closed; nothing more goes out on it.
        case closed
    }

    private let messages: AsyncStream<ZoneMessage>
    private let queue: AsyncStream<ZoneMessage>.Continuation
    /// Ends when the link is cut, so a writer stuck in a write stops at once.
    private let cutSignal: AsyncStream<Never>
    private let cutter: AsyncStream<Never>.Continuation
    private let wasCut = Atomic(false)

    public init(capacity: Int = ZoneOutbox.capacity) {
        precondition(capacity > 0)
        (messages, queue) = AsyncStream.makeStream(bufferingPolicy: .bufferingOldest(capacity))
        (cutSignal, cutter) = AsyncStream.makeStream()
    }

    /// Queues `message`. On `.full` the link has been cut; the caller says so in its log.
    @discardableResult
    public func send(_ message: ZoneMessage) -> Queued {
        switch queue.yield(message) {
        case .enqueued: return .queued
        case .dropped:
            cut()
            return .full
        case .terminated: return .closed
        @unknown default: return .closed
        }
    }

    /// No more messages: what is queued is still written, then the writer ends.
    public func finish() { queue.finish() }

    /// Closes the link now: nothing queued is written any more, and a write in progress is
    /// abandoned.
    public func cut() {
        wasCut.store(true, ordering: .sequentiallyConsistent)
        queue.finish()
        cutter.finish()
    }

    public var isCut: Bool { wasCut.load(ordering: .sequentiallyConsistent) }

    /// Writes the queued messages with `write`, in order, until the outbox is finished and
    /// empty, it is cut, or a write throws. Called once, by the task that owns the link;
    /// the link is over when it returns.
    public func write(to write: @escaping @Sendable (ZoneMessage) async throws -> Void) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [messages] in
                for await message in messages {
                    // A stream finished by a cut still hands out what it had buffered.
                    guard !self.isCut, !Task.isCancelled else { return }
                    do { try await write(message) } catch { return }
                }
            }
            group.addTask { [cutSignal] in
                for await _ in cutSignal {}
            }
            await group.next()
            group.cancelAll()
        }
    }
}
