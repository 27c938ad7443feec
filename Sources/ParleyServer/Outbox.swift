import NIOCore
import ParleyCore
import ParleyProtocol
import Synchronization

/// Frames a client is owed from history the server already holds: a resume's welcome and
/// replay. Encoded a chunk at a time as the client reads, so a long replay neither sits
/// in memory as frames nor counts as the client falling behind.
struct Backlog: Sendable {
    /// Sent before the entries (the welcome).
    private var lead: ByteBuffer?
    private var entries: ArraySlice<LogEntry>
    private let viewer: ParticipantID

    init(lead: ByteBuffer?, entries: ArraySlice<LogEntry>, viewer: ParticipantID) {
        self.lead = lead
        self.entries = entries
        self.viewer = viewer
    }

    var isEmpty: Bool { lead == nil && entries.isEmpty }

    /// Splits off the first `count` frames' worth (at least one), leaving the rest.
    mutating func removeFirst(_ count: Int) -> Backlog {
        let leadCount = lead == nil ? 0 : 1
        let taken = entries.prefix(max(0, max(1, count) - leadCount))
        entries = entries.dropFirst(taken.count)
        defer { lead = nil }
        return Backlog(lead: lead, entries: taken, viewer: viewer)
    }

    /// The frames, in order. Encoding is the costly part: it is done outside the outbox's
    /// lock, so the meeting host never waits on a reader.
    func encoded(_ encoder: FrameEncoder) -> [ByteBuffer] {
        var frames: [ByteBuffer] = []
        frames.reserveCapacity(entries.count + 1)
        if let lead { frames.append(lead) }
        for entry in entries {
            frames.append(ByteBuffer(bytes: encoder.encode(.event(DeliveredEntry(entry, for: viewer)))))
        }
        return frames
    }
}

/// The bounded queue of frames waiting to be written to one client.
///
/// The meeting host enqueues without waiting. Frames leave in one of two ways: a long-poll
/// request awaits them (``next()``), or a WebSocket is told when frames arrive
/// (``push(to:)``) and takes them on its event loop (``take(backlogFrames:)``), with no task
/// of its own. When a client falls more than `capacity` frames behind it is a slow
/// consumer: its queue is dropped, a final `slow_consumer` error is queued and the outbox
/// closes. The client resumes later from its last seq, so nothing is lost.
///
/// A resume's replay is a ``Backlog`` ahead of the queue, not in it: it goes out a chunk per
/// take, as fast as the client reads, and never counts against `capacity`. Only frames
/// queued live (events committed meanwhile, acks, errors, pongs) do.
final class Outbox: Sendable {
    private struct State {
        /// Goes out before `frames`; nil once it is all taken.
        var backlog: Backlog?
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

    /// Frames queued and not taken yet (a backlog not counted: it is read from history).
    var depth: Int { state.withLock { $0.frames.count } }

    /// Queues a frame. Returns false if the outbox is closed or just overflowed.
    @discardableResult
    func enqueue(_ frame: ByteBuffer) -> Bool { offer(frame) == .queued }

    enum Offer { case queued, overflowed, closed }

    /// Queues a frame, and says what became of it: queued, or refused because this frame
    /// overflowed the outbox (it is closed now), or because it was closed already.
    func offer(_ frame: ByteBuffer) -> Offer {
        let (outcome, waiter) = state.withLock { state -> (Offer, CheckedContinuation<Void, Never>?) in
            guard !state.closed else { return (.closed, nil) }
            if state.frames.count >= capacity {
                state.backlog = nil
                state.frames = [overflowFrame]
                state.closed = true
                defer { state.waiter = nil }
                return (.overflowed, state.waiter)
            }
            state.frames.append(frame)
            defer { state.waiter = nil }
            return (.queued, state.waiter)
        }
        waiter?.resume()
        notifyIfNeeded()
        return outcome
    }

    /// Puts frames owed from history ahead of everything queued from now on. Frames queued
    /// before it (a pong, say) go out after it.
    func startBacklog(_ backlog: Backlog) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard !state.closed, !backlog.isEmpty else { return nil }
            precondition(state.backlog == nil, "one backlog at a time")
            state.backlog = backlog
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
        notifyIfNeeded()
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

    /// The next frames: at most `backlogFrames` of a backlog while one is left, otherwise
    /// everything queued; and whether nothing more will come after them. The next arrival
    /// notifies again.
    /// `fromBacklog` says more may be waiting without a notification: the rest of the
    /// backlog, or frames queued behind it. Take again.
    func take(backlogFrames: Int) -> (frames: [ByteBuffer], closed: Bool, fromBacklog: Bool) {
        let taken = state.withLock { state in
            state.notified = false
            return Self.take(&state, backlogFrames: backlogFrames)
        }
        let (frames, closed) = taken.resolved()
        if case .backlog = taken { return (frames, closed, true) }
        return (frames, closed, false)
    }

    /// What a reader took: a part of the backlog (still to be encoded, by the one reader,
    /// which keeps the order), or queued frames.
    private enum Taken {
        case backlog(Backlog)
        case frames([ByteBuffer], closed: Bool)

        func resolved() -> (frames: [ByteBuffer], closed: Bool) {
            switch self {
            case .backlog(let part): (part.encoded(Outbox.encoder), false)
            case .frames(let frames, let closed): (frames, closed)
            }
        }
    }

    private static let encoder = FrameEncoder()

    private static func take(_ state: inout State, backlogFrames: Int) -> Taken {
        if var backlog = state.backlog {
            let part = backlog.removeFirst(backlogFrames)
            state.backlog = backlog.isEmpty ? nil : backlog
            return .backlog(part)
        }
        defer { state.frames.removeAll(keepingCapacity: false) }
        return .frames(state.frames, closed: state.closed)
    }

    private func notifyIfNeeded() {
        let notify = state.withLock { state -> (@Sendable () -> Void)? in
            guard let notify = state.notify, !state.notified, state.backlog != nil || !state.frames.isEmpty || state.closed else { return nil }
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
    var isFinished: Bool { state.withLock { $0.closed && $0.frames.isEmpty && $0.backlog == nil } }

    /// Everything queued so far (of a backlog, at most `capacity` frames), waiting until there
    /// is something. Returns nil once the outbox is closed and drained, or when the reading
    /// task is cancelled with nothing queued (so a cancelled writer loop ends instead of
    /// spinning). One reader at a time.
    func next() async -> [ByteBuffer]? {
        while true {
            if let ready = takeReady() { return ready.isEmpty ? nil : ready }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let resumeNow = state.withLock { state -> Bool in
                        if state.backlog != nil || !state.frames.isEmpty || state.closed || Task.isCancelled { return true }
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
        let taken = state.withLock { state -> Taken? in
            if state.backlog != nil || !state.frames.isEmpty {
                return Self.take(&state, backlogFrames: capacity)
            }
            return state.closed ? .frames([], closed: true) : nil
        }
        return taken?.resolved().frames
    }
}

/// A many-writer, one-reader queue of inputs for a meeting host. The reader takes everything
/// queued at once, which is what lets the host commit a whole batch in one write.
enum InboxSendResult { case queued, full, finished }

final class Inbox<Element: Sendable>: Sendable {
    private struct State {
        var items: [Element] = []
        var finished = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) { self.capacity = capacity }

    typealias SendResult = InboxSendResult

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
