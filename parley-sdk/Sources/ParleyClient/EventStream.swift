import Synchronization

/// A client's events for one consumer: an `AsyncSequence` that ends when the session does.
///
/// Each stream keeps at most its buffer limit of unread events. When its consumer falls
/// further behind, the oldest are dropped and the consumer is told so by a
/// ``ClientEvent/dropped(count:)`` in their place, never silently.
/// ``MeetingClient/meeting`` is complete whatever a stream drops.
///
/// Iterate a stream from one task; for another consumer, ask
/// ``MeetingClient/subscribe(bufferLimit:)`` for a stream of its own.
public struct EventStream: AsyncSequence, Sendable {
    public typealias Element = ClientEvent
    public typealias Failure = Never

    let buffer: EventBuffer

    public func makeAsyncIterator() -> Iterator { Iterator(buffer: buffer) }

    public struct Iterator: AsyncIteratorProtocol {
        let buffer: EventBuffer
        public mutating func next() async -> ClientEvent? { await buffer.next() }
        public mutating func next(isolation actor: isolated (any Actor)?) async -> ClientEvent? { await buffer.next() }
    }
}

/// One subscriber's bounded queue of events.
final class EventBuffer: Sendable {
    private struct State {
        var queue: [ClientEvent] = []
        var head = 0
        var dropped = 0
        var finished = false
        var waiter: CheckedContinuation<ClientEvent?, Never>?

        var count: Int { queue.count - head }

        mutating func pop() -> ClientEvent? {
            if dropped > 0 {
                defer { dropped = 0 }
                return .dropped(count: dropped)
            }
            guard head < queue.count else { return nil }
            let event = queue[head]
            head += 1
            // Compact now and then rather than shift on every read.
            if head >= 1_024, head * 2 >= queue.count {
                queue.removeFirst(head)
                head = 0
            }
            return event
        }
    }

    let limit: Int
    private let state = Mutex(State())

    init(limit: Int) { self.limit = max(1, limit) }

    func yield(_ event: ClientEvent) {
        let waiter = state.withLock { state -> CheckedContinuation<ClientEvent?, Never>? in
            guard !state.finished else { return nil }
            if let waiter = state.waiter, state.count == 0, state.dropped == 0 {
                state.waiter = nil
                return waiter
            }
            state.queue.append(event)
            if state.count > limit {
                state.head += 1
                state.dropped += 1
            }
            return nil
        }
        waiter?.resume(returning: event)
    }

    func finish() {
        let waiter = state.withLock { state in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
    }

    func next() async -> ClientEvent? {
        enum Fast { case value(ClientEvent?), wait }
        let fast: Fast = state.withLock { state in
            if let event = state.pop() { return .value(event) }
            return state.finished ? .value(nil) : .wait
        }
        if case .value(let event) = fast { return event }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<ClientEvent?, Never>) in
                let ready: Fast = state.withLock { state in
                    if let event = state.pop() { return .value(event) }
                    if state.finished || Task.isCancelled || state.waiter != nil { return .value(nil) }
                    state.waiter = continuation
                    return .wait
                }
                if case .value(let event) = ready { continuation.resume(returning: event) }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: nil)
        }
    }
}

/// Hands each event to every live subscriber. A subscriber whose stream is no longer
/// referenced is forgotten.
final class EventHub: Sendable {
    private struct Subscriber { weak var buffer: EventBuffer? }
    private let subscribers = Mutex<(list: [Subscriber], finished: Bool)>(([], false))

    func subscribe(limit: Int) -> EventStream {
        let buffer = EventBuffer(limit: limit)
        let finished = subscribers.withLock { state in
            if !state.finished { state.list.append(Subscriber(buffer: buffer)) }
            return state.finished
        }
        if finished { buffer.finish() }
        return EventStream(buffer: buffer)
    }

    func yield(_ event: ClientEvent) {
        let buffers = subscribers.withLock { state in
            state.list.removeAll { $0.buffer == nil }
            return state.list.compactMap(\.buffer)
        }
        for buffer in buffers { buffer.yield(event) }
    }

    func finish() {
        let buffers = subscribers.withLock { state in
            state.finished = true
            defer { state.list.removeAll() }
            return state.list.compactMap(\.buffer)
        }
        for buffer in buffers { buffer.finish() }
    }
}
