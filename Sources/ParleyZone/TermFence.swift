/// Which manager a server takes orders from, and when its link to that manager is over.
///
/// Pure: `ZoneAgent` (and the simulator's collab servers) feed it the terms orders carry and
/// the lease as the store has it, and act on its answers.
///
/// Terms only grow. A manager that lost the lease may not know yet, and go on sending orders
/// under its old term: a server that has seen a newer term ignores them. A link to a manager
/// cut off by a partition neither closes nor answers, so the lease in the store says who
/// leads: once it names another holder or term, or has lapsed, the link is over, whatever
/// the socket says.
public struct TermFence: Equatable, Sendable {
    /// The manager a link goes to, and the term it held when the link opened.
    public struct Link: Equatable, Sendable {
        public var manager: NodeName
        public var term: UInt64

        public init(manager: NodeName, term: UInt64) {
            self.manager = manager
            self.term = term
        }

        /// Whether the lease, as the store holds it now, ends this link.
        public func isOutlived(byLeaseOf holder: NodeName, term: UInt64, live: Bool) -> Bool {
            holder != manager || term != self.term || !live
        }
    }

    /// The newest manager term seen, from a link or an order.
    public private(set) var newestTerm: UInt64 = 0
    public private(set) var link: Link?

    public init() {}

    /// A link to `manager`, found through the lease it holds under `term`, is open.
    public mutating func linked(to manager: NodeName, term: UInt64) {
        link = Link(manager: manager, term: term)
        newestTerm = max(newestTerm, term)
    }

    public mutating func unlinked() { link = nil }

    /// Whether to carry out an order sent under `term`: not if a newer term has been seen.
    /// A newer term is remembered.
    public mutating func admits(orderOf term: UInt64) -> Bool {
        guard term >= newestTerm else { return false }
        newestTerm = term
        return true
    }
}
