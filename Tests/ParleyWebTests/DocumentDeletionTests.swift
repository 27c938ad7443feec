import Foundation
import ParleyClient
import ParleyCore
@testable import ParleyStore
import ParleyTestSupport
@testable import ParleyWeb
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Deleting documents while others read the meeting and its pages.
@Suite("Document deletion", MachineLoad.server, .serialized, .timeLimit(.minutes(2)))
struct DocumentDeletionTests {
    @Test("a DELETE reads the committed meeting without repairing it: a damaged log is left for its host, and an attendee is refused")
    func deletionChangesNothing() async throws {
        try await DocumentServer.run(settings: DocumentServer.settings(), converters: []) { client, _, data in
            let server = try #require(URL(string: client.base))
            let meeting = try await ParleyHTTP.createMeeting(server: server, title: "Damaged")
            let id = meeting.meeting.id
            // Two committed entries: the host's join and a chat message. The host stays, so
            // that nothing more is written meanwhile.
            let host = try MeetingClient(server: server, token: meeting.hostToken, options: SDKDocumentTests.clientOptions)
            try await host.connect()
            _ = try await host.send(.chat(text: "hello"))

            let store = try SQLiteStore(directory: data)
            let entries = "SELECT count(*) FROM log WHERE meeting = '\(id.rawValue)'"
            let stored = try #require(try await store.rawInt(entries))
            #expect(stored >= 2)
            try await store.rawExecute("UPDATE log SET checksum = x'00' WHERE meeting = '\(id.rawValue)' AND seq = 2")

            let attendee = try await ParleyHTTP.issueToken(server: server, meeting: id, name: "Ada").token
            let response = try await client.send("DELETE", "/v1/meetings/\(id.rawValue)/documents/d-0123456789abcdef", token: attendee)
            #expect(response.status == 403 && response.error?.code == "not_presenter", "\(response.text)")
            // A recovery would have moved the entries from seq 2 on to the quarantine.
            #expect(try await store.rawInt(entries) == stored)
            #expect(try await store.rawInt("SELECT count(*) FROM log_quarantine") == 0)
            await host.close()
        }
    }

    @Test("page requests racing a DELETE of their document get the whole page or unknown_page, never a server error or a cut response")
    func pagesRaceDeletion() async throws {
        try await DocumentServer.run(settings: DocumentServer.settings(), converters: []) { client, _, _ in
            let meeting = try await client.createMeeting()
            // A page large enough to be read in several chunks while the DELETE runs.
            let image = DocumentImages.png + Array(repeating: 7, count: 3 * DocumentRoutes.pageChunkBytes)
            for _ in 0..<5 {
                let response = try await client.upload(image, to: meeting, contentType: "image/png")
                let uploaded = try JSONDecoder().decode(UploadedDocument.self, from: response.body)
                let page = uploaded.pages[0]
                let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                    for index in 0..<16 {
                        group.addTask {
                            if index == 8 {
                                let deleted = try await client.send("DELETE", "/v1/meetings/\(meeting.id)/documents/\(uploaded.document)",
                                                                    token: meeting.hostToken)
                                #expect(deleted.status == 204, "\(deleted.text)")
                                return 0
                            }
                            let fetched = try await client.page(page, of: meeting)
                            if fetched.status == 200 { #expect(Array(fetched.body) == image) }
                            if fetched.status == 404 { #expect(fetched.error?.code == "unknown_page") }
                            return fetched.status
                        }
                    }
                    return try await group.reduce(into: [Int]()) { $0.append($1) }
                }
                #expect(statuses.allSatisfy { [0, 200, 404].contains($0) }, "\(statuses)")
                #expect(try await client.page(page, of: meeting).status == 404)
            }
        }
    }
}

/// Pages on one machine's disk, as the server opens them to serve.
@Suite("Document store on disk")
struct DocumentStoreTests {
    static let page = "pg-0123456789abcdef", document = "d-0123456789abcdef"

    /// A store in `data` holding one document of one page, `bytes`.
    static func storeWithPage(_ bytes: [UInt8], in data: DocumentTemporaryDirectory) throws -> DocumentStore {
        let store = DocumentStore(dataDirectory: data.path)
        let staged = try store.makeIncoming() + "/document"
        try FileManager.default.createDirectory(atPath: staged, withIntermediateDirectories: false)
        try DocumentStore.write(bytes, to: staged + "/\(page).png")
        try store.install(staged: staged, meeting: "m-1", document: document)
        return store
    }

    @Test("a page opened before its document is deleted is read whole; after, it is not found: never found and then unreadable")
    func openAcrossDeletion() async throws {
        let data = try DocumentTemporaryDirectory()
        defer { data.remove() }
        let bytes = DocumentImages.png + Array(repeating: 1, count: 1_000)
        let store = try Self.storeWithPage(bytes, in: data)
        let open = try #require(store.openPage(Self.page, meeting: "m-1"))
        #expect(open.size == bytes.count && open.contentType == "image/png")
        #expect(try store.remove(Self.document, meeting: "m-1"))
        #expect(store.openPage(Self.page, meeting: "m-1") == nil)
        var read: [UInt8] = []
        for _ in 0..<1_000 where read.count < open.size {
            let chunk = try await open.read(at: read.count, count: 97)
            if chunk.isEmpty { break }
            read += chunk
        }
        #expect(read == bytes)
    }

    @Test("a link or a FIFO where a page would be is not a page")
    func onlyRegularFiles() throws {
        let data = try DocumentTemporaryDirectory()
        defer { data.remove() }
        let store = try Self.storeWithPage(DocumentImages.png, in: data)
        let directory = store.root + "/m-1/" + Self.document
        try FileManager.default.createSymbolicLink(atPath: directory + "/pg-1111111111111111.png", withDestinationPath: directory + "/\(Self.page).png")
        #expect(mkfifo(directory + "/pg-2222222222222222.png", 0o644) == 0)
        #expect(store.openPage("pg-1111111111111111", meeting: "m-1") == nil)
        #expect(store.openPage("pg-2222222222222222", meeting: "m-1") == nil, "refused without blocking")
        #expect(store.openPage(Self.page, meeting: "m-1") != nil)
    }
}
