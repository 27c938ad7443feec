import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import ParleyProtocol

/// One WebSocket client connection of the load generator, on a plain NIO pipeline.
///
/// The SDK's client runs every frame through async streams and a full JSON decode; at hundreds
/// of thousands of frames a second that would make the generator, not the server, the thing
/// measured. Here each text frame is handed to `onText` synchronously on the event loop, as
/// bytes, and the caller looks only at what it needs.
final class BenchSocket: Sendable {
    private let channel: any Channel

    private init(channel: any Channel) { self.channel = channel }

    enum ConnectError: Error, CustomStringConvertible {
        case notUpgraded(String)
        var description: String {
            switch self {
            case .notUpgraded(let why): "the server did not upgrade to a WebSocket: \(why)"
            }
        }
    }

    /// Connects to `ws://host:port/path` and returns once the upgrade is done.
    /// - Parameters:
    ///   - onText: every whole text message, on the connection's event loop.
    ///   - onClose: once, when the connection is gone for whatever reason.
    static func connect(
        group: any EventLoopGroup, host: String, port: Int, path: String = "/v1/ws?" + FrameLines.query,
        onText: @escaping @Sendable (ByteBuffer) -> Void, onClose: @escaping @Sendable () -> Void
    ) async throws -> BenchSocket {
        enum Upgrade: Sendable { case upgraded(any Channel), declined }
        let upgrade: EventLoopFuture<Upgrade> = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let upgrader = NIOTypedWebSocketClientUpgrader<Upgrade>(maxFrameSize: 1 << 24) { channel, _ in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(
                                FrameHandler(onText: onText, onClose: onClose))
                            return .upgraded(channel)
                        }
                    }
                    var headers = HTTPHeaders()
                    headers.add(name: "Host", value: "\(host):\(port)")
                    headers.add(name: "Content-Length", value: "0")
                    let configuration = NIOTypedHTTPClientUpgradeConfiguration<Upgrade>(
                        upgradeRequestHead: HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers),
                        upgraders: [upgrader],
                        notUpgradingCompletionHandler: { channel in
                            channel.eventLoop.makeCompletedFuture { .declined }
                        })
                    return try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
                        configuration: .init(upgradeConfiguration: configuration))
                }
            }
        switch try await upgrade.get() {
        case .upgraded(let channel): return BenchSocket(channel: channel)
        case .declined: throw ConnectError.notUpgraded("the server answered the upgrade request with plain HTTP")
        }
    }

    /// Sends one text message (masked, as a client must).
    func send(_ bytes: ByteBuffer) {
        let frame = WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: bytes)
        channel.writeAndFlush(frame, promise: nil)
    }

    /// Sends several text messages with one flush.
    func send(batch: [ByteBuffer]) {
        guard !batch.isEmpty else { return }
        channel.eventLoop.execute { [channel] in
            for bytes in batch {
                channel.write(WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: bytes), promise: nil)
            }
            channel.flush()
        }
    }

    /// Closes the TCP connection without a closing handshake (the server sees the client gone).
    func close() async {
        try? await channel.close()
    }
}

/// Reassembles text messages, answers pings, and reports the end of the connection.
private final class FrameHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let onText: @Sendable (ByteBuffer) -> Void
    private let onClose: @Sendable () -> Void
    private var partial: ByteBuffer?
    private var closed = false

    init(onText: @escaping @Sendable (ByteBuffer) -> Void, onClose: @escaping @Sendable () -> Void) {
        self.onText = onText
        self.onClose = onClose
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text where frame.fin && partial == nil:
            onText(frame.unmaskedData)
        case .text:
            partial = frame.unmaskedData
        case .continuation:
            guard var buffer = partial else { return }
            var more = frame.unmaskedData
            buffer.writeBuffer(&more)
            if frame.fin {
                partial = nil
                onText(buffer)
            } else {
                partial = buffer
            }
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            context.close(promise: nil)
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        reportClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func reportClosed() {
        guard !closed else { return }
        closed = true
        onClose()
    }
}
