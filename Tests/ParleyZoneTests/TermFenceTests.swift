import ParleyZone
import Testing

@Suite("TermFence: which manager's orders a server carries out")
struct TermFenceTests {
    @Test("an order from a term older than one seen is ignored; a newer term is remembered")
    func ordersByTerm() {
        var fence = TermFence()
        fence.linked(to: "manager-1", term: 3)
        // Orders under terms 3, 2, 5 and 4, in that order: the deposed manager's 2 and the 4
        // that came after a 5 are ignored.
        let carriedOut = [3, 2, 5, 4].map { fence.admits(orderOf: UInt64($0)) }
        #expect(carriedOut == [true, false, true, false])
        #expect(fence.newestTerm == 5)
        // A link to a manager found under an older lease does not lower the term.
        fence.unlinked()
        fence.linked(to: "manager-2", term: 4)
        let afterRelink = fence.admits(orderOf: 4)
        #expect(fence.newestTerm == 5 && !afterRelink)
        #expect(fence.link == TermFence.Link(manager: "manager-2", term: 4))
    }

    @Test("a link is over once the lease names another holder or term, or has lapsed")
    func linkOutlivedByLease() {
        let link = TermFence.Link(manager: "manager-1", term: 3)
        #expect(!link.isOutlived(byLeaseOf: "manager-1", term: 3, live: true))
        #expect(link.isOutlived(byLeaseOf: "manager-2", term: 4, live: true))
        #expect(link.isOutlived(byLeaseOf: "manager-1", term: 4, live: true), "the same manager, leading again after losing the lease")
        #expect(link.isOutlived(byLeaseOf: "manager-1", term: 3, live: false))
    }
}
