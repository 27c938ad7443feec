import NIOCore
import NIOWebSocket
import ParleyProtocol

/// A client's WebSocket (`/v1/ws`) as a plain channel handler on the connection's event
/// loop: frames in go straight to the ``Gateway``, frames out are taken from the
/// connection's ``Outbox`` when it says it has some.
///
/// No task per connection: an idle connection is this handler, its ``ClientConnection`` and
/// NIO's channel. (Served through async streams, each connection kept about 30 KB of task
/// stacks alive, most of its memory.) Everything here runs on the channel's event loop.
final class ClientSocketHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let gateway: Gateway
    private let connection: ClientConnection
    private let framing: WebSocketFraming
    private let pingInterval: TimeAmount
    private var context: ChannelHandlerContext?
    /// Frames are waiting in the outbox until the channel is writable again.
    private var waitingForWritability = false
    /// A close frame went out (ours, or the answer to the client's): nothing more is sent.
    private var closing = false
    /// Something arrived since the last liveness check.
    private var heard = true
    private var pingSent = false
    private var liveness: RepeatedTask?

    init(gateway: Gateway, connection: ClientConnection, framing: WebSocketFraming, pingInterval: TimeAmount) {
        self.gateway = gateway
        self.connection = connection
        self.framing = framing
        self.pingInterval = pingInterval
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        gateway.opened(connection, on: context.channel)
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        // Called from whichever thread enqueued; everything queued by the time the drain
        // runs goes out in one write and one flush.
        connection.outbox.push {
            eventLoop.execute { bound.value.drain() }
        }
        liveness = eventLoop.scheduleRepeatedTask(initialDelay: pingInterval, delay: pingInterval) { _ in
            bound.value.checkLiveness()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish()
    }

    /// The client's end of the TCP connection closed (its process died, or it shut down its
    /// side without a close frame). The server allows half-closure for HTTP, so this arrives
    /// as an event rather than closing the channel; a WebSocket has no use for a half-open
    /// connection, and waiting for the ping timeout would leave the participant shown as
    /// connected for two ping intervals.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        heard = true
        switch frame.opcode {
        case .text, .binary:
            gateway.receiveNow(frame.unmaskedData.readableBytesView, from: connection)
        case .ping:
            guard !closing else { return }
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            // The answer to our close frame: the handshake is complete.
            guard !closing else {
                context.close(promise: nil)
                return
            }
            // Answer with the client's own code (if it may be sent), then close: it said it is going.
            var data = frame.unmaskedData
            let code = data.readInteger(as: UInt16.self) ?? 1000
            close(code: (1000...4999).contains(code) && ![1004, 1005, 1006, 1015].contains(code) ? code : 1000)
        default:
            break
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, waitingForWritability {
            waitingForWritability = false
            drain()
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A broken or oversized message ends the socket; the client resumes.
        context.close(promise: nil)
    }

    /// Writes what the outbox holds (of a resume's backlog, one chunk); closes after the last
    /// frame once it is closed.
    private func drain() {
        guard let context, !closing else { return }
        // A client that does not read fills the channel. Its live frames stay in the outbox,
        // which cuts it off as a slow consumer when it overflows; a backlog just waits.
        guard context.channel.isWritable else {
            waitingForWritability = true
            return
        }
        let (frames, closed, fromBacklog) = connection.outbox.take(backlogFrames: Self.backlogChunk)
        let messages = framing == .lines ? FrameLines.join(frames, maxBytes: WebSocketFraming.maxBatchBytes) : frames
        for message in messages {
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: message)), promise: nil)
        }
        if closed {
            close(code: 1000)
            return
        }
        if !messages.isEmpty { context.flush() }
        // More is owed (the rest of a backlog, or frames queued behind it): go on after the
        // event loop has served its other channels. Writability decides the pace.
        if fromBacklog {
            context.eventLoop.assumeIsolated().execute { self.drain() }
        }
    }

    /// Frames of a backlog encoded and written per turn of the event loop.
    static let backlogChunk = 128

    /// Sends a close frame, then ends our side of the connection and waits for the client's
    /// (its close frame or its end of stream), at most ``closeGrace``.
    ///
    /// Closing the socket outright would reset the connection when the client's own close
    /// frame arrives, and a reset makes the client's kernel drop what it has not read yet:
    /// the last frames, among them the fatal error that says why the connection ended.
    private func close(code: UInt16) {
        guard let context, !closing else { return }
        closing = true
        var data = context.channel.allocator.buffer(capacity: 2)
        data.writeInteger(code)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
            .whenComplete { result in
                if case .success = result {
                    channel.close(mode: .output, promise: nil)
                } else {
                    channel.close(promise: nil)
                }
            }
        context.eventLoop.scheduleTask(in: Self.closeGrace) { channel.close(promise: nil) }
    }

    /// How long a client has to answer our close frame before the connection is closed anyway.
    static let closeGrace = TimeAmount.seconds(2)

    /// A client silent for a whole interval gets a ping; silent for another, it is gone
    /// without having said so (its machine or network died) and the socket is closed.
    private func checkLiveness() {
        guard let context, !closing else { return }
        if heard {
            heard = false
            pingSent = false
        } else if pingSent {
            context.close(promise: nil)
        } else {
            pingSent = true
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer())), promise: nil)
        }
    }

    private func finish() {
        guard context != nil else { return }
        context = nil
        liveness?.cancel()
        liveness = nil
        connection.outbox.stopPushing()
        gateway.closed(connection)
    }
}

/// How server frames are put into a client's WebSocket messages, chosen by its URL.
enum WebSocketFraming: Equatable, Sendable {
    /// `/v1/ws`: one frame per message.
    case single
    /// `/v1/ws?frames=lines`: every frame queued at once goes out in one message, one frame
    /// per line. Fewer messages and one flush per batch: under load most of a server's time
    /// went into a write system call per frame per participant.
    case lines

    /// A batch of lines stays under this size; a single larger frame goes alone.
    static let maxBatchBytes = 64 << 10

    /// The framing a request path asks for; nil if the path is not the client WebSocket.
    init?(path: String) {
        let parts = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.first == "/v1/ws" else { return nil }
        let query = parts.count > 1 ? parts[1].split(separator: "&") : []
        self = query.contains(Substring(FrameLines.query)) ? .lines : .single
    }
}

extension FrameLines {
    /// Consecutive frames joined with `\n` into messages of at most `maxBytes` (a frame larger
    /// than that on its own stays alone), in order.
    static func join(_ frames: [ByteBuffer], maxBytes: Int) -> [ByteBuffer] {
        guard frames.count > 1 else { return frames }
        var messages: [ByteBuffer] = []
        var current = ByteBuffer()
        for var frame in frames {
            if current.readableBytes > 0, current.readableBytes + 1 + frame.readableBytes > maxBytes {
                messages.append(current)
                current = ByteBuffer()
            }
            if current.readableBytes > 0 { current.writeInteger(UInt8(ascii: "\n")) }
            current.writeBuffer(&frame)
        }
        if current.readableBytes > 0 { messages.append(current) }
        return messages
    }
}
