import ParleyCore
import ParleyStore
import Synchronization

/// Whether a process can do its job now (`GET /ready`), as opposed to being alive
/// (`GET /health`): its store answers, and whatever its role needs (a zone link, a manager).
public enum Readiness {
    /// How long the store may take to answer the probe before it counts as unreachable.
    public static let storeTimeout: Duration = .seconds(2)
}

/// Asks the store a trivial question, and says within ``Readiness/storeTimeout`` whether it
/// answered. One question at a time per store: callers while one is out share it.
///
/// The question runs in a task of its own, not a child of the caller's: a store that hangs
/// (a partitioned PostgreSQL host) may not give up when cancelled, and the caller must get
/// its answer on time anyway. That task is bounded by the store's own statement timeout, and
/// there is at most one.
public actor StoreProbe {
    private let store: any Store
    private var inFlight: Task<String?, Never>?

    public init(store: any Store) { self.store = store }

    /// Why the store cannot be used now, or nil when it answers.
    public func problem() async -> String? {
        let probe = inFlight ?? start()
        let answer = Answer()
        return await withCheckedContinuation { continuation in
            answer.await(continuation)
            Task { answer.give(await probe.value) }
            Task {
                try? await Task.sleep(for: Readiness.storeTimeout)
                answer.give("the store did not answer within \(Readiness.storeTimeout)")
            }
        }
    }

    private func start() -> Task<String?, Never> {
        let store = store
        let probe = Task {
            do {
                // Any answer will do, "no such meeting" included: the store was reached.
                _ = try await store.meeting(MeetingID("m-readiness-probe"))
                return String?.none
            } catch {
                return "the store is unreachable: \(error)"
            }
        }
        inFlight = probe
        Task { _ = await probe.value; self.finished(probe) }
        return probe
    }

    private func finished(_ probe: Task<String?, Never>) {
        if inFlight == probe { inFlight = nil }
    }

    /// The first of the probe's answer and the timeout, given once.
    private final class Answer: Sendable {
        private let state = Mutex<(continuation: CheckedContinuation<String?, Never>?, given: Bool)>((nil, false))

        func await(_ continuation: CheckedContinuation<String?, Never>) { state.withLock { $0.continuation = continuation } }

        func give(_ value: String?) {
            let continuation = state.withLock { state -> CheckedContinuation<String?, Never>? in
                guard !state.given else { return nil }
                state.given = true
                defer { state.continuation = nil }
                return state.continuation
            }
            continuation?.resume(returning: value)
        }
    }
}

