import Foundation
import ParleyServer
import ParleyTelemetry
@testable import ParleyWeb
import ParleyZone
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif
import ParleyTestSupport

/// Uploads and page fetches over real HTTP, against a real server, with the real
/// converters (poppler-utils and mupdf-tools) unless a test replaces them.
///
/// Serialized: several tests run converters to their time limit, and on a small machine
/// running them side by side would make the others' timings meaningless.
@Suite("Document uploads", MachineLoad.server, .serialized, .timeLimit(.minutes(2)))
struct DocumentUploadTests {
    @Test("a 3-page PDF becomes 3 PNG pages with stable ids, served with caching headers and 304 on If-None-Match")
    func threePages() async throws {
        try await DocumentServer.run(settings: DocumentServer.settings()) { client, _, data in
            let meeting = try await client.createMeeting()
            let response = try await client.upload(DocumentPDF.pages(3), to: meeting, title: "Q3 résumé.pdf")
            #expect(response.status == 201, "\(response.text)")
            let uploaded = try JSONDecoder().decode(UploadedDocument.self, from: response.body)
            #expect(uploaded.title == "Q3 résumé.pdf")
            #expect(DocumentIDs.isDocumentID(uploaded.document))
            #expect(uploaded.pages.count == 3 && Set(uploaded.pages).count == 3)
            #expect(uploaded.pages.allSatisfy { DocumentIDs.isPageID($0) })

            var images: [Data] = []
            for page in uploaded.pages {
                let fetched = try await client.page(page, of: meeting)
                #expect(fetched.status == 200)
                #expect(fetched.header("Content-Type") == "image/png")
                #expect(fetched.header("Cache-Control") == "private, max-age=31536000, immutable")
                #expect(fetched.header("ETag") == "\"\(page)\"")
                let size = DocumentImages.pngSize(Array(fetched.body))
                #expect(size.map { max($0.width, $0.height) == 200 } == true, "fits pageImagePixels: \(String(describing: size))")
                images.append(fetched.body)

                let again = try await client.page(page, of: meeting, headers: ["If-None-Match": "\"\(page)\""])
                #expect(again.status == 304)
                #expect(again.body.isEmpty)
                #expect(again.header("ETag") == "\"\(page)\"")
            }
            #expect(Set(images).count == 3, "each page has its own image (Page 1, Page 2, Page 3)")

            // A second participant, an attendee of the same meeting, sees the same pages.
            let attendee = try await client.send("POST", "/v1/meetings/\(meeting.id)/tokens",
                                                 headers: ["Content-Type": "application/json"],
                                                 body: Array(#"{"name": "Ada"}"#.utf8))
            let token = try #require(try JSONSerialization.jsonObject(with: attendee.body) as? [String: Any])["token"] as? String
            #expect(try await client.page(uploaded.pages[1], of: meeting, token: token).body == images[1])

            // On disk: the manifest, the source, the pages, and no work left behind.
            let stored = DocumentStore(dataDirectory: data)
            let manifest = try #require(stored.manifest(uploaded.document, meeting: meeting.id))
            #expect(manifest.pages.map(\.id) == uploaded.pages)
            #expect(manifest.kind == .pdf && manifest.title == "Q3 résumé.pdf" && manifest.converter == "poppler")
            #expect(documentFiles(under: stored.incomingRoot).isEmpty)
        }
    }

    @Test("a PNG or JPEG upload is one page, served exactly as uploaded with its own type")
    func images() async throws {
        try await DocumentServer.run(settings: DocumentServer.settings()) { client, _, _ in
            let meeting = try await client.createMeeting()
            let jpeg = try documentFixture("page.jpg")
            for (bytes, type) in [(DocumentImages.png, "image/png"), (jpeg, "image/jpeg")] {
                let response = try await client.upload(bytes, to: meeting, contentType: type)
                #expect(response.status == 201, "\(response.text)")
                let uploaded = try JSONDecoder().decode(UploadedDocument.self, from: response.body)
                #expect(uploaded.title == "Document", "no X-Parley-Title: the default")
                #expect(uploaded.pages.count == 1)
                let page = try await client.page(uploaded.pages[0], of: meeting)
                #expect(page.status == 200)
                #expect(page.header("Content-Type") == type)
                #expect(page.header("X-Content-Type-Options") == "nosniff")
                #expect(Array(page.body) == bytes)
            }
        }
    }

    @Test("bytes that are not a PDF, PNG or JPEG are unsupported_document, whatever their name and type")
    func notADocument() async throws {
        try await DocumentServer.run(settings: DocumentServer.settings()) { client, _, data in
            let meeting = try await client.createMeeting()
            let text = Array("Minutes of the meeting\nThis is not a PDF.\n".utf8)
            let cases: [([UInt8], String)] = [
                (text, "application/pdf"), (text, "image/png"), (Array("PK\u{3}\u{4}zip".utf8), "application/pdf"), ([], "application/pdf"),
            ]
            for (bytes, type) in cases {
                let response = try await client.upload(bytes, to: meeting, contentType: type, title: "slides.pdf")
                #expect(response.status == 415)
                #expect(response.error?.code == "unsupported_document", "\(response.text)")
                #expect(response.header("Content-Type") == "application/json")
            }
            #expect(!FileManager.default.fileExists(atPath: data + "/documents/" + meeting.id))
        }
    }

    @Test("an upload over maxUploadBytes is upload_too_large, with or without a declared length")
    func tooLarge() async throws {
        var settings = DocumentServer.settings()
        settings.maxUploadBytes = 64 << 10
        let limit = settings.maxUploadBytes
        try await DocumentServer.run(settings: settings) { client, _, data in
            let meeting = try await client.createMeeting()
            let big = DocumentPDF.pages(1) + Array(repeating: UInt8(ascii: " "), count: 200 << 10)
            let declared = try await client.upload(big, to: meeting)
            #expect(declared.status == 413)
            #expect(declared.error?.code == "upload_too_large")
            #expect(declared.error?.message.contains("64 KiB") == true, "\(declared.text)")

            let streamed = try await client.send("POST", "/v1/meetings/\(meeting.id)/documents", token: meeting.hostToken,
                                                 headers: ["Content-Type": "application/pdf"], body: big, streamed: true)
            #expect(streamed.status == 413)
            #expect(streamed.error?.code == "upload_too_large")

            // Exactly at the limit is fine.
            let padding = limit - DocumentPDF.pages(1).count
            let atLimit = try await client.upload(DocumentPDF.pages(1) + Array(repeating: UInt8(ascii: " "), count: padding), to: meeting)
            #expect(atLimit.status == 201, "\(atLimit.text)")
            #expect(documentFiles(under: data + "/documents/.incoming").isEmpty)
        }
    }

    @Test("a PDF with more pages than maxDocumentPages is too_many_pages")
    func tooManyPages() async throws {
        try await DocumentServer.run(settings: DocumentServer.settings()) { client, _, _ in
            let meeting = try await client.createMeeting()
            let response = try await client.upload(DocumentPDF.pages(6), to: meeting)
            #expect(response.status == 422)
            #expect(response.error?.code == "too_many_pages")
            #expect(response.error?.message.contains("6 pages") == true)
            #expect(try await client.upload(DocumentPDF.pages(5), to: meeting).status == 201, "the limit itself is allowed")
        }
    }

    @Test("a decompression bomb is stopped at the time limit and is conversion_failed; nothing is left running or on disk")
    func decompressionBomb() async throws {
        // 2 GB of zeros in a 13 MB upload: each converter needs many seconds; the limit is 1 s.
        let bomb = DocumentPDF.zeros(2 << 30)
        var settings = DocumentServer.settings(timeoutSeconds: 1)
        settings.maxUploadBytes = 32 << 20
        try await DocumentServer.run(settings: settings) { client, log, data in
            let meeting = try await client.createMeeting()
            let started = ContinuousClock.now
            let response = try await client.upload(bomb, to: meeting)
            let elapsed = ContinuousClock.now - started
            #expect(response.status == 422)
            #expect(response.error?.code == "conversion_failed", "\(response.text)")
            #expect(elapsed < .seconds(10), "two converters at 1 s each, not the minutes the bomb needs: \(elapsed)")
            #expect(log.contains("pdftoppm ran past the 1 s limit and was killed"), "\(log.all)")
            #expect(log.contains("mutool ran past the 1 s limit and was killed"), "\(log.all)")
            #expect(await documentProcessesLeft(mentioning: data).isEmpty, "no converter still runs")
            #expect(documentFiles(under: data + "/documents/.incoming").isEmpty, "no temporary files are left")
            #expect(!FileManager.default.fileExists(atPath: data + "/documents/" + meeting.id))
        }
    }

    @Test("a PDF of nested forms (ten to the ninth paths) is stopped at the time limit")
    func nestedFormsBomb() async throws {
        try await DocumentServer.run(settings: DocumentServer.settings(timeoutSeconds: 1)) { client, log, data in
            let meeting = try await client.createMeeting()
            let response = try await client.upload(DocumentPDF.nestedForms(depth: 9, fanout: 10), to: meeting)
            #expect(response.status == 422)
            #expect(response.error?.code == "conversion_failed")
            #expect(log.contains("ran past the 1 s limit"))
            #expect(await documentProcessesLeft(mentioning: data).isEmpty)
        }
    }

    @Test("a huge page is rendered within pageImagePixels")
    func hugePage() async throws {
        try await DocumentServer.run(settings: DocumentServer.settings()) { client, _, _ in
            let meeting = try await client.createMeeting()
            let response = try await client.upload(DocumentPDF.pages(1, mediaBox: "0 0 14400 14400"), to: meeting)
            let uploaded = try JSONDecoder().decode(UploadedDocument.self, from: response.body)
            let page = try await client.page(uploaded.pages[0], of: meeting)
            #expect(DocumentImages.pngSize(Array(page.body)).map { $0.width == 200 && $0.height == 200 } == true)
        }
    }

    @Test("no token, a forged token and an expired token are refused, before the upload is read")
    func badTokens() async throws {
        try await DocumentServer.run(settings: DocumentServer.settings()) { client, _, data in
            let meeting = try await client.createMeeting()
            let parts = meeting.hostToken.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            #expect(parts.count == 3)
            // Change a character well inside the signature (the last one may only hold padding bits).
            var signature = Array(parts[2])
            signature[10] = signature[10] == "A" ? "B" : "A"
            let forged = parts[0] + "." + parts[1] + "." + String(signature)
            let expired = try await TokenAuthority(signingIn: data, lifetimeSeconds: -60)
                .issue(meeting: .init(meeting.id), participant: .init("p-x"), name: "Late", role: .host)

            for (token, code) in [(forged, "invalid_token"), ("not-a-token", "invalid_token"), (expired, "token_expired")] {
                let upload = try await client.upload(DocumentPDF.pages(1), to: meeting, token: token)
                #expect(upload.status == 401)
                #expect(upload.error?.code == code)
                let page = try await client.page("pg-0123456789abcdef", of: meeting, token: token)
                #expect(page.status == 401)
                #expect(page.error?.code == code)
            }
            let anonymous = try await client.send("POST", "/v1/meetings/\(meeting.id)/documents", body: DocumentPDF.pages(1))
            #expect(anonymous.status == 401)
            #expect(anonymous.error?.code == "invalid_token")
            #expect(!FileManager.default.fileExists(atPath: data + "/documents/" + meeting.id))
        }
    }

    @Test("one meeting's token opens nothing of another meeting: wrong_meeting on its URLs, unknown_page for its pages")
    func meetingsAreSeparate() async throws {
        try await DocumentServer.run(settings: DocumentServer.settings()) { client, _, _ in
            let a = try await client.createMeeting("A")
            let b = try await client.createMeeting("B")
            let uploaded = try JSONDecoder().decode(UploadedDocument.self,
                                                    from: try await client.upload(DocumentImages.png, to: a).body)
            let page = uploaded.pages[0]

            // B's token on A's URLs.
            let upload = try await client.upload(DocumentImages.png, to: a, token: b.hostToken)
            #expect(upload.status == 403)
            #expect(upload.error?.code == "wrong_meeting")
            let fetch = try await client.page(page, of: a, token: b.hostToken)
            #expect(fetch.status == 403)
            #expect(fetch.error?.code == "wrong_meeting")

            // A's page through B, with B's valid token: the same answer as a page that never was.
            let leaked = try await client.page(page, of: b)
            let unknown = try await client.page("pg-0123456789abcdef", of: b)
            #expect(leaked.status == 404 && unknown.status == 404)
            #expect(leaked.error?.code == "unknown_page")
            #expect(leaked.error?.code == unknown.error?.code && leaked.error?.message == unknown.error?.message)
            #expect(leaked.headers.keys.sorted() == unknown.headers.keys.sorted())

            // Ids that are not ids never reach the file system.
            for bad in ["..%2F..%2Fkeys%2Ftoken-signing.ed25519", "pg-0123456789ABCDEF", "pg-0123456789abcdef.png",
                        uploaded.document, "%2E%2E"] {
                let response = try await client.page(bad, of: a)
                #expect(response.status == 404, "\(bad): \(response.status)")
                #expect(response.error?.code == "unknown_page", "\(bad)")
            }
            #expect(try await client.page(page, of: a).status == 200)
        }
    }

    @Test("pages keep their ids across a server restart")
    func survivesRestart() async throws {
        let directory = try DocumentTemporaryDirectory()
        defer { directory.remove() }
        let first = DocumentRestartCarry()
        try await DocumentServer.run(settings: DocumentServer.settings(), data: directory.path) { client, _, _ in
            let meeting = try await client.createMeeting()
            let uploaded = try JSONDecoder().decode(UploadedDocument.self,
                                                    from: try await client.upload(DocumentPDF.pages(2), to: meeting).body)
            first.set(meeting, uploaded.pages)
        }
        try await DocumentServer.run(settings: DocumentServer.settings(), data: directory.path) { client, _, _ in
            let (meeting, pages) = try #require(first.get())
            for page in pages {
                let response = try await client.page(page, of: meeting)
                #expect(response.status == 200)
                #expect(DocumentKind.sniff(Array(response.body)) == .png)
            }
        }
    }

    @Test("work left in .incoming by a crashed server is removed at start; recent work is not")
    func sweepsLeftovers() async throws {
        let directory = try DocumentTemporaryDirectory()
        defer { directory.remove() }
        let incoming = directory.path + "/documents/.incoming"
        for name in ["1234-stale", "1234-recent"] {
            try FileManager.default.createDirectory(atPath: incoming + "/" + name + "/work", withIntermediateDirectories: true)
            try Data("%PDF-".utf8).write(to: URL(fileURLWithPath: incoming + "/" + name + "/source.pdf"))
        }
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -2 * 86_400)],
                                              ofItemAtPath: incoming + "/1234-stale")
        try await DocumentServer.run(settings: DocumentServer.settings(), data: directory.path) { _, log, _ in
            let left = try FileManager.default.contentsOfDirectory(atPath: incoming)
            #expect(left == ["1234-recent"])
            #expect(log.contains("removed 1 unfinished document uploads"))
        }
    }
}

/// Design diversity: the first converter is replaced by one that hangs, crashes or is
/// missing, and the second, independent one must still deliver.
@Suite("Document converter fallback", MachineLoad.server, .serialized, .timeLimit(.minutes(2)))
struct DocumentFallbackTests {
    /// A converter whose count and render both run `script`.
    static func fake(_ script: String) -> PDFConverter {
        PDFConverter(name: "fake", package: "nothing", count: .init(tool: script) { [$0.source] },
                     render: .init(tool: script) { [$0.source] })
    }

    @Test("a first converter that hangs is killed at the time limit, and mupdf renders the pages")
    func hangingFirst() async throws {
        let scripts = try DocumentTemporaryDirectory()
        defer { scripts.remove() }
        let hang = try scripts.script("hang", "echo $$ > \"\(scripts.path)/pid\"; exec sleep 60")
        // The limit also binds mupdf, which needed more than 1 s beside the whole suite.
        try await DocumentServer.run(settings: DocumentServer.settings(timeoutSeconds: 3),
                                     converters: [Self.fake(hang), .mupdf]) { client, log, _ in
            let meeting = try await client.createMeeting()
            let started = ContinuousClock.now
            let response = try await client.upload(DocumentPDF.pages(3), to: meeting)
            let elapsed = ContinuousClock.now - started
            #expect(response.status == 201, "\(response.text)")
            let uploaded = try JSONDecoder().decode(UploadedDocument.self, from: response.body)
            #expect(uploaded.pages.count == 3)
            #expect(elapsed >= .milliseconds(2_900), "the fake was given its full 3 s: \(elapsed)")
            let pid = Int32(ConverterRunner.read(scripts.path + "/pid", first: 32)) ?? 0
            #expect(pid > 0 && documentProcessIsGone(pid), "the hanging converter was killed")
            #expect(log.contains("converter fake failed on document \(uploaded.document)"))
            #expect(log.contains("ran past the 3 s limit and was killed; trying mupdf"), "\(log.all)")
            for page in uploaded.pages {
                #expect(DocumentKind.sniff(Array(try await client.page(page, of: meeting).body)) == .png)
            }
        }
    }

    @Test("a first converter that crashes hands over to mupdf")
    func crashingFirst() async throws {
        let scripts = try DocumentTemporaryDirectory()
        defer { scripts.remove() }
        let crash = try scripts.script("crash", "kill -SEGV $$")
        let metrics = ProcessMetrics.prometheus()
        try await DocumentServer.run(settings: DocumentServer.settings(), converters: [Self.fake(crash), .mupdf],
                                     metrics: metrics) { client, log, _ in
            let meeting = try await client.createMeeting()
            let response = try await client.upload(DocumentPDF.pages(2), to: meeting)
            #expect(response.status == 201, "\(response.text)")
            #expect(log.contains("crashed (signal 11); trying mupdf"), "\(log.all)")
            let refused = try await client.upload(Array("not a document".utf8), to: meeting)
            #expect(refused.status != 201)
        }
        // The fallback, the conversion by the second converter, and both uploads, counted.
        let lines = metrics.exposition().split(separator: "\n")
        #expect(lines.contains(#"parley_conversion_fallbacks_total{failed="fake"} 1"#))
        #expect(lines.contains(#"parley_conversion_duration_seconds_count{converter="mupdf"} 1"#))
        #expect(lines.contains(#"parley_uploads_total{outcome="stored"} 1"#))
        #expect(lines.contains(#"parley_uploads_total{outcome="refused"} 1"#))
    }

    @Test("a first converter that counts but renders nothing hands over to mupdf")
    func silentFirst() async throws {
        let scripts = try DocumentTemporaryDirectory()
        defer { scripts.remove() }
        let lazy = try scripts.script("lazy", "echo 'Pages: 2'")
        try await DocumentServer.run(settings: DocumentServer.settings(), converters: [Self.fake(lazy), .mupdf]) { client, log, data in
            let meeting = try await client.createMeeting()
            let response = try await client.upload(DocumentPDF.pages(2), to: meeting)
            #expect(response.status == 201, "\(response.text)")
            #expect(log.contains("it rendered 0 of 2 pages; trying mupdf"), "\(log.all)")
            let uploaded = try JSONDecoder().decode(UploadedDocument.self, from: response.body)
            #expect(DocumentStore(dataDirectory: data).manifest(uploaded.document, meeting: meeting.id)?.converter == "mupdf")
        }
    }

    @Test("without poppler installed, the log says what to install and mupdf renders the pages")
    func popplerMissing() async throws {
        // A PATH that has mutool and nothing else.
        let bin = try DocumentTemporaryDirectory()
        defer { bin.remove() }
        let mutool = try #require(ToolLocator.locate("mutool", searchPath: ProcessInfo.processInfo.environment["PATH"],
                                                     isExecutable: { access($0, X_OK) == 0 }))
        symlink(mutool, bin.path + "/mutool")
        try await DocumentServer.run(settings: DocumentServer.settings(), converters: PDFConverter.standard,
                                     searchPath: bin.path) { client, log, _ in
            let meeting = try await client.createMeeting()
            let response = try await client.upload(DocumentPDF.pages(2), to: meeting)
            #expect(response.status == 201, "\(response.text)")
            #expect(log.contains("pdfinfo not found; install poppler-utils; trying mupdf"), "\(log.all)")
        }
    }

    @Test("when every converter fails, the upload is conversion_failed and the log says why each failed")
    func everyConverterFails() async throws {
        let scripts = try DocumentTemporaryDirectory()
        defer { scripts.remove() }
        let crash = try scripts.script("crash", "echo 'bad xref' >&2; exit 3")
        let hang = try scripts.script("hang", "exec sleep 60")
        let converters = [
            PDFConverter(name: "first", package: "x", count: .init(tool: crash) { [$0.source] }, render: .init(tool: crash) { _ in [] }),
            PDFConverter(name: "second", package: "x", count: .init(tool: hang) { [$0.source] }, render: .init(tool: hang) { _ in [] }),
        ]
        try await DocumentServer.run(settings: DocumentServer.settings(timeoutSeconds: 1), converters: converters) { client, log, data in
            let meeting = try await client.createMeeting()
            let response = try await client.upload(DocumentPDF.pages(1), to: meeting)
            #expect(response.status == 422)
            #expect(response.error?.code == "conversion_failed")
            #expect(response.error?.message.contains("(first, second) failed") == true, "\(response.text)")
            #expect(!(response.error?.message.contains("bad xref") ?? true), "the uploader is not shown converter output")
            #expect(log.contains("could not be converted by any converter: first: \(crash) failed with exit status 3: bad xref; "
                + "second: \(hang) ran past the 1 s limit and was killed"), "\(log.all)")
            #expect(documentFiles(under: data + "/documents/.incoming").isEmpty)
        }
    }
}

/// How much a meeting may hold and how many uploads run at once, over real HTTP.
@Suite("Document upload limits", MachineLoad.server, .serialized, .timeLimit(.minutes(2)))
struct DocumentUploadLimitTests {
    /// A converter that notes each run in `scripts/runs` and renders one page of `pageBytes`.
    static func bigPage(_ scripts: DocumentTemporaryDirectory, pageBytes: Int) throws -> PDFConverter {
        let page = DocumentImages.png + Array(repeating: 0, count: pageBytes - DocumentImages.png.count)
        try Data(page).write(to: URL(fileURLWithPath: scripts.path + "/big.png"))
        let count = try scripts.script("count", "echo run >> \"\(scripts.path)/runs\"; echo 'Pages: 1'")
        let render = try scripts.script("render", "cp \"\(scripts.path)/big.png\" \"$1/p-1.png\"")
        return PDFConverter(name: "big", package: "nothing", count: .init(tool: count) { [$0.source] },
                            render: .init(tool: render) { [$0.outputDirectory] })
    }

    @Test("a meeting's documents stay within meetingDocumentBytes: an upload that cannot fit is refused before conversion, one whose pages do not fit after it; another meeting has its own")
    func quota() async throws {
        let scripts = try DocumentTemporaryDirectory()
        defer { scripts.remove() }
        var settings = DocumentServer.settings()
        settings.meetingDocumentBytes = 1 << 20
        try await DocumentServer.run(settings: settings, converters: [try Self.bigPage(scripts, pageBytes: 600 << 10)]) { client, _, data in
            let a = try await client.createMeeting("A"), b = try await client.createMeeting("B")
            let runs = { ((try? String(contentsOfFile: scripts.path + "/runs", encoding: .utf8)) ?? "").split(separator: "\n").count }
            let store = DocumentStore(dataDirectory: data)
            #expect(try await client.upload(DocumentPDF.pages(1), to: a).status == 201)
            let stored = store.storedBytes(meeting: a.id)
            #expect(stored > 600 << 10 && stored < 1 << 20, "the page, the source and the manifest: \(stored)")
            #expect(runs() == 1)

            // 500 KiB of PDF cannot fit whatever its pages: no converter runs.
            let padded = DocumentPDF.pages(1) + Array(repeating: UInt8(ascii: " "), count: 500 << 10)
            let early = try await client.upload(padded, to: a)
            #expect(early.status == 413 && early.error?.code == "meeting_quota_exceeded", "\(early.text)")
            #expect(early.error?.message.contains("at most 1 MiB") == true, "\(early.text)")
            #expect(runs() == 1, "refused before conversion")

            // A small PDF fits, its 600 KiB page does not: refused once converted, nothing kept.
            let late = try await client.upload(DocumentPDF.pages(1), to: a)
            #expect(late.status == 413 && late.error?.code == "meeting_quota_exceeded", "\(late.text)")
            #expect(runs() == 2)
            #expect(store.storedBytes(meeting: a.id) == stored)
            #expect(documentFiles(under: store.incomingRoot).isEmpty)

            #expect(try await client.upload(DocumentPDF.pages(1), to: b).status == 201, "B's quota is its own")
        }
    }

    @Test("beyond maxConcurrentUploads an upload is refused with server_busy at once, before its body is read")
    func concurrentUploads() async throws {
        let scripts = try DocumentTemporaryDirectory()
        defer { scripts.remove() }
        var settings = DocumentServer.settings()
        settings.maxConcurrentUploads = 1
        try await DocumentServer.run(settings: settings, converters: [try scripts.gatedConverter(name: "slow")]) { client, _, _ in
            let meeting = try await client.createMeeting()
            let documents = "/v1/meetings/\(meeting.id)/documents"
            async let first = client.send("POST", documents, token: meeting.hostToken,
                                          headers: ["Content-Type": "application/pdf", "X-Parley-Upload": "up-1"], body: DocumentPDF.pages(3))
            // The first is in progress once it reports converting, and stays so until its pages are let through.
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline {
                let polled = try await client.send("GET", "/v1/meetings/\(meeting.id)/uploads/up-1", token: meeting.hostToken)
                if polled.status == 200, polled.text.contains("converting") { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            let refused = try await client.upload(DocumentImages.png, to: meeting, contentType: "image/png")
            #expect(refused.status == 503 && refused.error?.code == "server_busy", "\(refused.text)")
            #expect(refused.error?.message.contains("being uploaded") == true)

            // A head announcing 10 MiB, and not a byte of it: answered all the same.
            let raw = try RawConnection(port: try #require(URL(string: client.base)?.port))
            try raw.send("POST \(documents) HTTP/1.1\r\nHost: parley\r\nAuthorization: Bearer \(meeting.hostToken)\r\n"
                + "Content-Type: application/pdf\r\nContent-Length: \(10 << 20)\r\n\r\n")
            defer { raw.close() }
            let answer = await raw.readResponse()
            #expect(answer.hasPrefix("HTTP/1.1 503") && answer.contains("server_busy"), "\(answer.prefix(400).debugDescription)")

            for page in 1...3 { scripts.open(page: page) }
            #expect(try await first.status == 201)
            #expect(try await client.upload(DocumentImages.png, to: meeting, contentType: "image/png").status == 201, "the place is free again")
        }
    }
}

/// The progress report a page reads while its upload converts (`GET …/uploads/{upload}`).
@Suite("Document upload progress", MachineLoad.server, .serialized, .timeLimit(.minutes(2)))
struct DocumentProgressTests {
    @Test("while a PDF converts its uploader sees page 1, 2 and 3 of 3 in turn; another participant sees nothing; it ends with the upload")
    func pageByPage() async throws {
        let scripts = try DocumentTemporaryDirectory()
        defer { scripts.remove() }
        let slow = try scripts.gatedConverter(name: "slow")
        try await DocumentServer.run(settings: DocumentServer.settings(), converters: [slow]) { client, _, _ in
            let meeting = try await client.createMeeting()
            let path = "/v1/meetings/\(meeting.id)/uploads/up-1"
            #expect(try await client.send("GET", path, token: meeting.hostToken).error?.code == "unknown_upload", "not started yet")
            let issued = try await client.send("POST", "/v1/meetings/\(meeting.id)/tokens", headers: ["Content-Type": "application/json"],
                                               body: Array(#"{"name": "Other"}"#.utf8))
            let other = try #require((try JSONSerialization.jsonObject(with: issued.body) as? [String: Any])?["token"] as? String)

            async let answer = client.send("POST", "/v1/meetings/\(meeting.id)/documents", token: meeting.hostToken,
                                           headers: ["Content-Type": "application/pdf", "X-Parley-Upload": "up-1"], body: DocumentPDF.pages(3))
            var seen: [UploadProgress.Report] = []
            var othersSaw: [Int] = []
            /// Polls until the report is `wanted` (every report on the way is kept), at most 20 s.
            func awaitReport(_ wanted: UploadProgress.Report) async throws {
                let deadline = ContinuousClock.now + .seconds(20)
                while ContinuousClock.now < deadline, seen.last != wanted {
                    let polled = try await client.send("GET", path, token: meeting.hostToken)
                    if polled.status == 200, let report = try? JSONDecoder().decode(UploadProgress.Report.self, from: polled.body),
                       seen.last != report {
                        seen.append(report)
                    }
                    othersSaw.append(try await client.send("GET", path, token: other).status)
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
            for page in 1...3 {
                try await awaitReport(.converting(page: page, of: 3))
                scripts.open(page: page)
            }
            let response = try await answer
            #expect(response.status == 201, "\(response.text)")
            let pages = seen.filter { $0.state == "converting" }
            #expect(pages == [.converting(page: 1, of: 3), .converting(page: 2, of: 3), .converting(page: 3, of: 3)], "\(seen)")
            #expect(Set(othersSaw) == [404], "another participant's polls: \(othersSaw)")
            #expect(try await client.send("GET", path, token: meeting.hostToken).error?.code == "unknown_upload", "gone once answered")
        }
    }

    @Test("upload ids are short and plain; anything else is simply not tracked")
    func uploadIDs() {
        #expect(UploadProgress.isValidID("up-3kq9x0w2hc"))
        #expect(UploadProgress.isValidID("A_b-9"))
        #expect(!UploadProgress.isValidID(""))
        #expect(!UploadProgress.isValidID(String(repeating: "a", count: 65)))
        #expect(!UploadProgress.isValidID("../x"))
        #expect(!UploadProgress.isValidID("a b"))
    }
}

/// Carries a result from one server's run to the next.
final class DocumentRestartCarry: Sendable {
    private let value = Mutex<(DocumentMeeting, [String])?>(nil)
    func set(_ meeting: DocumentMeeting, _ pages: [String]) { value.withLock { $0 = (meeting, pages) } }
    func get() -> (DocumentMeeting, [String])? { value.withLock { $0 } }
}

/// Broken and hostile PDFs found while writing the converters, kept as regression tests:
/// each gets a clean answer (a document, or a JSON refusal), never a server error, and
/// leaves nothing running or on disk.
@Suite("Document malformed inputs", .serialized, .timeLimit(.minutes(2)))
struct DocumentMalformedInputTests {
    static let catalog = DocumentPDF.object("<< /Type /Catalog /Pages 2 0 R >>")

    /// A page tree whose root lists itself as a kid: pdftoppm fails on the second "page"
    /// ("Loop in Pages tree"), and mutool refuses the document ("cycle in page tree").
    static let pageTreeLoop = DocumentPDF.build([
        catalog,
        DocumentPDF.object("<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>"),
        DocumentPDF.object("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 100 100] >>"),
    ])

    /// A page tree that claims a million pages and holds one: pdfinfo fails (exit 99), and
    /// `mutool info` believes the claim.
    static let lyingPageCount = DocumentPDF.build([
        catalog,
        DocumentPDF.object("<< /Type /Pages /Kids [3 0 R] /Count 1000000 >>"),
        DocumentPDF.object("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 100 100] >>"),
    ])

    /// 100,000 nested arrays in a page dictionary: mupdf reports "exception stack overflow".
    static let deepNesting = DocumentPDF.build([
        catalog,
        DocumentPDF.object("<< /Type /Pages /Kids [3 0 R] /Count 1 >>"),
        DocumentPDF.object("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 100 100] /Junk "
            + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + " >>"),
    ])

    @Test("a page tree loop, a lying page count and deep nesting each get a clean, specific answer")
    func knownOddities() async throws {
        try await DocumentServer.run(settings: DocumentServer.settings(timeoutSeconds: 5)) { client, log, data in
            let meeting = try await client.createMeeting()
            let loop = try await client.upload(Self.pageTreeLoop, to: meeting)
            #expect(loop.status == 422)
            #expect(loop.error?.code == "conversion_failed", "\(loop.text)")
            #expect(log.contains("cycle in page tree"), "the log has mupdf's reason")

            let lying = try await client.upload(Self.lyingPageCount, to: meeting)
            #expect(lying.status == 422)
            #expect(lying.error?.code == "too_many_pages", "mupdf counts the claimed pages: \(lying.text)")
            #expect(log.contains("pdfinfo failed with exit status 99"), "\(log.all)")

            let deep = try await client.upload(Self.deepNesting, to: meeting)
            #expect(deep.status == 201, "\(deep.text)")
            #expect(await documentProcessesLeft(mentioning: data).isEmpty)
            #expect(documentFiles(under: data + "/documents/.incoming").isEmpty)
        }
    }

    @Test("PDFs with random bytes changed get a document or a JSON refusal, never a server error")
    func corruptedPDFs() async throws {
        var random = DocumentSeededRandom(seed: 0x5eed_d0c5)
        let original = DocumentPDF.pages(3)
        let variants = (0..<16).map { round -> [UInt8] in
            var bytes = original
            if round % 4 == 3 {
                return Array(bytes.prefix(Int(random.next() % UInt64(bytes.count))))   // truncated
            }
            for _ in 0..<(1 + round) {
                bytes[Int(random.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: random.next())
            }
            return bytes
        }
        try await DocumentServer.run(settings: DocumentServer.settings(timeoutSeconds: 2)) { client, _, data in
            let meeting = try await client.createMeeting()
            for (round, bytes) in variants.enumerated() {
                let response = try await client.upload(bytes, to: meeting)
                #expect([201, 415, 422].contains(response.status), "round \(round): \(response.status) \(response.text)")
                if response.status == 201 {
                    let uploaded = try JSONDecoder().decode(UploadedDocument.self, from: response.body)
                    for page in uploaded.pages {
                        #expect(DocumentKind.sniff(Array(try await client.page(page, of: meeting).body)) == .png)
                    }
                } else {
                    #expect(response.error != nil, "round \(round): a JSON error")
                }
            }
            #expect(await documentProcessesLeft(mentioning: data).isEmpty)
            #expect(documentFiles(under: data + "/documents/.incoming").isEmpty)
        }
    }
}

/// SplitMix64: the same corruptions on every run.
struct DocumentSeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
