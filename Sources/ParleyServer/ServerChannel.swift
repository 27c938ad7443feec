import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket
import ParleyTelemetry
@_spi(WSInternal) import WSCore

/// How one TCP connection to a Parley server is served: HTTP/1 for the API and pages, with
/// one WebSocket upgrade.
///
/// `/v1/ws`, the client WebSocket, becomes plain channel handlers (``ClientSocketHandler``)
/// and needs no task once it is upgraded: the connection's task ends with the upgrade. That
/// is what keeps an idle participant small. (A zone's links between its processes have
/// ports of their own.)
///
/// Everything else is Hummingbird's HTTP/1 handling, unchanged.
struct ServerChannel: ServerChildChannel, HTTPChannelHandler {
    enum Negotiated: Sendable {
        /// The client WebSocket, served by its channel handlers from here on.
        case clientSocket
        case http(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        /// A WebSocket upgrade nobody here takes: answered 400.
        case refusedUpgrade(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
    }

    struct Value: ServerChildChannelValue {
        let negotiated: EventLoopFuture<Negotiated>
        let channel: any Channel
    }

    let responder: Responder
    /// Where client frames go; nil on a server that hosts no meetings (a zone's web front).
    let gateway: Gateway?
    /// Whether the connection runs over TLS (what requests' URLs say).
    let secure: Bool
    /// Largest WebSocket message accepted, after reassembling its fragments.
    let maxMessageBytes: Int
    let pingInterval: TimeAmount
    /// The first request's head must be complete within this (``RequestHeadDeadline``).
    let headTimeout: TimeAmount
    /// An HTTP connection with no request in progress for this long is closed.
    let idleTimeout: Duration

    init(responder: @escaping Responder, gateway: Gateway?, secure: Bool, maxMessageBytes: Int, pingInterval: TimeAmount,
         headTimeout: TimeAmount, idleTimeout: Duration) {
        self.headTimeout = headTimeout
        self.idleTimeout = idleTimeout
        self.responder = Self.redirectingLateUpgrades(responder)
        self.gateway = gateway
        self.secure = secure
        self.maxMessageBytes = maxMessageBytes
        self.pingInterval = pingInterval
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let chosen = NIOLoopBoundBox<WebSocketFraming?>(nil, eventLoop: channel.eventLoop)
            let attempted = NIOLoopBoundBox(false, eventLoop: channel.eventLoop)
            let upgrader = NIOTypedWebSocketServerUpgrader<Negotiated>(
                maxFrameSize: maxMessageBytes,
                shouldUpgrade: { channel, head in
                    attempted.value = true
                    chosen.value = gateway == nil ? nil : WebSocketFraming(path: head.uri)
                    return channel.eventLoop.makeSucceededFuture(chosen.value == nil ? nil : HTTPHeaders())
                },
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        guard let framing = chosen.value, let gateway else { throw NIOWebSocketUpgradeError.unsupportedWebSocketTarget }
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
                    }
                })
            let upgrades = NIOTypedHTTPServerUpgradeConfiguration<Negotiated>(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: secure))
                        try channel.pipeline.syncOperations.addHandler(HTTPConnectionStateHandler(idleTimeout: idleTimeout, logger: logger))
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
            // Before the decoder, so it sees the bytes as they come.
            try channel.pipeline.syncOperations.addHandler(RequestHeadDeadline(timeout: headTimeout))
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
            }
        } catch let error as ChannelError where error == .inputClosed {
            logger.trace("connection closed before its first request")
        } catch {
            logger.debug("connection ended with an error", metadata: ["error": "\(error)"])
        }
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
