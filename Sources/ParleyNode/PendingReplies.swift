import Synchronization

/// Requests sent over a zone link that wait for their replies, each with a deadline: the
/// request-and-response half of the zone agent. Replies are matched by request id; a reply
/// that arrives before its caller starts waiting is kept, and one for a request that has
/// already timed out is dropped.
public final class PendingReplies<Reply: Sendable>: Sendable {
    private struct State {
        var next: UInt64 = 1
        /// Requests still expecting a reply.
        var outstanding: Set<UInt64> = []
        var waiting: [UInt64: CheckedContinuation<Reply, any Error>] = [:]
        var arrived: [UInt64: Reply] = [:]
        var closed: ZoneCallError?
    }

    private let state = Mutex(State())

    public init() {}

    /// Sends a request under a fresh id (`send` puts the id in the message) and waits for
    /// the reply with that id, at most `timeout`.
    /// - Throws: ``ZoneCallError/timedOut(after:)``, ``ZoneCallError/linkClosed(_:)``, what
    ///   `send` throws, or `CancellationError`.
    public func call(timeout: Duration, send: @Sendable (UInt64) async throws -> Void) async throws -> Reply {
        let id = try state.withLock { state throws(ZoneCallError) -> UInt64 in
            if let closed = state.closed { throw closed }
            defer { state.next += 1 }
            state.outstanding.insert(state.next)
            return state.next
        }
        defer { finish(id, with: nil) }
        try await send(id)
        return try await withThrowingTaskGroup(of: Reply.self) { group in
            group.addTask { try await self.reply(to: id) }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw ZoneCallError.timedOut(after: timeout)
            }
            defer { group.cancelAll() }
            guard let first = try await group.next() else { throw CancellationError() }
            return first
        }
    }

    /// A reply came in. Returns false if nobody expects it (unknown or already timed out).
    @discardableResult
    public func resolve(_ id: UInt64, with reply: Reply) -> Bool {
        let (known, waiter) = state.withLock { state -> (Bool, CheckedContinuation<Reply, any Error>?) in
            guard state.outstanding.contains(id) else { return (false, nil) }
            if let waiter = state.waiting.removeValue(forKey: id) { return (true, waiter) }
            state.arrived[id] = reply
            return (true, nil)
        }
        waiter?.resume(returning: reply)
        return known
    }

    /// The link is gone: every waiting call fails now, and later calls fail at once.
    public func close(_ reason: String) {
        let waiters = state.withLock { state in
            state.closed = .linkClosed(reason)
            defer { state.waiting.removeAll() }
            return Array(state.waiting.values)
        }
        for waiter in waiters { waiter.resume(throwing: ZoneCallError.linkClosed(reason)) }
    }

    public var outstandingCount: Int { state.withLock { $0.outstanding.count } }

    private func reply(to id: UInt64) async throws -> Reply {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Reply, any Error>) in
                let ready = state.withLock { state -> Result<Reply, any Error>? in
                    if let reply = state.arrived.removeValue(forKey: id) { return .success(reply) }
                    if let closed = state.closed { return .failure(closed) }
                    if Task.isCancelled { return .failure(CancellationError()) }
                    state.waiting[id] = continuation
                    return nil
                }
                if let ready { continuation.resume(with: ready) }
            }
        } onCancel: {
            finish(id, with: CancellationError())
        }
    }

    /// Forgets `id`; a caller still waiting is resumed with `error`.
    private func finish(_ id: UInt64, with error: (any Error)?) {
        let waiter = state.withLock { state in
            state.outstanding.remove(id)
            state.arrived[id] = nil
            return state.waiting.removeValue(forKey: id)
        }
        waiter?.resume(throwing: error ?? CancellationError())
    }
}

public enum ZoneCallError: Error, Equatable, Sendable, CustomStringConvertible {
    case timedOut(after: Duration)
    case linkClosed(String)

    public var description: String {
        switch self {
        case .timedOut(let after): "no reply within \(after)"
        case .linkClosed(let reason): "the link closed: \(reason)"
        }
    }
}
