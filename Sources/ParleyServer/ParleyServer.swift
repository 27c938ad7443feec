import FoundationEssentials
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket
import ParleyCore
import ParleyProtocol
import ParleyStore
import ServiceLifecycle

/// One Parley server: HTTP API, WebSocket and long-poll transports, meeting hosts and the
/// durable store, run as a service group that shuts down in order (stop accepting, then
/// let every meeting commit and checkpoint).
public struct ParleyServer: Sendable {
    public let configuration: ServerConfiguration
    let logger: Logger

    public init(configuration: ServerConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Runs until SIGTERM/SIGINT (or cancellation). `onListening` receives the bound port.
    public func run(onListening: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let configuration = configuration
        let logger = logger
        let clock: @Sendable () -> Millis = { Millis((Date().timeIntervalSince1970 * 1000).rounded()) }
        let store = try SQLiteStore(directory: configuration.dataDirectory,
                                    synchronous: configuration.fsyncEveryCommit ? .full : .normal, logger: logger)
        let commitLog = GroupCommitLog(store: store)
        let tokens = try await TokenAuthority(dataDirectory: configuration.dataDirectory,
                                              lifetimeSeconds: configuration.tokenLifetimeSeconds)
        let directory = MeetingDirectory(store: store, commitLog: commitLog, configuration: configuration,
                                         clock: clock, logger: logger)
        let gateway = Gateway(directory: directory, tokens: tokens, configuration: configuration, clock: clock, logger: logger)
        let polls = PollSessions(gateway: gateway, timeoutMillis: configuration.pollSessionTimeoutMillis, clock: clock)
        let api = HTTPAPI(store: store, tokens: tokens, directory: directory, polls: polls, gateway: gateway,
                          configuration: configuration, clock: clock, logger: logger)

        let maxInbound = max(configuration.limits.maxFrameBytes * 2, 1 << 16)
        let app = Application(
            router: api.router(),
            server: .http1WebSocketUpgrade(configuration: .init(ws: .init(maxFrameSize: maxInbound))) { request, _, _ in
                guard request.path == "/v1/ws" else { return .dontUpgrade }
                return .upgrade([:]) { inbound, outbound, _ in
                    await WebSocketTransport.serve(inbound: inbound, outbound: outbound, gateway: gateway,
                                                   maxMessageBytes: maxInbound)
                }
            },
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "parley"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? configuration.port
                logger.info("parley is listening", metadata: [
                    "address": "http://\(configuration.host):\(port)", "data": "\(configuration.dataDirectory)",
                ])
                await onListening(port)
            },
            logger: logger
        )
        // Services stop in reverse order: the HTTP server first, then long-poll sessions,
        // then the meetings, which commit and checkpoint last.
        let group = ServiceGroup(configuration: .init(
            services: [directory, polls, app],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
        logger.info("parley stopped")
    }
}

/// Moves frames between a WebSocket and a ``ClientConnection``.
enum WebSocketTransport {
    static func serve(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, gateway: Gateway,
                      maxMessageBytes: Int) async {
        let connection = gateway.makeConnection(transport: "websocket")
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                while let frames = await connection.outbox.next() {
                    for frame in frames {
                        do {
                            try await outbound.write(.custom(WebSocketFrame(fin: true, opcode: .text, data: frame)))
                        } catch {
                            return
                        }
                    }
                }
                // The server closed the connection (fatal error or slow consumer).
                try? await outbound.close(.normalClosure, reason: nil)
            }
            group.addTask {
                do {
                    for try await message in inbound.messages(maxSize: maxMessageBytes) {
                        switch message {
                        case .text(let text): await gateway.receive(Array(text.utf8), from: connection)
                        case .binary(let buffer): await gateway.receive(buffer.readableBytesView, from: connection)
                        }
                    }
                } catch {
                    // A broken or oversized message ends the socket; the client resumes.
                }
            }
            await group.next()
            group.cancelAll()
        }
        gateway.closed(connection)
    }
}
