import Foundation
@testable import ParleyClient
import ParleyCore
import Testing

@Suite("The SDK reads a token's meeting, to ask the locator")
struct TokenMeetingTests {
    @Test("the mtg claim of a JWT payload, base64url without padding; nothing from anything else")
    func meetingClaim() {
        // Payload {"sub":"p-1","mtg":"m-7f3k9q>?","exp":1} — '>?' makes base64url use '-'/'_' characters.
        let payload = "eyJzdWIiOiJwLTEiLCJtdGciOiJtLTdmM2s5cT4_IiwiZXhwIjoxfQ"
        #expect(ParleyHTTP.meeting(inToken: "eyJhbGciOiJFZERTQSJ9.\(payload).c2ln") == MeetingID("m-7f3k9q>?"))
        #expect(ParleyHTTP.meeting(inToken: "not-a-jwt") == nil)
        #expect(ParleyHTTP.meeting(inToken: "a.e30.c") == nil, "a payload without mtg")
        #expect(ParleyHTTP.meeting(inToken: "a.!!!.c") == nil)
    }
}

@Suite("Which web front a client asks")
struct FrontRotationTests {
    @Test("the front that answered last is asked again; after an attempt without an answer, the next one, in turn")
    func rotation() {
        let fronts = FrontRotation(count: 3)
        #expect(fronts.next() == 0)
        fronts.answered(0)
        #expect(fronts.next() == 0)
        fronts.answered(0)
        // Front 0's machine is lost: its attempt gets no answer, and neither does front 1's.
        #expect(fronts.next() == 0)
        #expect(fronts.next() == 1)
        #expect(fronts.next() == 2)
        fronts.answered(2)
        #expect(fronts.next() == 2)
        // And round again past the end.
        #expect(fronts.next() == 0)
    }

    @Test("ranked by round trip, the fastest front is asked first, then the next; fronts that did not answer come last, in the order given")
    func ranking() {
        #expect(FrontRotation.order([.milliseconds(80), nil, .milliseconds(12), .milliseconds(40), nil]) == [2, 3, 0, 1, 4])
        #expect(FrontRotation.order([.milliseconds(5), .milliseconds(5)]) == [0, 1], "a tie keeps the order given")
        let fronts = FrontRotation(count: 3)
        #expect(fronts.claimRanking())
        #expect(!fronts.claimRanking(), "one caller probes")
        fronts.rank(byRoundTrip: [.milliseconds(90), .milliseconds(10), nil])
        #expect(fronts.next() == 1)
        fronts.answered(1)
        #expect(fronts.next() == 1)
        // The nearest is lost: then the next nearest, then the one that never answered.
        #expect(fronts.next() == 0)
        #expect(!fronts.claimRanking())
        #expect(fronts.next() == 2)
        // Every front has now gone unanswered in turn: time to probe again.
        #expect(fronts.next() == 1)
        #expect(fronts.claimRanking())
    }

    @Test("the guide's example: a client given three fronts is made, its own front first")
    func guideExample() async throws {
        let token = "not.checked.here"
        var options = MeetingClient.Options()
        options.otherServers = [URL(string: "https://m2.parley.example")!, URL(string: "https://m3.parley.example")!]
        let client = try MeetingClient(server: URL(string: "https://m1.parley.example")!, token: token, options: options)
        #expect(await client.server.host == "m1.parley.example")
    }

    @Test("every other server must be a usable URL, or the options are refused")
    func otherServersChecked() {
        var options = MeetingClient.Options()
        options.otherServers = [URL(string: "ftp://example.com")!]
        #expect(throws: ParleyError.self) { try options.validate() }
        options.otherServers = [URL(string: "http://127.0.0.2:8080")!]
        #expect(throws: Never.self) { try options.validate() }
    }
}
