/// The manager lease as stored: who leads, where to reach it, under which term, until when.
///
/// The store changes it only by compare-and-set on `term` and `holder`, so two managers can
/// never both believe a claim succeeded.
public struct ManagerLease: Codable, Equatable, Sendable {
    public var holder: NodeName
    /// The zone URL of the leading manager; agents connect here.
    public var address: String
    /// Grows by one with every change of leader. Servers ignore orders from older terms.
    public var term: UInt64
    /// On the observing manager's own monotonic clock (when it read the lease, plus what the
    /// store said remained); the lease is free after this. Never compared across processes.
    public var expiresAtMs: Int64

    public init(holder: NodeName, address: String, term: UInt64, expiresAtMs: Int64) {
        self.holder = holder
        self.address = address
        self.term = term
        self.expiresAtMs = expiresAtMs
    }
}

/// One manager's side of the election: standby managers watch the lease and take it when
/// it lapses; the leader renews it, and stops leading as soon as it cannot be sure it still
/// holds it.
///
/// Pure: the adapter reads and writes the lease in the store and feeds the results back,
/// with the time, as inputs.
public struct ManagerElection: Sendable {
    public enum Action: Equatable, Sendable {
        /// Read the lease and report it with ``observed(_:nowMs:)``.
        case read
        /// Compare-and-set: write `new` only if the stored lease is still `expected`
        /// (nil: no lease stored yet). Report with ``claimed(_:nowMs:)``.
        case claim(expected: ManagerLease?, new: ManagerLease)
        /// This manager now leads under `term`: rebuild the view from the servers and the store.
        case lead(term: UInt64)
        /// Stop leading at once: another manager may lead now.
        case stepDown(reason: StepDownReason)
    }

    public struct Timing: Equatable, Sendable {
        /// How long a claim or renewal holds the lease.
        public var leaseMs: Int64
        /// The leader renews this often; standbys read the lease this often.
        public var pollMs: Int64
        /// The leader stops acting this long before its lease would lapse without renewal,
        /// so that it has stepped down before any standby can take over.
        public var safetyMs: Int64

        public init(leaseMs: Int64 = 1_000, pollMs: Int64 = 200, safetyMs: Int64 = 200) {
            precondition(pollMs > 0 && safetyMs >= 0 && leaseMs > pollMs + safetyMs)
            self.leaseMs = leaseMs
            self.pollMs = pollMs
            self.safetyMs = safetyMs
        }
    }

    public enum Role: Equatable, Sendable {
        case standby
        /// Holding the lease, sure of it until `validUntilMs`.
        case leader(term: UInt64, validUntilMs: Int64)
    }

    public let me: NodeName
    public let address: String
    public let timing: Timing
    public private(set) var role: Role = .standby
    /// The last lease seen in the store (or written by us).
    public private(set) var lease: ManagerLease?
    private var lastPollMs: Int64?
    private var inFlight = false
    /// When the claim now in flight was sent: a won lease is trusted from then, not from
    /// when the answer arrived.
    private var claimSentMs: Int64 = 0

    public init(me: NodeName, address: String, timing: Timing = Timing()) {
        self.me = me
        self.address = address
        self.timing = timing
    }

    public var isLeader: Bool { if case .leader = role { true } else { false } }

    /// Time passes. Polls or renews when due, and steps down when certainty has run out.
    public mutating func tick(nowMs: Int64) -> [Action] {
        var actions: [Action] = []
        if case .leader(_, let validUntil) = role, nowMs >= validUntil {
            role = .standby
            actions.append(.stepDown(reason: .renewalOverdue))
        }
        guard !inFlight, lastPollMs.map({ nowMs - $0 >= timing.pollMs }) ?? true else { return actions }
        lastPollMs = nowMs
        inFlight = true
        if case .leader(let term, _) = role, let lease {
            claimSentMs = nowMs
            return actions + [.claim(expected: lease, new: ManagerLease(holder: me, address: address, term: term,
                                                                     expiresAtMs: nowMs + timing.leaseMs))]
        }
        return actions + [.read]
    }

    /// The lease as read from the store (nil: none yet).
    public mutating func observed(_ stored: ManagerLease?, nowMs: Int64) -> [Action] {
        inFlight = false
        lease = stored
        var actions: [Action] = []
        if case .leader(let term, _) = role, stored?.holder != me || stored?.term != term {
            role = .standby
            actions.append(.stepDown(reason: .leaseHeldElsewhere(stored)))
        }
        guard !isLeader else { return actions }
        if let stored, stored.expiresAtMs >= nowMs, stored.holder != me { return actions }
        // Free (none, lapsed, or ours from before a restart): claim it under a new term.
        inFlight = true
        claimSentMs = nowMs
        let term = (stored?.term ?? 0) + 1
        return actions + [.claim(expected: stored, new: ManagerLease(holder: me, address: address, term: term,
                                                                   expiresAtMs: nowMs + timing.leaseMs))]
    }

    /// The outcome of a claim: `won` is the lease we wrote, nil if the store refused it
    /// (someone else changed the lease first).
    public mutating func claimed(_ won: ManagerLease?, nowMs: Int64) -> [Action] {
        inFlight = false
        guard let won else {
            lastPollMs = nil  // read at once to learn who holds it
            if isLeader {
                role = .standby
                return [.stepDown(reason: .renewalRefused)]
            }
            return []
        }
        lease = won
        let validUntil = claimSentMs + timing.leaseMs - timing.safetyMs
        guard nowMs < validUntil else {
            if isLeader {
                role = .standby
                return [.stepDown(reason: .renewalTooSlow)]
            }
            return []
        }
        if case .leader(let term, _) = role, term == won.term {
            role = .leader(term: term, validUntilMs: validUntil)
            return []
        }
        role = .leader(term: won.term, validUntilMs: validUntil)
        return [.lead(term: won.term)]
    }
}
