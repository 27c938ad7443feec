/// The numbering that makes a long-poll session deliver each batch once, in order, both
/// ways. HTTP requests are retried behind the client's back: libcurl (URLSession on Linux)
/// and browsers resend a request whose reused connection died before any answer came, and
/// a proxy may resend one its upstream dropped. Without numbers, a receive answered on a
/// connection that then died loses its frames to the retry (the client sees a gap), and a
/// retried send hands the server its frames twice.
///
/// So a receive names how many batches the client has read (`after`): the server keeps the
/// last batch it sent until a receive asks past it, and sends it again to a receive that
/// shows it never arrived. A send names its number (`batch`, from 1): one the server has
/// taken already is answered and skipped. Requests without numbers (an older client, curl
/// by hand) get neither guarantee, as before.
///
/// Pure: the ``PollSessions`` actor and the simulator run the same rules.
public struct PollDelivery<Frame> {
    /// Batches sent down so far; the last one is `kept`.
    public private(set) var sent: UInt64 = 0
    private var kept: [Frame] = []
    /// Batches taken up so far.
    public private(set) var taken: UInt64 = 0

    public init() {}

    public enum Receive {
        /// The client never got the last batch: send it again.
        case resend([Frame])
        /// Wait for new frames, then hand them to ``sending(_:)``.
        case fresh
        /// The client's count is neither the last batch nor the one before: it missed more
        /// than a retry explains, so the session cannot go on.
        case outOfStep(expected: UInt64)
    }

    /// A receive that has read `after` batches (nil: it does not count).
    public mutating func receive(after: UInt64?) -> Receive {
        switch after {
        case nil, sent?:
            kept = []
            return .fresh
        case (sent &- 1)? where sent > 0:
            return .resend(kept)
        default:
            return .outOfStep(expected: sent)
        }
    }

    /// The frames a ``Receive/fresh`` receive answers with: batch `sent + 1`, kept until
    /// the client asks past it.
    public mutating func sending(_ frames: [Frame]) {
        sent += 1
        kept = frames
    }

    public enum Send: Equatable {
        /// Handle its frames.
        case take
        /// Already taken: answer as before, handle nothing.
        case duplicate
        /// A batch in between never came: the client cannot have had an answer for it.
        case outOfStep(expected: UInt64)
    }

    /// A send numbered `batch` (nil: it does not count).
    public mutating func send(batch: UInt64?) -> Send {
        guard let batch else { return .take }
        if batch <= taken { return .duplicate }
        guard batch == taken + 1 else { return .outOfStep(expected: taken + 1) }
        taken = batch
        return .take
    }
}
