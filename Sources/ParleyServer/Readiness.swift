import ParleyCore
import ParleyStore

/// Whether a process can do its job now (`GET /ready`), as opposed to being alive
/// (`GET /health`): its store answers, and whatever its role needs (a zone link, a manager).
public enum Readiness {
    /// How long the store may take to answer the probe before it counts as unreachable.
    public static let storeTimeout: Duration = .seconds(2)

    /// Why the store cannot be used now, or nil when it answers.
    public static func storeProblem(_ store: any Store) async -> String? {
        await withTaskGroup(of: String??.self) { group in
            group.addTask {
                do {
                    // Any answer will do, "no such meeting" included: the store was reached.
                    _ = try await store.meeting(MeetingID("m-readiness-probe"))
                    return .some(nil)
                } catch {
                    return .some("the store is unreachable: \(error)")
                }
            }
            group.addTask {
                try? await Task.sleep(for: storeTimeout)
                return Task.isCancelled ? nil : .some("the store did not answer within \(storeTimeout)")
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? "the readiness probe was cancelled"
        }
    }
}

/// The body of `GET /ready`: `{"status": "ready"}`, or `{"status": "not_ready", "reasons": [...]}`.
public struct ReadyAnswer: Codable, Equatable, Sendable {
    public var status: String
    public var reasons: [String]?

    public init(_ problems: [String]) {
        status = problems.isEmpty ? "ready" : "not_ready"
        reasons = problems.isEmpty ? nil : problems
    }
}
