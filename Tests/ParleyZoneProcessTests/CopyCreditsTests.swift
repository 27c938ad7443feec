@testable import ParleyNode
import ParleyCore
import ParleyZone
import Synchronization
import Testing

/// A meeting's flow-control window on a shared replication link, on its own.
@Suite("CopyCredits: one meeting's window on a shared replication link")
struct CopyCreditsTests {
    final class Sent: Sendable {
        let messages = Mutex<[ZoneMessage]>([])
        func add(_ message: ZoneMessage) { messages.withLock { $0.append(message) } }
        var count: Int { messages.withLock { $0.count } }
    }

    @Test("at most the window goes out before the copy grants more; a grant lets exactly that many more go")
    func window() async throws {
        let credits = CopyCredits(window: 2)
        let sent = Sent()
        for seq in 1...2 {
            #expect(await credits.send(.reload(meeting: MeetingID("m-\(seq)")), with: sent.add))
        }
        // The third waits for a credit.
        let third = Task { await credits.send(.reload(meeting: "m-3"), with: sent.add) }
        try await Task.sleep(for: .milliseconds(50))
        #expect(sent.count == 2, "sent past the window")
        credits.grant(1)
        #expect(await third.value)
        #expect(sent.count == 3)
    }

    @Test("once closed nothing more goes out, and a sender waiting for a credit gives up")
    func closing() async throws {
        let credits = CopyCredits(window: 1)
        let sent = Sent()
        #expect(await credits.send(.reload(meeting: "m-1"), with: sent.add))
        let waiting = Task { await credits.send(.reload(meeting: "m-2"), with: sent.add) }
        try await Task.sleep(for: .milliseconds(50))
        credits.close()
        #expect(await waiting.value == false)
        credits.grant(5)
        #expect(await credits.send(.reload(meeting: "m-3"), with: sent.add) == false)
        #expect(sent.count == 1)
    }
}
