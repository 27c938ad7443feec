import Foundation
import ParleyClient
@testable import ParleyWeb
import ParleyZone
import Testing
import ParleyTestSupport

/// The SDK's document calls (`ParleyHTTP.uploadDocument`, `uploadProgress`, `pageImage`)
/// against a real server on a free port, with the real converters unless a test replaces them.
///
/// Serialized like the other document suites: the PDF tests run converter processes.
@Suite("SDK documents", MachineLoad.server, .serialized, .timeLimit(.minutes(2)))
struct SDKDocumentTests {
    @Test("an uploaded PNG or JPEG is one page whose image comes back byte for byte, with its type and the page id as ETag")
    func imageRoundTrip() async throws {
        let jpeg = try documentFixture("page.jpg")
        try await Self.withMeeting { server, meeting in
            for (bytes, type) in [(DocumentImages.png, "image/png"), (jpeg, "image/jpeg")] {
                let uploaded = try await ParleyHTTP.uploadDocument(server: server, meeting: meeting.meeting.id,
                                                                   token: meeting.hostToken, data: Data(bytes))
                #expect(uploaded.title == "Document", "no title: the server's default")
                #expect(DocumentIDs.isDocumentID(uploaded.document.rawValue), "\(uploaded.document)")
                #expect(uploaded.pages.count == 1)
                let page = try #require(uploaded.pages.first)
                #expect(DocumentIDs.isPageID(page.rawValue), "\(page)")

                let image = try await ParleyHTTP.pageImage(server: server, meeting: meeting.meeting.id,
                                                           token: meeting.hostToken, page: page)
                #expect(image == PageImage(data: Data(bytes), contentType: type, etag: "\"\(page.rawValue)\""))
            }
        }
    }

    @Test("a PDF becomes one PNG page per page, and a title with spaces, accents, parentheses and % arrives exactly")
    func pdfPages() async throws {
        let title = "Q3 résumé (final) 100% ✓.pdf"
        try await Self.withMeeting { server, meeting in
            let uploaded = try await ParleyHTTP.uploadDocument(server: server, meeting: meeting.meeting.id, token: meeting.hostToken,
                                                               data: Data(DocumentPDF.pages(2)), title: title)
            #expect(uploaded.title == title)
            #expect(uploaded.pages.count == 2)
            #expect(Set(uploaded.pages).count == 2, "every page has its own id")

            var images: [Data] = []
            for page in uploaded.pages {
                let image = try await ParleyHTTP.pageImage(server: server, meeting: meeting.meeting.id,
                                                           token: meeting.hostToken, page: page)
                #expect(image.contentType == "image/png")
                #expect(image.etag == "\"\(page.rawValue)\"")
                #expect(Array(image.data.prefix(8)) == DocumentKind.pngSignature)
                #expect(DocumentImages.pngSize(Array(image.data)).map { max($0.width, $0.height) } == 200,
                        "fits the server's pageImagePixels")
                images.append(image.data)
            }
            #expect(images[0] != images[1], "page 1 and page 2 read differently")
        }
    }

    @Test("a token that is not one is invalidToken and another meeting's token is wrongMeeting, for uploads and pages alike")
    func refusedTokens() async throws {
        try await Self.withMeeting { server, meeting in
            let id = meeting.meeting.id
            let page = try await ParleyHTTP.uploadDocument(server: server, meeting: id, token: meeting.hostToken,
                                                           data: Data(DocumentImages.png)).pages[0]
            let other = try await ParleyHTTP.createMeeting(server: server, title: "Another meeting")

            for (token, status, code) in [("not-a-token", 401, APIErrorCode.invalidToken), (other.hostToken, 403, .wrongMeeting)] {
                let upload = try #require(await Self.httpFailure {
                    try await ParleyHTTP.uploadDocument(server: server, meeting: id, token: token, data: Data(DocumentImages.png))
                })
                #expect(upload.status == status)
                #expect(upload.code == code, "\(upload)")

                let fetch = try #require(await Self.httpFailure {
                    try await ParleyHTTP.pageImage(server: server, meeting: id, token: token, page: page)
                })
                #expect(fetch.status == status)
                #expect(fetch.code == code, "\(fetch)")
            }
        }
    }

    @Test("a page that does not exist and another meeting's page are both unknownPage")
    func unknownPages() async throws {
        try await Self.withMeeting { server, meeting in
            let other = try await ParleyHTTP.createMeeting(server: server, title: "Another meeting")
            let theirs = try await ParleyHTTP.uploadDocument(server: server, meeting: other.meeting.id, token: other.hostToken,
                                                             data: Data(DocumentImages.png)).pages[0]
            for page: PageID in ["pg-0000000000000000", theirs, "../../etc/passwd"] {
                let refused = try #require(await Self.httpFailure {
                    try await ParleyHTTP.pageImage(server: server, meeting: meeting.meeting.id, token: meeting.hostToken, page: page)
                })
                #expect(refused.status == 404, "\(page)")
                #expect(refused.code == .unknownPage, "\(page): \(refused)")
            }
            // Their own meeting serves it.
            let image = try await ParleyHTTP.pageImage(server: server, meeting: other.meeting.id, token: other.hostToken, page: theirs)
            #expect(image.data == Data(DocumentImages.png))
        }
    }

    @Test("an upload over maxUploadBytes is uploadTooLarge naming the limit, even far over it; exactly the limit is accepted")
    func tooLarge() async throws {
        var settings = DocumentServer.settings()
        settings.maxUploadBytes = 64 << 10
        let limit = settings.maxUploadBytes
        try await Self.withMeeting(settings) { server, meeting in
            // A PNG followed by padding is still a PNG to the server, so only the size decides.
            for size in [limit + 1, 4 << 20] {
                let big = DocumentImages.png + Array(repeating: 0, count: size - DocumentImages.png.count)
                let refused = try #require(await Self.httpFailure {
                    try await ParleyHTTP.uploadDocument(server: server, meeting: meeting.meeting.id, token: meeting.hostToken,
                                                        data: Data(big))
                })
                #expect(refused.status == 413, "\(size) bytes")
                #expect(refused.code == .uploadTooLarge, "\(size) bytes: \(refused)")
                #expect(refused.message.contains("64 KiB"), "\(refused.message)")
            }
            let atLimit = DocumentImages.png + Array(repeating: 0, count: limit - DocumentImages.png.count)
            let uploaded = try await ParleyHTTP.uploadDocument(server: server, meeting: meeting.meeting.id, token: meeting.hostToken,
                                                               data: Data(atLimit))
            #expect(uploaded.pages.count == 1)
        }
    }

    @Test("uploadProgress reports page 1, 2 and 3 of 3 while a PDF converts, and unknownUpload before and after")
    func progress() async throws {
        let scripts = try DocumentTemporaryDirectory()
        defer { scripts.remove() }
        let gated = try scripts.gatedConverter(name: "gated")
        try await Self.withMeeting(converters: [gated]) { server, meeting in
            let id = meeting.meeting.id
            let token = meeting.hostToken
            let uploadID = "sdk-upload-1"
            let before = try #require(await Self.httpFailure {
                try await ParleyHTTP.uploadProgress(server: server, meeting: id, token: token, uploadID: uploadID)
            })
            #expect(before.status == 404)
            #expect(before.code == .unknownUpload, "not started yet: \(before)")

            async let answer = ParleyHTTP.uploadDocument(server: server, meeting: id, token: token,
                                                         data: Data(DocumentPDF.pages(3)), uploadID: uploadID)
            var seen: [UploadProgressReport] = []
            /// Polls until the report is `wanted`, keeping each new report on the way; at most 20 s.
            func awaitReport(_ wanted: UploadProgressReport) async throws {
                let deadline = ContinuousClock.now + .seconds(20)
                while ContinuousClock.now < deadline, seen.last != wanted {
                    do {
                        let report = try await ParleyHTTP.uploadProgress(server: server, meeting: id, token: token, uploadID: uploadID)
                        if seen.last != report { seen.append(report) }
                    } catch .http(let failure) where failure.code == .unknownUpload {
                        // The server has not begun the upload yet.
                    }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
            for page in 1...3 {
                try await awaitReport(UploadProgressReport(state: .converting, page: page, pages: 3))
                #expect(scripts.open(page: page))
            }
            let uploaded = try await answer
            #expect(uploaded.pages.count == 3)
            #expect(seen.filter { $0.state == .converting } == [
                UploadProgressReport(state: .converting, page: 1, pages: 3),
                UploadProgressReport(state: .converting, page: 2, pages: 3),
                UploadProgressReport(state: .converting, page: 3, pages: 3),
            ], "\(seen)")
            #expect(seen.last?.description == "converting page 3 of 3")

            let after = try #require(await Self.httpFailure {
                try await ParleyHTTP.uploadProgress(server: server, meeting: id, token: token, uploadID: uploadID)
            })
            #expect(after.code == .unknownUpload, "gone once answered: \(after)")
        }
    }

    @Test("a malformed uploadID is invalidOptions, and nothing is sent")
    func malformedUploadID() async throws {
        // Nothing listens on the discard port: a request would fail as a network error.
        let nowhere = URL(string: "http://127.0.0.1:9")!
        for uploadID in ["", "../x", "a b", String(repeating: "u", count: 65)] {
            await #expect(throws: ParleyError.invalidOptions(
                "uploadID must be 1 to 64 ASCII letters, digits, '-' or '_' (it is '\(uploadID)')")) {
                try await ParleyHTTP.uploadProgress(server: nowhere, meeting: "m", token: "t", uploadID: uploadID)
            }
            await #expect(throws: ParleyError.invalidOptions(
                "uploadID must be 1 to 64 ASCII letters, digits, '-' or '_' (it is '\(uploadID)')")) {
                try await ParleyHTTP.uploadDocument(server: nowhere, meeting: "m", token: "t", data: Data(DocumentImages.png),
                                                    uploadID: uploadID)
            }
        }
    }

    @Test("only the host and the presenter may upload, as the meeting has them now: an attendee made presenter may, a host who handed over may not")
    func onlyHostAndPresenterUpload() async throws {
        try await Self.withMeeting { server, meeting in
            let id = meeting.meeting.id
            let ada = try await ParleyHTTP.issueToken(server: server, meeting: id, name: "Ada")
            let upload = { (token: String) async throws in
                try await ParleyHTTP.uploadDocument(server: server, meeting: id, token: token, data: Data(DocumentImages.png),
                                                    title: "Ada's sketch.png")
            }
            let notPresenter = { (token: String, sourceLocation: SourceLocation) async in
                let failure = await Self.httpFailure({ try await upload(token) }, sourceLocation: sourceLocation)
                #expect(failure?.status == 403, sourceLocation: sourceLocation)
                #expect(failure?.code == .other("not_presenter"), "\(String(describing: failure))", sourceLocation: sourceLocation)
            }
            // Before joining, an attendee's token says what she would be: an attendee.
            await notPresenter(ada.token, #_sourceLocation)
            _ = try await upload(meeting.hostToken)

            let attendee = try MeetingClient(server: server, token: ada.token, options: Self.clientOptions)
            let host = try MeetingClient(server: server, token: meeting.hostToken, options: Self.clientOptions)
            try await attendee.connect()
            try await host.connect()
            await notPresenter(ada.token, #_sourceLocation)

            // Made presenter, she may, and the meeting takes her document.
            _ = try await host.send(.setPresenter(to: ada.participant))
            let uploaded = try await upload(ada.token)
            _ = try await attendee.send(.addDocument(uploaded))
            // The host, presenting or not, may.
            _ = try await upload(meeting.hostToken)

            // Handed over, the host role goes with its rights, whatever the old host's token says.
            _ = try await host.send(.handOverHost(to: ada.participant))
            await notPresenter(meeting.hostToken, #_sourceLocation)
            _ = try await upload(ada.token)
            await attendee.close()
            await host.close()
        }
    }

    @Test("Alice, with a presenter's token and not joined, may not upload once the host has made Bob presenter; Bob may")
    func presenterTokenWhileAnotherPresents() async throws {
        try await Self.withMeeting { server, meeting in
            let id = meeting.meeting.id
            let alice = try await ParleyHTTP.issueToken(server: server, meeting: id, name: "Alice", role: .presenter)
            let bob = try await ParleyHTTP.issueToken(server: server, meeting: id, name: "Bob")
            let host = try MeetingClient(server: server, token: meeting.hostToken, options: Self.clientOptions)
            let bobClient = try MeetingClient(server: server, token: bob.token, options: Self.clientOptions)
            try await host.connect()
            try await bobClient.connect()
            _ = try await host.send(.setPresenter(to: bob.participant))
            let upload = { (token: String) async throws in
                try await ParleyHTTP.uploadDocument(server: server, meeting: id, token: token, data: Data(DocumentImages.png), title: "Slide.png")
            }
            // Joining now, her token would make her a presenter by role, not the presenter:
            // the model would refuse her addDocument, so the upload is refused too.
            let failure = await Self.httpFailure({ try await upload(alice.token) })
            #expect(failure?.status == 403 && failure?.code == .other("not_presenter"), "\(String(describing: failure))")
            _ = try await upload(bob.token)
            await bobClient.close()
            await host.close()
        }
    }

    @Test("a document can be deleted by the host, except while one of its pages is shown; its pages are then gone and the quota freed")
    func deletion() async throws {
        var settings = DocumentServer.settings()
        settings.meetingDocumentBytes = 1 << 20
        try await Self.withMeeting(settings) { server, meeting in
            let id = meeting.meeting.id
            let client = DocumentClient(base: server.absoluteString)
            let room = DocumentMeeting(id: id.rawValue, hostToken: meeting.hostToken)
            // Two documents of 600 KiB each do not fit in 1 MiB together.
            let big = DocumentImages.png + Array(repeating: 0, count: 600 << 10)
            let shown = try await ParleyHTTP.uploadDocument(server: server, meeting: id, token: meeting.hostToken, data: Data(DocumentImages.png))
            let other = try await ParleyHTTP.uploadDocument(server: server, meeting: id, token: meeting.hostToken, data: Data(big))
            #expect(try await client.upload(big, to: room, contentType: "image/png").error?.code == "meeting_quota_exceeded")

            let host = try MeetingClient(server: server, token: meeting.hostToken, options: Self.clientOptions)
            try await host.connect()
            _ = try await host.send(.addDocument(shown))
            _ = try await host.send(.addDocument(other))
            _ = try await host.send(.turnPage(to: shown.pages[0]))

            let path = { (document: DocumentID) in "/v1/meetings/\(id.rawValue)/documents/\(document.rawValue)" }
            let inUse = try await client.send("DELETE", path(shown.document), token: meeting.hostToken)
            #expect(inUse.status == 409 && inUse.error?.code == "document_shown", "\(inUse.text)")
            let attendee = try await ParleyHTTP.issueToken(server: server, meeting: id, name: "Ada").token
            let forbidden = try await client.send("DELETE", path(other.document), token: attendee)
            #expect(forbidden.status == 403 && forbidden.error?.code == "not_presenter", "\(forbidden.text)")

            let deleted = try await client.send("DELETE", path(other.document), token: meeting.hostToken)
            #expect(deleted.status == 204, "\(deleted.text)")
            #expect(try await client.page(other.pages[0].rawValue, of: room).error?.code == "unknown_page")
            let again = try await client.send("DELETE", path(other.document), token: meeting.hostToken)
            #expect(again.status == 404 && again.error?.code == "unknown_document")
            for bad in ["d-0123456789abcdef", "d-0123456789ABCDEF", "%2E%2E%2Fkeys"] {
                let response = try await client.send("DELETE", "/v1/meetings/\(id.rawValue)/documents/\(bad)", token: meeting.hostToken)
                #expect(response.status == 404 && response.error?.code == "unknown_document", "\(bad): \(response.text)")
            }
            // The space is free again.
            #expect(try await client.upload(big, to: room, contentType: "image/png").status == 201)

            // Once the presenter turns elsewhere, the document that was shown may go too.
            _ = try await host.send(.addWhiteboard(id: DocumentID("d-whiteboard"), title: "Board"))
            _ = try await host.send(.turnPage(to: Meeting.firstWhiteboardPage(of: DocumentID("d-whiteboard"))))
            #expect(try await client.send("DELETE", path(shown.document), token: meeting.hostToken).status == 204)
            await host.close()
        }
    }

    // MARK: - Support

    static var clientOptions: MeetingClient.Options {
        var options = MeetingClient.Options(policy: ConnectionPolicy(transport: .webSocket))
        options.policy.backoffInitial = .milliseconds(50)
        options.policy.backoffMax = .milliseconds(400)
        return options
    }

    /// Runs `body` against a real server (the whole web zone, or the documents routes with
    /// `converters`), with a meeting created through the SDK.
    static func withMeeting(_ settings: WebSettings = DocumentServer.settings(), converters: [PDFConverter]? = nil,
                            _ body: @Sendable (URL, CreatedMeeting) async throws -> Void) async throws {
        try await DocumentServer.run(settings: settings, converters: converters) { client, _, _ in
            let server = try #require(URL(string: client.base))
            let meeting = try await ParleyHTTP.createMeeting(server: server, title: "SDK documents")
            try await body(server, meeting)
        }
    }

    /// The ``HTTPFailure`` that `call` throws; nil, with an issue recorded, if it succeeds or
    /// fails some other way.
    static func httpFailure<T>(_ call: () async throws -> T,
                               sourceLocation: SourceLocation = #_sourceLocation) async -> HTTPFailure? {
        do {
            let value = try await call()
            Issue.record("expected an HTTP failure, got \(value)", sourceLocation: sourceLocation)
        } catch ParleyError.http(let failure) {
            return failure
        } catch {
            Issue.record("expected an HTTP failure, got \(error)", sourceLocation: sourceLocation)
        }
        return nil
    }
}
