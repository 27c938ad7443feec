import Histogram
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Nanoseconds on the monotonic clock: cheap, and comparable across the generator's threads.
func monotonicNanos() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// Every chat message the generator published, and who has received it so far.
///
/// A message's latency is from its publication to its last recipient: the moment the slowest
/// participant of the meeting had it. Messages are numbered in publication order; each belongs
/// to the step (offered rate) that published it.
final class DeliveryLedger: Sendable {
    struct StepTally: Sendable {
        /// Publish → last recipient, in microseconds.
        var latency = Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
        var published = 0
        var acked = 0
        /// Rejected ops and error frames, by code (`rate_limited`, `slow_consumer`, …).
        var problems: [String: Int] = [:]
        /// Messages every recipient got.
        var completed = 0
        /// Deliveries of this step's messages, and those that arrived while the step was sending.
        var deliveries = 0
        var deliveriesInWindow = 0
        /// When the last delivery of this step's messages arrived.
        var lastDeliveryNanos: UInt64 = 0
    }

    private struct State {
        var sentAt: [UInt64] = []
        var remaining: [Int32] = []
        var stepOf: [Int32] = []
        var steps: [StepTally] = []
        /// The step sending now; deliveries of its messages count toward its rate.
        var window: Int?
    }

    private let state = Mutex(State())

    /// Starts a step; returns its index.
    func beginStep() -> Int {
        state.withLock { state in
            state.steps.append(StepTally())
            state.window = state.steps.count - 1
            return state.steps.count - 1
        }
    }

    /// The step stopped sending: later deliveries are late.
    func closeWindow() { state.withLock { $0.window = nil } }

    /// Registers a message about to be published to `recipients` participants; returns its number.
    func publish(step: Int, recipients: Int, at now: UInt64) -> Int {
        state.withLock { state in
            state.sentAt.append(now)
            state.remaining.append(Int32(recipients))
            state.stepOf.append(Int32(step))
            state.steps[step].published += 1
            return state.sentAt.count - 1
        }
    }

    /// One participant received message `number`.
    func delivered(_ number: Int, at now: UInt64) {
        state.withLock { state in
            guard number < state.remaining.count, state.remaining[number] > 0 else { return }
            let step = Int(state.stepOf[number])
            state.remaining[number] -= 1
            state.steps[step].deliveries += 1
            state.steps[step].lastDeliveryNanos = max(state.steps[step].lastDeliveryNanos, now)
            if state.window == step { state.steps[step].deliveriesInWindow += 1 }
            if state.remaining[number] == 0 {
                state.steps[step].completed += 1
                let micros = (now &- state.sentAt[number]) / 1_000
                _ = state.steps[step].latency.record(max(1, micros))
            }
        }
    }

    func acked(_ number: Int) {
        state.withLock { state in
            guard number < state.stepOf.count else { return }
            state.steps[Int(state.stepOf[number])].acked += 1
        }
    }

    /// A rejected op or an error frame, counted against the latest step.
    func problem(code: String) {
        state.withLock { state in
            guard !state.steps.isEmpty else { return }
            state.steps[state.steps.count - 1].problems[code, default: 0] += 1
        }
    }

    func tally(_ step: Int) -> StepTally { state.withLock { $0.steps[step] } }
}
