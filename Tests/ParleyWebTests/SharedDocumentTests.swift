import Foundation
import ParleyServer
import ParleyStore
import ParleyTestSupport
@testable import ParleyWeb
import ParleyZone
import Testing

/// In a cluster the database is shared, and so are documents: a document uploaded through one
/// machine's web front is served by every other, and none is kept only on the machine that
/// took the upload (losing it loses nothing).
@Suite("Documents in a shared PostgreSQL store", MachineLoad.server, .serialized, .timeLimit(.minutes(2)))
struct SharedDocumentTests {
    /// Two web fronts on one fresh database, as on two machines: the second has the cluster's
    /// token keys (`parley cluster init` copies them). `body` gets a client of each and their
    /// data directories.
    static func withTwoFronts(_ settings: WebSettings = DocumentServer.settings(),
                              _ body: @Sendable (DocumentClient, DocumentClient, [String]) async throws -> Void) async throws {
        let url = try await TestPostgres.shared.freshDatabase()
        guard case .postgres(let parsed) = try StoreLocation(url: url) else { preconditionFailure() }
        let first = try DocumentTemporaryDirectory(), second = try DocumentTemporaryDirectory()
        defer { first.remove(); second.remove() }
        let routes = WebZone.routes(settings: settings)
        try await runTestServer(routes: routes, data: first.path, store: .postgres(parsed)) { base, _, _ in
            try FileManager.default.copyItem(atPath: first.path + "/keys", toPath: second.path + "/keys")
            try await runTestServer(routes: routes, data: second.path, store: .postgres(parsed)) { otherBase, _, _ in
                try await body(DocumentClient(base: base), DocumentClient(base: otherBase), [first.path, second.path])
            }
        }
    }

    @Test("a PDF uploaded through one web front is served, page for page, by another on the same database; neither keeps it on disk")
    func servedByAnotherFront() async throws {
        try await Self.withTwoFronts { one, two, directories in
            let meeting = try await one.createMeeting()
            let response = try await one.upload(DocumentPDF.pages(2), to: meeting, title: "Shared.pdf")
            #expect(response.status == 201, "\(response.text)")
            let uploaded = try JSONDecoder().decode(UploadedDocument.self, from: response.body)
            #expect(uploaded.pages.count == 2)
            for page in uploaded.pages {
                let here = try await one.page(page, of: meeting), there = try await two.page(page, of: meeting)
                #expect(here.status == 200 && there.status == 200)
                #expect(there.header("Content-Type") == "image/png")
                #expect(there.header("ETag") == "\"\(page)\"")
                #expect(!there.body.isEmpty && there.body == here.body)
            }
            // Another meeting's token reaches none of them, on either front.
            let other = try await two.createMeeting("Another")
            for client in [one, two] {
                let refused = try await client.send("GET", "/v1/meetings/\(other.id)/pages/\(uploaded.pages[0])", token: other.hostToken)
                #expect(refused.status == 404 && refused.error?.code == "unknown_page")
            }
            for data in directories {
                let kept = documentFiles(under: data + "/documents").filter { !$0.hasPrefix(".incoming") }
                #expect(kept.isEmpty, "documents kept on this machine's disk: \(kept)")
            }
        }
    }

    @Test("on a shared database a meeting's quota counts what the database holds, whichever front took the upload, and a deletion through one front frees it for all")
    func quotaAndDeletionAcrossFronts() async throws {
        var settings = DocumentServer.settings()
        settings.meetingDocumentBytes = 1 << 20
        let big = DocumentImages.png + Array(repeating: 0, count: 600 << 10)
        try await Self.withTwoFronts(settings) { one, two, _ in
            let meeting = try await one.createMeeting()
            let stored = try await one.upload(big, to: meeting, contentType: "image/png")
            #expect(stored.status == 201, "\(stored.text)")
            let uploaded = try JSONDecoder().decode(UploadedDocument.self, from: stored.body)
            let refused = try await two.upload(big, to: meeting, contentType: "image/png")
            #expect(refused.status == 413 && refused.error?.code == "meeting_quota_exceeded", "\(refused.text)")

            let path = "/v1/meetings/\(meeting.id)/documents/\(uploaded.document)"
            #expect(try await two.send("DELETE", path, token: meeting.hostToken).status == 204)
            #expect(try await one.page(uploaded.pages[0], of: meeting).error?.code == "unknown_page", "gone on the other front too")
            let again = try await one.send("DELETE", path, token: meeting.hostToken)
            #expect(again.status == 404 && again.error?.code == "unknown_document")
            #expect(try await two.upload(big, to: meeting, contentType: "image/png").status == 201, "the quota is free again")
        }
    }
}
