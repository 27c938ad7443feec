import CoreMetrics
import ParleyCore
import ParleyTelemetry

/// Group commit in front of any `Store`: concurrent commits, for any meetings, share one
/// `append` (one transaction, one fsync).
///
/// While an `append` is in flight, new commits queue up; the next `append` carries all of
/// them (up to `maxBatchEntries`). There is no background task: the caller that finds no
/// flush in flight becomes the leader and flushes in its own call until its own entries are
/// settled, then hands the lead to the oldest waiting caller.
///
/// Guarantees:
/// - `commit` returns only when its entries are durable, or throws the error of the
///   `append` that carried them (then none of them were stored).
/// - Commits for one meeting reach the store in call order.
/// - One meeting's failure does not fail the others: when an append fails for a named
///   meeting (fenced, not contiguous, unknown), that meeting's requests get the error and
///   the rest of the batch is retried without them.
/// - Cancellation does not abort a commit: a queued or carried request is written anyway.
public actor GroupCommitLog {
    public struct Stats: Equatable, Sendable {
        /// Successful `append` calls.
        public var batches = 0
        /// Entries made durable.
        public var entries = 0
        /// `commit` calls made durable.
        public var commits = 0
    }

    public nonisolated let maxBatchEntries: Int
    public private(set) var stats = Stats()

    private let store: any Store
    private let batchEntries: Recorder
    private let commitErrors: Counter
    private var queue: [Request] = []
    private var leading = false
    private var nextID: UInt64 = 0

    private struct Request {
        var id: UInt64
        var meeting: MeetingID
        var entries: [LogEntry]
        /// nil for the leader's own request.
        var waiter: CheckedContinuation<Wake, Never>?
    }

    private enum Wake: Sendable {
        case settled(Result<Void, StoreError>)
        /// Your request is still queued and nobody is flushing: lead.
        case lead
    }

    /// - Parameter maxBatchEntries: the most entries one `append` carries; a single commit
    ///   larger than this goes alone.
    public init(store: any Store, maxBatchEntries: Int = 4_096, metrics: ProcessMetrics = .off) {
        precondition(maxBatchEntries > 0)
        self.store = store
        batchEntries = metrics.histogram(.commitBatchEntries)
        commitErrors = metrics.counter(.storeCommitErrors)
        self.maxBatchEntries = maxBatchEntries
    }

    /// Makes `entries` (the next ones of `meeting`'s log, in order) durable.
    public func commit(_ meeting: MeetingID, _ entries: [LogEntry]) async throws(StoreError) {
        guard !entries.isEmpty else { return }
        let id = nextID
        nextID += 1
        if leading {
            let wake = await withCheckedContinuation { waiter in
                queue.append(Request(id: id, meeting: meeting, entries: entries, waiter: waiter))
            }
            if case .settled(let result) = wake { return try result.get() }
        } else {
            leading = true
            queue.append(Request(id: id, meeting: meeting, entries: entries, waiter: nil))
        }

        // Leader: flush batches from the head of the queue until our own request is settled.
        var mine: Result<Void, StoreError>?
        while mine == nil {
            let batch = takeBatch()
            for (request, result) in zip(batch, await flush(batch)) {
                if request.id == id {
                    mine = result
                } else {
                    request.waiter?.resume(returning: .settled(result))
                }
            }
        }
        if queue.isEmpty {
            leading = false
        } else {
            let next = queue[0].waiter
            queue[0].waiter = nil
            next?.resume(returning: .lead)
        }
        try mine?.get()
    }

    /// Commits waiting for a flush (for tests).
    var queuedCount: Int { queue.count }

    /// The oldest requests, up to `maxBatchEntries` entries (at least one request).
    private func takeBatch() -> [Request] {
        var count = 0
        var taken = 0
        for request in queue {
            if taken > 0 && count + request.entries.count > maxBatchEntries { break }
            count += request.entries.count
            taken += 1
        }
        defer { queue.removeFirst(taken) }
        return Array(queue.prefix(taken))
    }

    /// One result per request, in order.
    private func flush(_ requests: [Request]) async -> [Result<Void, StoreError>] {
        var results = [Result<Void, StoreError>?](repeating: nil, count: requests.count)
        var live = Array(requests.indices)
        while !live.isEmpty {
            var batch: [MeetingID: [LogEntry]] = [:]
            for index in live { batch[requests[index].meeting, default: []] += requests[index].entries }
            do throws(StoreError) {
                try await store.append(batch)
                batchEntries.record(batch.values.reduce(0) { $0 + $1.count })
                stats.batches += 1
                stats.commits += live.count
                for index in live {
                    stats.entries += requests[index].entries.count
                    results[index] = .success(())
                }
                live = []
            } catch {
                // A fenced append is a host that lost its meeting, not a store in trouble.
                if case .fenced = error {} else { commitErrors.increment() }
                // Retry the others without the meeting the error names, if there are others.
                let culprit = error.meeting.flatMap { batch.count > 1 && batch[$0] != nil ? $0 : nil }
                for index in live where culprit == nil || requests[index].meeting == culprit {
                    results[index] = .failure(error)
                }
                live.removeAll { results[$0] != nil }
            }
        }
        return results.map { $0! }
    }
}

extension StoreError {
    /// The one meeting this error is about, if it is about one.
    var meeting: MeetingID? {
        switch self {
        case .unknownMeeting(let id), .meetingExists(let id), .fenced(let id, _, _), .notContiguous(let id, _, _): id
        case .io, .misconfigured, .unavailable: nil
        }
    }
}
