import ParleyCore
import ParleyZone
import Testing

@Suite("LicenseBook: the zone's participant limit")
struct LicenseBookTests {
    let m1 = MeetingID("m-1")
    let m2 = MeetingID("m-2")

    @Test("admits up to the limit across meetings, refuses beyond it, and a seat frees up on leave")
    func limit() {
        var book = LicenseBook(zoneLimit: 2)
        #expect(book.admit(m1, "a") == .admit)
        #expect(book.admit(m2, "b") == .admit)
        guard case .refuse(let why) = book.admit(m2, "c") else {
            Issue.record("a third participant was admitted to a zone licensed for two")
            return
        }
        #expect(why.contains("2 participants"))
        // Someone already seated is always admitted again (a rejoin after a failover).
        #expect(book.admit(m1, "a") == .admit)
        book.record(Attendance(meeting: m2, participant: "b", name: "B", event: .left, server: "collab-1", at: 5))
        #expect(book.admit(m2, "c") == .admit)
        #expect(book.present.count == 2)
    }

    @Test("a restarted service rebuilds who is present from the attendance log")
    func replay() {
        let log = [
            Attendance(meeting: m1, participant: "a", name: "A", event: .joined, server: "collab-1", at: 1),
            Attendance(meeting: m1, participant: "b", name: "B", event: .joined, server: "collab-1", at: 2),
            Attendance(meeting: m1, participant: "a", name: "A", event: .left, server: "collab-2", at: 3),
            Attendance(meeting: m2, participant: "c", name: "C", event: .joined, server: "collab-2", at: 4),
        ]
        var book = LicenseBook(zoneLimit: 3, replaying: log)
        #expect(book.present == [.init(meeting: m1, participant: "b"), .init(meeting: m2, participant: "c")])
        #expect(book.admit(m2, "d") == .admit)
        #expect(book.admit(m2, "e") != .admit)
    }
}
