import NIOCore
import ParleyCore
import ParleyProtocol
import ServiceLifecycle

/// Long-polling "virtual sockets" for networks that block WebSockets. Each session wraps a
/// ``ClientConnection`` exactly as a WebSocket does; only the way bytes move differs.
actor PollSessions: Service {
    private struct Session {
        let connection: ClientConnection
        var lastReceiveMillis: Millis
        var receiving: Bool
        var delivery = PollDelivery<ByteBuffer>()
    }

    enum ReceiveError: Error {
        case unknownSession, alreadyReceiving
        /// The client's count of batches read is off by more than one lost answer.
        case outOfStep(after: UInt64, sent: UInt64)
    }

    enum SendError: Error {
        case unknownSession
        /// A numbered send skipped a batch.
        case outOfStep(batch: UInt64, expected: UInt64)
    }

    private var sessions: [String: Session] = [:]
    private let gateway: Gateway
    private let timeoutMillis: Int64
    private let clock: @Sendable () -> Millis

    init(gateway: Gateway, timeoutMillis: Int64, clock: @escaping @Sendable () -> Millis) {
        self.gateway = gateway
        self.timeoutMillis = timeoutMillis
        self.clock = clock
    }

    var count: Int { sessions.count }

    func open() -> (String, ClientConnection) {
        let connection = gateway.makeConnection(transport: "long-poll")
        var generator = SystemRandomNumberGenerator()
        let sid = (0..<4).map { _ in String(generator.next() as UInt64, radix: 36) }.joined()
        sessions[sid] = Session(connection: connection, lastReceiveMillis: clock(), receiving: false)
        return (sid, connection)
    }

    /// The connection a send numbered `batch` (nil: unnumbered) is for, or nil when the
    /// session has taken that batch already (a retried request).
    func connection(_ sid: String, batch: UInt64?) throws(SendError) -> ClientConnection? {
        guard let session = sessions[sid] else { throw .unknownSession }
        switch sessions[sid]!.delivery.send(batch: batch) {
        case .take: return session.connection
        case .duplicate: return nil
        case .outOfStep(let expected): throw .outOfStep(batch: batch ?? 0, expected: expected)
        }
    }

    /// Waits up to `waitMillis` for frames, for a client that has read `after` batches (nil:
    /// it does not count). Throws `unknownSession` if the session is gone (closed, expired,
    /// or drained after a fatal error).
    func receive(_ sid: String, after: UInt64?, waitMillis: Int64) async throws(ReceiveError) -> [ByteBuffer] {
        guard var session = sessions[sid] else { throw .unknownSession }
        guard !session.receiving else { throw .alreadyReceiving }
        switch session.delivery.receive(after: after) {
        case .resend(let frames):
            session.lastReceiveMillis = clock()
            sessions[sid] = session
            return frames
        case .outOfStep(let sent):
            throw .outOfStep(after: after ?? 0, sent: sent)
        case .fresh:
            break
        }
        session.receiving = true
        sessions[sid] = session
        let outbox = session.connection.outbox
        let (frames, closed) = await Self.wait(outbox, millis: waitMillis)
        if closed && frames.isEmpty {
            sessions[sid] = nil
            gateway.closed(session.connection)
            throw .unknownSession
        }
        sessions[sid]?.receiving = false
        sessions[sid]?.lastReceiveMillis = clock()
        sessions[sid]?.delivery.sending(frames)
        return frames
    }

    func close(_ sid: String) -> Bool {
        guard let session = sessions.removeValue(forKey: sid) else { return false }
        gateway.closed(session.connection)
        return true
    }

    /// Races the outbox against a timer and the server's graceful shutdown. Frames taken by
    /// the losing side are kept, never dropped: both results are merged.
    ///
    /// A stopping HTTP server waits for every request in progress, and it stops before the
    /// meetings that would end these waits: a poll held to its timer would hold the whole
    /// process that long. It is answered at once instead, and the client's next poll finds
    /// the server gone and resumes elsewhere.
    private static func wait(_ outbox: Outbox, millis: Int64) async -> ([ByteBuffer], closed: Bool) {
        enum Outcome: Sendable { case frames([ByteBuffer]?), timeout }
        return await withTaskGroup(of: Outcome.self) { group in
            group.addTask { .frames(await outbox.next()) }
            group.addTask {
                try? await Task.sleep(for: .milliseconds(millis))
                return .timeout
            }
            group.addTask {
                // Throws when cancelled, once another outcome came first.
                try? await gracefulShutdown()
                return .timeout
            }
            var frames: [ByteBuffer] = []
            var first = true
            while let outcome = await group.next() {
                if first { group.cancelAll(); first = false }
                if case .frames(let got?) = outcome { frames += got }
            }
            // A nil from a cancelled reader only means "nothing yet"; ask the outbox itself.
            return (frames, outbox.isFinished)
        }
    }

    /// Closes sessions whose client stopped polling.
    func run() async throws {
        for await _ in AsyncTimerSequence.repeating(every: .seconds(1)).cancelOnGracefulShutdown() {
            let now = clock()
            for (sid, session) in sessions where !session.receiving && now - session.lastReceiveMillis > timeoutMillis {
                sessions[sid] = nil
                gateway.closed(session.connection)
            }
        }
        for session in sessions.values { gateway.closed(session.connection) }
        sessions.removeAll()
    }
}

/// A ticking sequence without a dependency on swift-async-algorithms.
struct AsyncTimerSequence: AsyncSequence, Sendable {
    let interval: Duration
    static func repeating(every interval: Duration) -> Self { Self(interval: interval) }

    struct AsyncIterator: AsyncIteratorProtocol {
        let interval: Duration
        mutating func next() async -> Void? {
            do { try await Task.sleep(for: interval) } catch { return nil }
            return ()
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(interval: interval) }
}
