import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOSSL
import ParleyServer
import ParleyTelemetry

/// Where a zone process accepts links from the others (the manager, and each collab server
/// for its standbys): `/zone/link` only, on a port of its own, apart from the client port.
///
/// In a cluster it serves mutual TLS with the cluster's certificates, so a peer without them
/// fails the handshake. Every refusal, by TLS or by the zone secret, is logged with the
/// peer's address: either is someone without the cluster's credentials knocking.
public enum ZoneListener {
    /// - Parameters:
    ///   - port: announced once listening; the process gives out `scheme://host:port`.
    ///   - serve: runs for each authenticated link; the link closes when it returns.
    ///   - headTimeout: a connection's request head must be complete within this (as on the
    ///     client ports): a peer that connects and stalls is closed, secret or not.
    public static func application(host: String, bind: Int = 0, credentials: ZoneCredentials, serverName: String, port: PortAnnouncement,
                                   headTimeout: TimeAmount = .seconds(10),
                                   logger: Logger, serve: @escaping @Sendable (ZoneLink) async -> Void) -> some ApplicationProtocol {
        let router = Router()
        router.get("/health") { _, _ in "ok" }
        let secret = credentials.secret
        let tls = credentials.tls
        let server = HTTPServerBuilder { responder in
            let upgrade = HTTP1WebSocketUpgradeChannel(
                responder: responder,
                // A connection that is not upgraded (a /health probe, a refused peer) is closed
                // once idle, as on the client ports; an upgraded link has its own liveness.
                configuration: .init(http1: .init(idleTimeout: .seconds(60)), ws: .init(maxFrameSize: ZoneLink.maxMessageBytes))
            ) { request, channel, _ in
                guard let verdict = ZoneLink.authenticate(request, secret: secret, nowMs: wallClockMs()) else { return .dontUpgrade }
                guard case .success(let peer) = verdict else {
                    logger.warning("zone link refused", metadata: [
                        "peer": "\(channel.remoteAddress.map { "\($0)" } ?? "?")", "reason": "\(verdict)",
                    ])
                    return .dontUpgrade
                }
                return .upgrade([:]) { inbound, outbound, _ in
                    await ZoneLink.accept(peer: peer, inbound: inbound, outbound: outbound, serve)
                }
            }
            let deadlined = HeadDeadlineChannel(upgrade, timeout: headTimeout)
            guard let tls else { return deadlined }
            return try TLSChannel(RefusalLogged(base: deadlined, logger: logger), tlsConfiguration: tls.server)
        }
        return Application(
            router: router, server: server,
            configuration: .init(address: .hostname(host, port: bind), serverName: serverName),
            onServerRunning: { channel in port.announce(channel.localAddress?.port ?? 0) },
            logger: logger)
    }
}

/// A child channel that logs a failed TLS handshake before its base channel sees the error.
/// It sits right after the TLS handler, which runs the handshake.
private struct RefusalLogged<Base: ServerChildChannel>: ServerChildChannel {
    let base: Base
    let logger: Logger

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Base.Value> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(TLSRefusalLog(logger: self.logger))
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Base.Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

private final class TLSRefusalLog: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    let logger: Logger

    init(logger: Logger) { self.logger = logger }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Only a failed handshake is a refusal: a peer that connects and goes away (a port
        // probe) or drops later is not.
        if case .handshakeFailed = error as? NIOSSLError {
            logger.warning("zone link refused: TLS handshake failed (no certificate signed by this cluster's CA?)", metadata: [
                "peer": "\(context.remoteAddress.map { "\($0)" } ?? "?")", "error": "\(error)",
            ])
        }
        context.fireErrorCaught(error)
    }
}
