import NIOCore

/// Closes a connection whose first request head is not complete within `timeout`: a
/// client that opens connections and sends its headers a byte at a time (slowloris) holds
/// each for that long at most, not forever. It sits before the HTTP decoder and passes every
/// byte on untouched; it looks only for the blank line that ends a head, then steps aside.
/// Idle time between later requests is ``HTTPConnectionStateHandler``'s to bound.
public final class RequestHeadDeadline: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = NIOAny
    public typealias OutboundOut = NIOAny

    private let timeout: TimeAmount
    private var deadline: Scheduled<Void>?
    /// The last bytes seen, to find a "\r\n\r\n" split across reads.
    private var tail: [UInt8] = []
    /// Whether a byte other than CR or LF has come: the HTTP parser skips blank lines before
    /// a request line, so blank lines alone must not count as a finished head (a client
    /// would send "\r\n\r\n" first, then its headers a byte at a time).
    private var started = false
    private var done = false

    public init(timeout: TimeAmount) { self.timeout = timeout }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        arm(context)
        context.fireChannelActive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
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

import HummingbirdCore
import Logging

/// Any Hummingbird child channel with ``RequestHeadDeadline`` in front of it: for listeners
/// built from Hummingbird's own channels (the zone-link listener), which cannot add it
/// themselves. Added after TLS, if any, so it reads the plain bytes.
public struct HeadDeadlineChannel<Base: ServerChildChannel>: ServerChildChannel {
    public let base: Base
    public let timeout: TimeAmount

    public init(_ base: Base, timeout: TimeAmount) {
        self.base = base
        self.timeout = timeout
    }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Base.Value> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(RequestHeadDeadline(timeout: timeout))
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    public func handle(value: Base.Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}
