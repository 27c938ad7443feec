import Foundation
import ParleyServer
import ParleyWeb
import Testing
import ParleyTestSupport

/// On a server with an API key, both the key and a join token travel as
/// `Authorization: Bearer`. Each opens only its own doors (protocol §3): the key creates
/// meetings and issues tokens; a join token uploads documents and fetches pages.
@Suite("API key and join tokens, on a server with an API key", MachineLoad.server)
struct APIKeyAuthorizationTests {
    static let apiKey = "k-test-0123456789"

    @Test("the API key creates meetings but uploads nothing; a join token uploads but creates nothing")
    func eachCredentialOpensItsOwnDoors() async throws {
        try await runTestServer(routes: WebZone.routes(settings: DocumentServer.settings()), apiKey: Self.apiKey) { base, _, _ in
            let client = DocumentClient(base: base)
            let json = ["Content-Type": "application/json"]

            let anonymous = try await client.send("POST", "/v1/meetings", headers: json, body: Array(#"{"title": "T"}"#.utf8))
            #expect(anonymous.status == 401)
            #expect(anonymous.error?.code == "unauthorized")
            let created = try await client.send("POST", "/v1/meetings", token: Self.apiKey, headers: json,
                                                body: Array(#"{"title": "T"}"#.utf8))
            #expect(created.status == 201)
            guard let object = try JSONSerialization.jsonObject(with: created.body) as? [String: Any],
                  let meeting = (object["meeting"] as? [String: Any])?["id"] as? String,
                  let joinToken = object["hostToken"] as? String else {
                throw TestFailure("create meeting: \(created.status)")
            }
            let documents = "/v1/meetings/\(meeting)/documents"

            // The key is not a join token: no upload with it.
            let withKey = try await client.send("POST", documents, token: Self.apiKey, headers: ["Content-Type": "application/pdf"],
                                                body: DocumentPDF.pages(1))
            #expect(withKey.status == 401)
            #expect(withKey.error?.code == "invalid_token")
            // The join token uploads, the key being set or not.
            let withToken = try await client.send("POST", documents, token: joinToken, headers: ["Content-Type": "application/pdf"],
                                                  body: DocumentPDF.pages(1))
            #expect(withToken.status == 201, "\(String(decoding: withToken.body, as: UTF8.self))")
            // And a join token is not the key: it issues no tokens.
            let issued = try await client.send("POST", "/v1/meetings/\(meeting)/tokens", token: joinToken, headers: json,
                                               body: Array(#"{"name": "Ari"}"#.utf8))
            #expect(issued.status == 401)
            #expect(issued.error?.code == "unauthorized")
        }
    }
}
