import NIOCore

/// Closes a connection whose first request head is not complete within `timeout`: a
/// client that opens connections and sends its headers a byte at a time (slowloris) holds
/// each for that long at most, not forever. It sits before the HTTP decoder and passes every
/// byte on untouched; it looks only for the blank line that ends a head, then steps aside.
/// Idle time between later requests is ``HTTPConnectionStateHandler``'s to bound.
final class RequestHeadDeadline: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    private let timeout: TimeAmount
    private var deadline: Scheduled<Void>?
    /// The last bytes seen, to find a "\r\n\r\n" split across reads.
    private var tail: [UInt8] = []
    /// Whether a byte other than CR or LF has come: the HTTP parser skips blank lines before
    /// a request line, so blank lines alone must not count as a finished head (a client
    /// would send "\r\n\r\n" first, then its headers a byte at a time).
    private var started = false
    private var done = false

    init(timeout: TimeAmount) { self.timeout = timeout }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        if !done {
            var bytes = buffer.readableBytesView[...]
            if !started {
                bytes = bytes.drop { $0 == 13 || $0 == 10 }
                started = !bytes.isEmpty
            }
            tail += bytes
            if tail.count >= 4, tail.indices.dropLast(3).contains(where: { tail[$0..<($0 + 4)].elementsEqual([13, 10, 13, 10]) }) {
                done = true
                deadline?.cancel()
                deadline = nil
                context.fireChannelRead(data)
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
                return
            }
            tail = Array(tail.suffix(3))
        }
        context.fireChannelRead(data)
    }

    private func arm(_ context: ChannelHandlerContext) {
        guard deadline == nil, !done else { return }
        let loop = context.eventLoop.assumeIsolated()
        deadline = loop.scheduleTask(in: timeout) { [weak self] in
            guard let self, !self.done else { return }
            context.close(promise: nil)
        }
    }
}
