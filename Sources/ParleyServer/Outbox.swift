import NIOCore
import Synchronization

/// The bounded queue of frames waiting to be written to one client.
///
/// The meeting host enqueues without waiting. Frames leave in one of two ways: a long-poll
/// request awaits them (``next()``), or a WebSocket is told when frames arrive
/// (``push(to:)``) and takes them on its event loop (``take()``), with no task of its own.
/// When a client falls more than `capacity` frames behind it is a slow consumer: its queue
/// is dropped, a final `slow_consumer` error is queued and the outbox closes. The client
/// resumes later from its last seq, so nothing is lost.
final class Outbox: Sendable {
    private struct State {
        var frames: [ByteBuffer] = []
        var closed = false
        var waiter: CheckedContinuation<Void, Never>?
        /// Called when frames arrive, or the outbox closes, with nobody told yet.
        var notify: (@Sendable () -> Void)?
        /// `notify` was called and the frames not taken since: further arrivals join them.
        var notified = false
    }

    let capacity: Int
    private let state = Mutex(State())
    private let overflowFrame: ByteBuffer

    init(capacity: Int, overflowFrame: ByteBuffer) {
        precondition(capacity > 0)
        self.capacity = capacity
        self.overflowFrame = overflowFrame
    }

    /// Queues a frame. Returns false if the outbox is closed or just overflowed.
    @discardableResult
    func enqueue(_ frame: ByteBuffer) -> Bool {
        let (accepted, waiter) = state.withLock { state -> (Bool, CheckedContinuation<Void, Never>?) in
            guard !state.closed else { return (false, nil) }
            if state.frames.count >= capacity {
                state.frames = [overflowFrame]
                state.closed = true
                defer { state.waiter = nil }
                return (false, state.waiter)
            }
            state.frames.append(frame)
            defer { state.waiter = nil }
            return (true, state.waiter)
        }
        waiter?.resume()
        notifyIfNeeded()
        return accepted
    }

    /// Pushes from now on: `notify` is called (from any thread) whenever frames wait or the
    /// outbox closes and the reader has not been told since its last ``take()``.
    func push(to notify: @escaping @Sendable () -> Void) {
        state.withLock { $0.notify = notify }
        notifyIfNeeded()
    }

    /// Stops pushing; drops the callback (and whatever it holds).
    func stopPushing() {
        state.withLock { state in
            state.notify = nil
            state.notified = false
        }
    }

    /// Everything queued, and whether the outbox is closed (then nothing more will come).
    /// The next arrival notifies again.
    func take() -> (frames: [ByteBuffer], closed: Bool) {
        state.withLock { state in
            state.notified = false
            defer { state.frames.removeAll(keepingCapacity: false) }
            return (state.frames, state.closed)
        }
    }

    private func notifyIfNeeded() {
        let notify = state.withLock { state -> (@Sendable () -> Void)? in
            guard let notify = state.notify, !state.notified, !state.frames.isEmpty || state.closed else { return nil }
            state.notified = true
            return notify
        }
        notify?()
    }

    /// Queues a last frame (or none) and closes: the writer sends what is queued, then ends.
    func close(after frame: ByteBuffer? = nil) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard !state.closed else { return nil }
            if let frame { state.frames.append(frame) }
            state.closed = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
        notifyIfNeeded()
    }

    /// Closed, and every queued frame taken.
    var isFinished: Bool { state.withLock { $0.closed && $0.frames.isEmpty } }

    /// Everything queued so far, waiting until there is something. Returns nil once the
    /// outbox is closed and drained, or when the reading task is cancelled with nothing
    /// queued (so a cancelled writer loop ends instead of spinning). One reader at a time.
    func next() async -> [ByteBuffer]? {
        while true {
            if let ready = takeReady() { return ready.isEmpty ? nil : ready }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let resumeNow = state.withLock { state -> Bool in
                        if !state.frames.isEmpty || state.closed || Task.isCancelled { return true }
                        precondition(state.waiter == nil, "one reader at a time")
                        state.waiter = continuation
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            } onCancel: {
                state.withLock { state -> CheckedContinuation<Void, Never>? in
                    defer { state.waiter = nil }
                    return state.waiter
                }?.resume()
            }
            if Task.isCancelled {
                guard let ready = takeReady(), !ready.isEmpty else { return nil }
                return ready
            }
        }
    }

    /// Queued frames, or [] if closed and drained, or nil if open and empty.
    private func takeReady() -> [ByteBuffer]? {
        state.withLock { state in
            if !state.frames.isEmpty {
                defer { state.frames.removeAll(keepingCapacity: true) }
                return state.frames
            }
            return state.closed ? [] : nil
        }
    }
}

/// A many-writer, one-reader queue of inputs for a meeting host. The reader takes everything
/// queued at once, which is what lets the host commit a whole batch in one write.
final class Inbox<Element: Sendable>: Sendable {
    private struct State {
        var items: [Element] = []
        var finished = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) { self.capacity = capacity }

    enum SendResult { case queued, full, finished }

    /// Inputs waiting right now (the load report's queue depth).
    var depth: Int { state.withLock { $0.items.count } }

    /// Never blocks: a host that is this far behind refuses work rather than grow.
    func send(_ item: Element, force: Bool = false) -> SendResult {
        let (result, waiter) = state.withLock { state -> (SendResult, CheckedContinuation<Void, Never>?) in
            if state.finished { return (.finished, nil) }
            if !force && state.items.count >= capacity { return (.full, nil) }
            state.items.append(item)
            defer { state.waiter = nil }
            return (.queued, state.waiter)
        }
        waiter?.resume()
        return result
    }

    func finish() {
        state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }?.resume()
    }

    /// All queued items; nil when finished and drained.
    func next() async -> [Element]? {
        while true {
            let ready = state.withLock { state -> [Element]?? in
                if !state.items.isEmpty {
                    defer { state.items.removeAll(keepingCapacity: true) }
                    return .some(state.items)
                }
                return state.finished ? .some(nil) : nil
            }
            if let ready { return ready }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if !state.items.isEmpty || state.finished { return true }
                    state.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        }
    }
}
