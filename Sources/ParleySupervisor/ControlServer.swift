import Logging
import NIOCore
import NIOPosix
import ParleyZone

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The supervisor's end of the control socket: accepts zone processes and `parley ctl`,
/// frames lines, and hands every message to the ``Supervisor`` actor.
enum ControlServer {
    typealias Server = NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>

    /// Binds ``ZonePaths/controlSocket`` with mode 0600, after making sure no other supervisor
    /// is serving this data directory (a socket left by a supervisor that died is replaced).
    static func bind(paths: ZonePaths) async throws -> Server {
        let path = paths.controlSocket
        guard path.utf8.count < 104 else { throw SupervisorError.socketPathTooLong(path) }
        if await isServed(path) { throw SupervisorError.alreadyRunning(data: paths.data) }
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        // The directory is 0700 already; the socket follows suit so a looser directory later
        // does not open it up.
        guard chmod(path, 0o600) == 0 else { throw SupervisorError.cannotPrepare(path: path, errno: errno) }
        return server
    }

    static func serve(_ server: Server, supervisor: Supervisor, logger: Logger) async throws {
        try await server.executeThenClose { connections in
            try await withThrowingDiscardingTaskGroup { group in
                for try await connection in connections {
                    group.addTask { await serve(connection, supervisor: supervisor, logger: logger) }
                }
            }
        }
    }

    /// One connection: its messages go to the supervisor in order; the supervisor's go out
    /// through a bounded outbox, so a stopped (SIGSTOP) peer cannot make it buffer forever.
    private static func serve(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>, supervisor: Supervisor,
                              logger: Logger) async {
        let (outbox, continuation) = AsyncStream<ControlMessage>.makeStream(bufferingPolicy: .bufferingOldest(256))
        let id = await supervisor.opened(outbox: continuation)
        do {
            try await connection.executeThenClose { inbound, outbound in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for await message in outbox {
                            try await outbound.write(ByteBuffer(bytes: try message.line()))
                        }
                    }
                    group.addTask {
                        var framer = ControlLineFramer()
                        for try await buffer in inbound {
                            for line in try framer.append(buffer.readableBytesView) {
                                await supervisor.received(try ControlMessage(line: line), on: id)
                            }
                        }
                    }
                    // Either side ending ends the connection: the peer closed, or the
                    // supervisor finished the outbox (a refused registration).
                    try await group.next()
                    group.cancelAll()
                }
            }
        } catch {
            // A malformed message or a broken socket ends this connection only.
            if !Task.isCancelled { logger.warning("closed a control connection: \(error)") }
        }
        await supervisor.closed(id)
    }

    /// Whether something answers on `path`.
    private static func isServed(_ path: String) async -> Bool {
        do {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(unixDomainSocketPath: path)
                .get()
            try? await channel.close()
            return true
        } catch {
            return false
        }
    }
}

public enum SupervisorError: Error, CustomStringConvertible {
    case alreadyRunning(data: String)
    case socketPathTooLong(String)
    case cannotPrepare(path: String, errno: Int32)

    public var description: String {
        switch self {
        case .alreadyRunning(let data):
            "a zone is already running with data directory \(data); stop it first ('kill -TERM' its supervisor)"
        case .socketPathTooLong(let path):
            "the control socket path \(path) is too long for a Unix socket (at most 103 bytes); use a shorter --data path"
        case .cannotPrepare(let path, let code):
            "cannot prepare \(path): \(String(cString: strerror(code)))"
        }
    }
}
