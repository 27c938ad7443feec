@testable import ParleyServer
import Testing

@Suite("PollDelivery: each long-poll batch once, in order, whatever is retried")
struct PollDeliveryTests {
    @Test("a receive that repeats the client's count gets the last batch again; one past it gets new frames")
    func receivesAreAnsweredAgain() {
        var delivery = PollDelivery<String>()
        guard case .fresh = delivery.receive(after: 0) else { Issue.record("the first receive waits for frames"); return }
        delivery.sending(["welcome", "e1"])
        // The answer was lost and the request sent again: the same frames, the same number.
        guard case .resend(let again) = delivery.receive(after: 0) else { Issue.record("a repeated receive is answered again"); return }
        #expect(again == ["welcome", "e1"])
        #expect(delivery.sent == 1)
        guard case .fresh = delivery.receive(after: 1) else { Issue.record("a receive past the last batch waits for new frames"); return }
        delivery.sending(["e2"])
        // The kept batch is dropped once the client asks past it: a count two behind is refused.
        guard case .outOfStep(let expected) = delivery.receive(after: 0) else { Issue.record("two behind is out of step"); return }
        #expect(expected == 2)
        guard case .outOfStep = delivery.receive(after: 5) else { Issue.record("ahead is out of step"); return }
        // A client that does not count gets new frames each time (no guarantee).
        guard case .fresh = delivery.receive(after: nil) else { Issue.record("an uncounted receive waits for frames"); return }
    }

    @Test("a send numbered as one taken already is skipped; one that skips a number is refused")
    func sendsAreTakenOnce() {
        var delivery = PollDelivery<String>()
        #expect(delivery.send(batch: 1) == .take)
        #expect(delivery.send(batch: 1) == .duplicate)
        #expect(delivery.send(batch: 2) == .take)
        #expect(delivery.send(batch: 1) == .duplicate)
        #expect(delivery.send(batch: 4) == .outOfStep(expected: 3))
        #expect(delivery.send(batch: 3) == .take)
        #expect(delivery.send(batch: nil) == .take)
        #expect(delivery.taken == 3)
    }
}
