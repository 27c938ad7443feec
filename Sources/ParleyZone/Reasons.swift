import ParleyCore

/// Why a manager stopped leading. Logged, and passed on to everyone who waited on it.
public enum StepDownReason: Equatable, Sendable, CustomStringConvertible {
    /// No renewal succeeded before its certainty of holding the lease ran out.
    case renewalOverdue
    /// The store's lease names another holder or term (nil: there is none).
    case leaseHeldElsewhere(ManagerLease?)
    /// A renewal's compare-and-set found the lease changed by another manager.
    case renewalRefused
    /// A renewal succeeded, but too late to be relied on.
    case renewalTooSlow
    /// A renewal was still unanswered when the lease could have lapsed.
    case storeSilent
    /// The server that takes zone links failed; the process exits and is restarted.
    case zoneLinkServerFailed(String)
    case shuttingDown

    public var description: String {
        switch self {
        case .renewalOverdue: "could not renew the manager lease in time"
        case .leaseHeldElsewhere(let lease): "the lease is held by \(lease.map { "\($0.holder) (term \($0.term))" } ?? "nobody")"
        case .renewalRefused: "renewing the manager lease failed: another manager changed it"
        case .renewalTooSlow: "renewing the manager lease took too long"
        case .storeSilent: "the store did not answer the lease renewal before the lease could lapse"
        case .zoneLinkServerFailed(let error): "the zone-link server failed: \(error)"
        case .shuttingDown: "shutting down"
        }
    }
}

/// Why the manager counts a collab server as gone, and moves what it held.
public enum ServerLoss: Equatable, Sendable, CustomStringConvertible {
    /// Its zone link closed or failed, as the link tells it.
    case linkClosed(String)
    /// It registered on a new link: whatever the old one said, the old one is over.
    case registeredAgain
    /// Nothing was heard from it for longer than the heartbeat timeout.
    case silent(forMs: Int64)

    public var description: String {
        switch self {
        case .linkClosed(let why): why
        case .registeredAgain: "registered again"
        case .silent(let ms): "no heartbeat for \(ms) ms"
        }
    }
}

/// Why a locate found no server for the meeting now. The client retries shortly.
public enum Unavailability: Equatable, Sendable, CustomStringConvertible {
    /// No server confirmed hosting it within the locate timeout (a move under way, no room).
    case noHostYet(MeetingID)
    /// The manager that was asked stopped leading before it could answer.
    case managerSteppedDown(StepDownReason)

    public var description: String {
        switch self {
        case .noHostYet(let meeting): "meeting \(meeting) has no host yet; retry shortly"
        case .managerSteppedDown(let reason): "the zone's manager stepped down (\(reason)); retry shortly"
        }
    }
}
