import Foundation
import ParleyServer
import ParleyStore
import ParleyTestSupport
@testable import ParleyWeb
import Testing

/// In a cluster the database is shared, and so are documents: a document uploaded through one
/// machine's web front is served by every other, and none is kept only on the machine that
/// took the upload (losing it loses nothing).
@Suite("Documents in a shared PostgreSQL store", MachineLoad.server, .serialized, .timeLimit(.minutes(2)))
struct SharedDocumentTests {
    @Test("a PDF uploaded through one web front is served, page for page, by another on the same database; neither keeps it on disk")
    func servedByAnotherFront() async throws {
        let url = try await TestPostgres.shared.freshDatabase()
        guard case .postgres(let parsed) = try StoreLocation(url: url) else { preconditionFailure() }
        let first = try DocumentTemporaryDirectory(), second = try DocumentTemporaryDirectory()
        defer { first.remove(); second.remove() }
        let settings = DocumentServer.settings()
        let routes = WebZone.routes(settings: settings)
        try await runTestServer(routes: routes, data: first.path, store: .postgres(parsed)) { base, _, _ in
            let one = DocumentClient(base: base)
            let meeting = try await one.createMeeting()
            let response = try await one.upload(DocumentPDF.pages(2), to: meeting, title: "Shared.pdf")
            #expect(response.status == 201, "\(response.text)")
            let uploaded = try JSONDecoder().decode(UploadedDocument.self, from: response.body)
            #expect(uploaded.pages.count == 2)
            // The other machine has the cluster's token keys (`parley cluster init` copies them).
            try FileManager.default.copyItem(atPath: first.path + "/keys", toPath: second.path + "/keys")
            try await runTestServer(routes: routes, data: second.path, store: .postgres(parsed)) { otherBase, _, _ in
                let two = DocumentClient(base: otherBase)
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
            }
            for data in [first.path, second.path] {
                let kept = documentFiles(under: data + "/documents").filter { !$0.hasPrefix(".incoming") }
                #expect(kept.isEmpty, "documents kept on this machine's disk: \(kept)")
            }
        }
    }
}
