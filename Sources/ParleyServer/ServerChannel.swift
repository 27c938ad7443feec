import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket
@_spi(WSInternal) import WSCore

/// How one TCP connection to a Parley server is served: HTTP/1 for the API and pages, with
/// two WebSocket upgrades.
///
/// - `/v1/ws`, the client WebSocket, becomes plain channel handlers
///   (``ClientSocketHandler``) and needs no task once it is upgraded: the connection's task
///   ends with the upgrade. That is what keeps an idle participant small.
/// - Any other upgrade the zone accepts (its links between servers) runs through
///   swift-websocket's async handler, as Hummingbird's own upgrade channel does.
///
/// Everything else is Hummingbird's HTTP/1 handling, unchanged.
struct ServerChannel: ServerChildChannel, HTTPChannelHandler {
    enum Negotiated: Sendable {
        /// The client WebSocket, served by its channel handlers from here on.
        case clientSocket
        case zoneLink(NIOAsyncChannel<WebSocketFrame, WebSocketFrame>, ZoneHooks.Upgrade)
        case http(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        /// A WebSocket upgrade nobody here takes: answered 400.
        case refusedUpgrade(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
    }

    struct Value: ServerChildChannelValue {
        let negotiated: EventLoopFuture<Negotiated>
        let channel: any Channel
    }

    /// What a WebSocket upgrade turned into, decided once from the request.
    private enum Upgrade {
        case client(WebSocketFraming)
        case zone(ZoneHooks.Upgrade)
    }

    let responder: Responder
    /// Where client frames go; nil on a server that hosts no meetings (a zone's web front).
    let gateway: Gateway?
    /// The zone's own WebSocket for a request, or nil.
    let zoneUpgrade: @Sendable (HTTPRequest) -> ZoneHooks.Upgrade?
    /// Largest WebSocket message accepted, after reassembling its fragments.
    let maxMessageBytes: Int
    let pingInterval: TimeAmount

    init(responder: @escaping Responder, gateway: Gateway?, zoneUpgrade: @escaping @Sendable (HTTPRequest) -> ZoneHooks.Upgrade?,
         maxMessageBytes: Int, pingInterval: TimeAmount) {
        self.responder = Self.redirectingLateUpgrades(responder)
        self.gateway = gateway
        self.zoneUpgrade = zoneUpgrade
        self.maxMessageBytes = maxMessageBytes
        self.pingInterval = pingInterval
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let chosen = NIOLoopBoundBox<Upgrade?>(nil, eventLoop: channel.eventLoop)
            let attempted = NIOLoopBoundBox(false, eventLoop: channel.eventLoop)
            let upgrader = NIOTypedWebSocketServerUpgrader<Negotiated>(
                maxFrameSize: maxMessageBytes,
                shouldUpgrade: { channel, head in
                    attempted.value = true
                    chosen.value = upgrade(for: head)
                    return channel.eventLoop.makeSucceededFuture(chosen.value == nil ? nil : HTTPHeaders())
                },
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        switch chosen.value {
                        case .client(let framing)?:
                            guard let gateway else { throw NIOWebSocketUpgradeError.unsupportedWebSocketTarget }
                            let connection = gateway.makeConnection(transport: "websocket")
                            do {
                                try channel.pipeline.syncOperations.addHandlers([
                                    NIOWebSocketFrameAggregator(minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 1_024,
                                                                maxAccumulatedFrameSize: maxMessageBytes),
                                    ClientSocketHandler(gateway: gateway, connection: connection, framing: framing,
                                                        pingInterval: pingInterval),
                                ])
                            } catch {
                                gateway.closed(connection)
                                throw error
                            }
                            return .clientSocket
                        case .zone(let handler)?:
                            let link = try NIOAsyncChannel<WebSocketFrame, WebSocketFrame>(
                                wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                            return .zoneLink(link, handler)
                        case nil:
                            throw NIOWebSocketUpgradeError.unsupportedWebSocketTarget
                        }
                    }
                })
            let upgrades = NIOTypedHTTPServerUpgradeConfiguration<Negotiated>(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        try channel.pipeline.syncOperations.addHandler(HTTPConnectionStateHandler(idleTimeout: nil, logger: logger))
                        let http = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                        return attempted.value ? .refusedUpgrade(http) : .http(http)
                    }
                })
            var configuration = NIOUpgradableHTTPServerPipelineConfiguration<Negotiated>(upgradeConfiguration: upgrades)
            // As Hummingbird's own HTTP/1 channels: it pipelines, handles errors and checks headers itself.
            configuration.enablePipelining = false
            configuration.enableErrorHandling = false
            configuration.enableResponseHeaderValidation = false
            let negotiated = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: configuration)
            return Value(negotiated: negotiated, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.negotiated.get() {
            case .clientSocket:
                return
            case .http(let http):
                await handleHTTP(asyncChannel: http, logger: logger)
            case .refusedUpgrade(let http):
                await Self.refuse(http, logger: logger)
            case .zoneLink(let link, let handler):
                _ = try await WebSocketHandler.handle(
                    type: .server,
                    configuration: .init(extensions: [], autoPing: .enabled(timePeriod: .seconds(30)), validateUTF8: false,
                                         maxFrameSize: maxMessageBytes),
                    asyncChannel: link, context: LinkContext(logger: logger),
                    handler: { inbound, outbound, _ in await handler(inbound, outbound) })
            }
        } catch let error as ChannelError where error == .inputClosed {
            logger.trace("connection closed before its first request")
        } catch {
            logger.debug("connection ended with an error", metadata: ["error": "\(error)"])
        }
    }

    private func upgrade(for head: HTTPRequestHead) -> Upgrade? {
        if gateway != nil, let framing = WebSocketFraming(path: head.uri) { return .client(framing) }
        guard let request = try? HTTPRequest(head, secure: false, splitCookie: false) else { return nil }
        return zoneUpgrade(request).map { .zone($0) }
    }

    private struct LinkContext: WebSocketContext {
        let logger: Logger
    }

    /// A refused upgrade gets an empty 400 and the connection closes.
    private static func refuse(_ http: NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, logger: Logger) async {
        do {
            try await http.executeThenClose { _, outbound in
                try await outbound.write(contentsOf: [
                    .head(HTTPResponse(status: .badRequest, headerFields: [.connection: "close", .contentLength: "0"])),
                    .end(nil),
                ])
            }
        } catch {
            logger.trace("could not answer a refused upgrade", metadata: ["error": "\(error)"])
        }
    }

    /// An upgrade is only recognised as a connection's first request. A later one on a
    /// kept-alive connection is sent back to the same URL on a new connection (307, close),
    /// as Hummingbird's upgrade channel does.
    private static func redirectingLateUpgrades(_ responder: @escaping Responder) -> Responder {
        struct RedirectedUpgrade: Error {}
        return { request, writer, channel in
            guard request.headers[.upgrade] == "websocket" else {
                try await responder(request, writer, channel)
                return
            }
            var path = request.uri.path
            if let query = request.uri.query { path += "?\(query)" }
            try await writer.writeResponse(HTTPResponse(status: .temporaryRedirect, headerFields: [.connection: "close", .location: path]))
            throw RedirectedUpgrade()
        }
    }
}
