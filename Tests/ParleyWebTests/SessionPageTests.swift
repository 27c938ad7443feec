import Foundation
import Testing

@Suite("Listing and revoking one's sessions")
struct SessionPageTests {
    @Test("a user sees every browser signed in, marks this one, and signs the others out; nobody else's session can be ended")
    func listAndRevoke() async throws {
        try await WebServer.with { server in
            let laptop = Visitor(server)
            try await laptop.register("alice", name: "Alice")
            let phone = Visitor(server)
            _ = try await phone.signIn("alice", password: "correct horse")
            let bob = Visitor(server)
            try await bob.register("bob", name: "Bob")

            let page = try await laptop.get("/account/sessions")
            #expect(page.status == 200)
            #expect(page.body.components(separatedBy: "class=\"session\"").count - 1 == 2)
            #expect(page.body.components(separatedBy: "data-current=\"true\"").count - 1 == 1)
            #expect(try await phone.get("/center").status == 200)

            // Bob cannot end Alice's sessions, even knowing an id.
            let phonePage = try await phone.get("/account/sessions")
            let ids = phonePage.body.components(separatedBy: "name=\"session\" value=\"").dropFirst().map { String($0.prefix { $0 != "\"" }) }
            #expect(ids.count == 2)
            let bobForm = try await bob.get("/account/sessions")
            for id in ids { _ = try await bob.post("/account/sessions/revoke", [("_csrf", bobForm.csrf ?? ""), ("session", id)]) }
            #expect(try await phone.get("/center").status == 200, "Bob ended none of Alice's sessions")
            // Without the CSRF token nothing happens.
            #expect(try await laptop.post("/account/sessions/revoke-others", []).status == 403)
            #expect(try await phone.get("/center").status == 200)

            let ended = try await laptop.post("/account/sessions/revoke-others", [("_csrf", page.csrf ?? "")])
            #expect(ended.location == "/account/sessions?ended=1")
            let signedOut = try await phone.get("/center")
            #expect(signedOut.status == 303 || signedOut.status == 302)
            #expect(signedOut.location?.hasPrefix("/signin") == true, "the phone was signed out")
            #expect(try await laptop.get("/center").status == 200, "this browser kept its session")
            #expect(try await bob.get("/center").status == 200, "Bob's session is untouched")
        }
    }
}
