import ParleyCore

/// How a standby copy keeps up with its host: load the copy from the store, subscribe to the
/// host's committed stream after the copy's last seq, and when that stream ends, subscribe
/// again from where the copy is, or rebuild the copy from the store when it cannot go on
/// (the host asked for it, or a batch did not follow on).
///
/// Pure: `CollabRole` (and the simulator's collab servers) carry out its actions and report
/// what came of them. One follower per follow order; a newer order, a release or a promotion
/// ends it from outside.
public struct StandbyFollower: Equatable, Sendable {
    public enum Action: Equatable, Sendable {
        /// Rebuild the copy from the store; report ``loaded(through:)`` or ``loadFailed()``.
        case load
        /// Subscribe to the host's committed stream after `seq`. Report each batch the copy
        /// took with ``applied(through:)``, a batch it could not take with ``notApplied()``,
        /// the host's request to rebuild with ``reloadAsked()``, and the end with ``linkEnded()``.
        case subscribe(after: Seq)
        /// End the subscription's link: what still comes on it is not for this copy.
        case closeLink
        /// Wait, then report ``retryDue(copyHeld:)``.
        case wait(ms: Int64)
    }

    public enum Phase: Equatable, Sendable {
        case loading
        case subscribed
        case waiting
    }

    /// Between one attempt and the next: a host that is gone answers at once.
    public static let retryMs: Int64 = 100

    public private(set) var phase: Phase = .loading
    /// The last seq the copy is known to hold; nil while it must be rebuilt from the store.
    public private(set) var held: Seq?

    public init() {}

    public func start() -> [Action] { [.load] }

    /// Starts with a copy that holds everything through `seq` already (opened for a client,
    /// or kept when its role changed): subscribe without loading it again.
    public mutating func holding(_ seq: Seq) -> [Action] {
        guard phase == .loading, held == nil else { return [] }
        return loaded(through: seq)
    }

    public mutating func loaded(through seq: Seq) -> [Action] {
        guard phase == .loading else { return [] }
        held = seq
        phase = .subscribed
        return [.subscribe(after: seq)]
    }

    public mutating func loadFailed() -> [Action] {
        guard phase == .loading else { return [] }
        phase = .waiting
        return [.wait(ms: Self.retryMs)]
    }

    public mutating func applied(through seq: Seq) {
        if phase == .subscribed { held = seq }
    }

    /// A batch did not follow on from the copy (a gap), or the copy was dropped: rebuild it.
    public mutating func notApplied() -> [Action] { rebuild() }

    /// The host cannot serve this copy (it no longer hosts the meeting, or the copy is behind
    /// what it keeps): rebuild it.
    public mutating func reloadAsked() -> [Action] { rebuild() }

    public mutating func linkEnded() -> [Action] {
        guard phase == .subscribed else { return [] }
        phase = .waiting
        return [.wait(ms: Self.retryMs)]
    }

    /// `copyHeld`: whether the copy is still there (nothing dropped it meanwhile).
    public mutating func retryDue(copyHeld: Bool) -> [Action] {
        guard phase == .waiting else { return [] }
        if copyHeld, let held {
            phase = .subscribed
            return [.subscribe(after: held)]
        }
        held = nil
        phase = .loading
        return [.load]
    }

    private mutating func rebuild() -> [Action] {
        guard phase == .subscribed else { return [] }
        held = nil
        phase = .waiting
        return [.closeLink, .wait(ms: Self.retryMs)]
    }
}
