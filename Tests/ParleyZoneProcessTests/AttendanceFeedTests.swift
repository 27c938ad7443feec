import ParleyCore
import ParleyNode
import Synchronization
import Testing

@Suite("Attendance feed: a join's admission waits for the leaves committed before it", .timeLimit(.minutes(1)))
struct AttendanceFeedTests {
    static func record(_ n: Int, _ event: Attendance.Event) -> Attendance {
        Attendance(meeting: MeetingID("m"), participant: ParticipantID("p\(n)"), name: "P\(n)", event: event, server: "collab-1", at: Millis(n))
    }

    @Test("an admission asked after a leave is committed goes out only once the leave is on the link")
    func admissionWaitsForEarlierLeaves() async throws {
        let feed = AttendanceFeed()
        let sent = Mutex<[String]>([])
        feed.committed(Self.record(1, .joined))
        feed.committed(Self.record(1, .left))
        // The join's admission, asked now, must go out after both records.
        async let admission: Void = {
            await feed.handedOver(before: .seconds(30))
            sent.withLock { $0.append("admit") }
        }()
        var iterator = feed.records.makeAsyncIterator()
        for _ in 0..<2 {
            let record = try #require(await iterator.next())
            sent.withLock { $0.append("\(record.participant) \(record.event.rawValue)") }
            // The admission must still be waiting while a record is outstanding.
            #expect(!sent.withLock { $0.contains("admit") })
            feed.handedOver()
        }
        await admission
        #expect(sent.withLock { $0 } == ["p1 joined", "p1 left", "admit"])
    }

    @Test("with every record on the link, an admission goes out at once")
    func nothingOutstanding() async {
        let feed = AttendanceFeed()
        feed.committed(Self.record(1, .left))
        feed.handedOver()
        let started = ContinuousClock.now
        await feed.handedOver(before: .seconds(30))
        #expect(ContinuousClock.now - started < .seconds(10))
    }

    @Test("with nobody forwarding, an admission goes out after its timeout rather than never")
    func timeoutBoundsTheWait() async {
        let feed = AttendanceFeed()
        feed.committed(Self.record(1, .left))
        let started = ContinuousClock.now
        await feed.handedOver(before: .milliseconds(200))
        #expect(ContinuousClock.now - started >= .milliseconds(200))
        // A hand-over after the timeout finds no parked wait to resume.
        feed.handedOver()
    }

    @Test("a full feed drops the record it cannot hold and counts it, so no admission waits for it")
    func fullFeedDrops() async {
        let feed = AttendanceFeed(capacity: 1)
        #expect(feed.committed(Self.record(1, .joined)))
        #expect(!feed.committed(Self.record(2, .joined)))
        var iterator = feed.records.makeAsyncIterator()
        #expect(await iterator.next()?.participant == ParticipantID("p1"))
        feed.handedOver()
        let started = ContinuousClock.now
        await feed.handedOver(before: .seconds(30))
        #expect(ContinuousClock.now - started < .seconds(10))
    }
}
