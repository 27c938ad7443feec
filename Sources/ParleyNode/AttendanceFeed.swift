import ParleyCore
import Synchronization

/// A collab server's joins and leaves on their way to the log and license services, in
/// commit order.
///
/// Records are committed on the meetings' own tasks and handed to the zone link by one
/// forwarding task, while a join's admission goes to the license service directly. Without
/// an order between the two, a seat freed by a leave could still look taken to the next
/// join on this server: the leave's record was committed first, but sent second. So an
/// admission first waits until every record committed before it is on the link
/// (``handedOver(before:)``); the link and the manager keep that order to the license service.
public final class AttendanceFeed: Sendable {
    public let records: AsyncStream<Attendance>
    private let sink: AsyncStream<Attendance>.Continuation
    private let state = Mutex(State())

    private struct State {
        var committed = 0
        var handedOver = 0
        var nextWaiter = 0
        var waiting: [Int: (upTo: Int, resume: CheckedContinuation<Void, Never>)] = [:]
        /// Waits that timed out before they were parked.
        var abandoned: Set<Int> = []
    }

    /// `capacity` records may wait for the link; beyond that the oldest are dropped (and
    /// counted as handed over, so nothing waits for them).
    public init(capacity: Int = 10_000) {
        (records, sink) = AsyncStream.makeStream(bufferingPolicy: .bufferingOldest(capacity))
    }

    /// A join or leave was committed. Returns false if the feed was full and dropped it.
    @discardableResult
    public func committed(_ record: Attendance) -> Bool {
        // Counted and yielded under one lock, so the count matches the stream's order.
        state.withLock { state in
            state.committed += 1
            if case .enqueued = sink.yield(record) { return true }
            state.handedOver += 1
            return false
        }
    }

    /// The forwarding task has put the next record on the link (or could not).
    public func handedOver() {
        let ready = state.withLock { state in
            state.handedOver += 1
            let ready = state.waiting.filter { $0.value.upTo <= state.handedOver }
            for key in ready.keys { state.waiting[key] = nil }
            return ready.values.map(\.resume)
        }
        for waiter in ready { waiter.resume() }
    }

    /// Returns once every record committed before this call is on the link, or after `timeout`.
    public func handedOver(before timeout: Duration) async {
        let (target, waiter) = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return (state.committed, state.nextWaiter)
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let now = self.state.withLock { state in
                        if state.handedOver >= target || state.abandoned.remove(waiter) != nil { return true }
                        state.waiting[waiter] = (target, continuation)
                        return false
                    }
                    if now { continuation.resume() }
                }
            }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
            // After a timeout the wait is parked (or about to be), and the group would wait for it.
            let parked = state.withLock { state in
                if let parked = state.waiting.removeValue(forKey: waiter) { return parked.resume as CheckedContinuation<Void, Never>? }
                if state.handedOver < target { state.abandoned.insert(waiter) }
                return nil
            }
            parked?.resume()
        }
    }

    public func finish() { sink.finish() }
}
