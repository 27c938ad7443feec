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
