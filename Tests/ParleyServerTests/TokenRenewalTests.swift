import Foundation
import ParleyClient
@testable import ParleyServer
import Synchronization
import Testing
import ParleyTestSupport

/// `POST /v1/tokens/renew` and the authority behind it: whoever holds a genuine token,
/// valid or lately expired, gets a fresh one for the same participant; nobody else does.
@Suite("Token renewal", MachineLoad.server)
struct TokenRenewalTests {
    @Test("an expired token is renewed within the grace period, for the same participant, and refused after it")
    func renewExpired() async throws {
        let directory = try TemporaryDirectory()
        // The authority's clock is the test's: time moves without waiting.
        let now = Mutex<Millis>(1_800_000_000_000)
        let authority = try await TokenAuthority(signingIn: directory.path, lifetimeSeconds: 60, clock: { now.withLock { $0 } })
        let token = try await authority.issue(meeting: "m-1", participant: "p-ada", name: "Ada", role: .host)
        #expect(try await authority.verify(token).participant == "p-ada")
        now.withLock { $0 += 61_000 }
        do {
            _ = try await authority.verify(token)
            Issue.record("a token past its lifetime was accepted")
        } catch {
            #expect(error.code == .tokenExpired)
        }
        let (fresh, claims) = try await authority.renew(token, graceSeconds: 60)
        #expect(try await authority.verify(fresh).participant == "p-ada", "the renewed token is valid now")
        #expect(claims.participant == "p-ada")
        #expect(claims.name == "Ada")
        #expect(claims.role == .host)
        #expect(claims.meeting == "m-1")
        #expect(fresh != token)
        do {
            _ = try await authority.renew(token, graceSeconds: 0)
            Issue.record("renewed a token expired beyond the grace period")
        } catch {
            #expect(error.code == .tokenExpired)
        }
        // Signed by another key: not genuine, whatever it says.
        let other = try TemporaryDirectory()
        let forged = try await TokenAuthority(signingIn: other.path, lifetimeSeconds: 60)
            .issue(meeting: "m-1", participant: "p-ada", name: "Ada", role: .host)
        do {
            _ = try await authority.renew(forged, graceSeconds: 60)
            Issue.record("renewed a token signed by another key")
        } catch {
            #expect(error.code == .invalidToken)
        }
    }

    @Test("over HTTP: the renewed token joins as the same participant; a bad or missing token gets 401 invalid_token")
    func renewOverHTTP() async throws {
        try await withServer { endpoint in
            let server = URL(string: endpoint.base)!
            let created = try await ParleyHTTP.createMeeting(server: server, title: "Renew")
            let renewed = try await ParleyHTTP.renewToken(server: server, token: created.hostToken)
            #expect(renewed.participant == created.participant)
            let client = try MeetingClient(server: server, token: renewed.token)
            try await client.connect()
            #expect(await client.participantID == created.participant)
            // The welcome may come just before this participant's own join event.
            let deadline = ContinuousClock.now + .seconds(5)
            while await client.meeting?.participant(created.participant) == nil, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(await client.meeting?.participant(created.participant)?.role == .host)
            await client.leave()

            await #expect(throws: ParleyError.http(HTTPFailure(status: 401, code: .invalidToken,
                                                               message: "the join token is not valid"))) {
                _ = try await ParleyHTTP.renewToken(server: server, token: "not.a.token")
            }
            let (body, status) = try await endpoint.http("POST", "/v1/tokens/renew")
            #expect(status == 401)
            #expect(String(decoding: body, as: UTF8.self).contains("\"invalid_token\""))
        }
    }
}
