@testable import ParleyWeb
import Testing

@Suite("Document rules")
struct DocumentRulesTests {
    @Test("an upload is what its first bytes say, whatever its name or type")
    func sniffing() throws {
        #expect(DocumentKind.sniff(DocumentPDF.pages(1)) == .pdf)
        #expect(DocumentKind.sniff(DocumentImages.png) == .png)
        #expect(DocumentKind.sniff(try documentFixture("page.jpg")) == .jpeg)
        #expect(DocumentKind.sniff(Array("Quarterly figures, see attached .pdf\n".utf8)) == nil)
        #expect(DocumentKind.sniff(Array("hello %PDF-1.4 in a text file".utf8)) == nil, "%PDF- must open the file")
        #expect(DocumentKind.sniff([UInt8]()) == nil)
        #expect(DocumentKind.sniff(Array(DocumentImages.png.prefix(12))) == nil, "a PNG signature without its IHDR")
        #expect(DocumentKind.sniff([0xFF, 0xD8]) == nil, "a JPEG start of image without a marker")
        #expect(DocumentKind.sniff(Array("PK\u{3}\u{4}".utf8)) == nil, "a .docx (zip)")
    }

    @Test("document and page ids are a prefix and 16 lowercase letters or digits, nothing else")
    func identifiers() {
        #expect(DocumentIDs.isPageID("pg-0123456789abcdef"))
        #expect(DocumentIDs.isDocumentID("d-0123456789abcdef"))
        #expect(!DocumentIDs.isPageID("d-0123456789abcdef"))
        #expect(!DocumentIDs.isPageID("pg-0123456789abcde"))
        #expect(!DocumentIDs.isPageID("pg-0123456789abcdefa"))
        #expect(!DocumentIDs.isPageID("pg-0123456789ABCDEF"))
        #expect(!DocumentIDs.isPageID("pg-../../keys/token"))
        #expect(!DocumentIDs.isPageID("pg-01234567.9abcdef"))
        #expect(!DocumentIDs.isPageID(""))
        #expect(DocumentIDs.isSafeMeetingID("m-3kq9x0w2hc1zabcd"))
        #expect(!DocumentIDs.isSafeMeetingID(".."))
        #expect(!DocumentIDs.isSafeMeetingID("a/b"))
        #expect(!DocumentIDs.isSafeMeetingID(""))
        #expect(!DocumentIDs.isSafeMeetingID(String(repeating: "a", count: 65)))
    }

    @Test("a title is the decoded file name, without control characters, at most 200 characters, else Document")
    func titles() {
        #expect(DocumentTitle.from(header: nil) == "Document")
        #expect(DocumentTitle.from(header: "") == "Document")
        #expect(DocumentTitle.from(header: "%20%20") == "Document")
        #expect(DocumentTitle.from(header: "Q3%20r%C3%A9sum%C3%A9.pdf") == "Q3 résumé.pdf")
        #expect(DocumentTitle.from(header: "a%0Ab%00c%E2%80%AEd") == "abcd", "newline, NUL and a right-to-left override go")
        #expect(DocumentTitle.from(header: "100%") == "100%", "kept as sent when it is not percent-encoding")
        #expect(DocumentTitle.from(header: String(repeating: "x", count: 500)).count == 200)
    }

    @Test("the page count is the Pages line of pdfinfo or mutool info")
    func pageCount() {
        #expect(PageCountOutput.parse("Producer:        x\nPages:           12\nEncrypted:       no\n") == 12)
        #expect(PageCountOutput.parse("file.pdf:\n\nPDF-1.4\n\nPages: 3\n\nRetrieving info from pages 1-1...\n") == 3)
        #expect(PageCountOutput.parse("Syntax Error: Couldn't read xref table\n") == nil)
        #expect(PageCountOutput.parse("Pages: lots\n") == nil)
        #expect(PageCountOutput.parse("") == nil)
    }

    @Test("If-None-Match matches the page's tag, in a list, weak, or as *")
    func entityTags() {
        let tag = "\"pg-0123456789abcdef\""
        #expect(EntityTags.matches(ifNoneMatch: tag, etag: tag))
        #expect(EntityTags.matches(ifNoneMatch: "\"other\", \(tag)", etag: tag))
        #expect(EntityTags.matches(ifNoneMatch: "W/\(tag)", etag: tag))
        #expect(EntityTags.matches(ifNoneMatch: "*", etag: tag))
        #expect(!EntityTags.matches(ifNoneMatch: nil, etag: tag))
        #expect(!EntityTags.matches(ifNoneMatch: "\"pg-0123456789abcdee\"", etag: tag))
        #expect(!EntityTags.matches(ifNoneMatch: "pg-0123456789abcdef", etag: tag), "an unquoted tag is not the tag")
    }

    @Test("tools are found on PATH in order; an absolute path is used as is; anything else is not found")
    func toolLookup() {
        let executables: Set<String> = ["/opt/bin/mutool", "/usr/bin/mutool", "/usr/bin/pdftoppm", "/tmp/fake"]
        let isExecutable = { executables.contains($0) }
        #expect(ToolLocator.locate("mutool", searchPath: "/opt/bin:/usr/bin", isExecutable: isExecutable) == "/opt/bin/mutool")
        #expect(ToolLocator.locate("pdftoppm", searchPath: "/opt/bin:/usr/bin", isExecutable: isExecutable) == "/usr/bin/pdftoppm")
        #expect(ToolLocator.locate("pdftoppm", searchPath: "/opt/bin", isExecutable: isExecutable) == nil)
        #expect(ToolLocator.locate("pdftoppm", searchPath: nil, isExecutable: isExecutable) == "/usr/bin/pdftoppm")
        #expect(ToolLocator.locate("mutool", searchPath: "relative:/usr/bin", isExecutable: isExecutable) == "/usr/bin/mutool",
                "relative PATH entries are skipped")
        #expect(ToolLocator.locate("/tmp/fake", searchPath: "", isExecutable: isExecutable) == "/tmp/fake")
        #expect(ToolLocator.locate("/tmp/missing", searchPath: "/usr/bin", isExecutable: isExecutable) == nil)
        #expect(ToolLocator.locate("bin/mutool", searchPath: "/opt:/usr", isExecutable: { _ in true }) == nil)
        #expect(ToolLocator.locate("", searchPath: "/usr/bin", isExecutable: { _ in true }) == nil)
    }

    @Test("every refusal has its documented status and stable code")
    func errorContract() {
        let table: [(DocumentError, Int, String)] = [
            (.missingToken, 401, "invalid_token"),
            (.invalidToken("x"), 401, "invalid_token"),
            (.tokenExpired("x"), 401, "token_expired"),
            (.wrongMeeting, 403, "wrong_meeting"),
            (.unknownPage, 404, "unknown_page"),
            (.uploadTooLarge(limitBytes: 1 << 20), 413, "upload_too_large"),
            (.unsupportedDocument("x"), 415, "unsupported_document"),
            (.tooManyPages(count: 9, limit: 5), 422, "too_many_pages"),
            (.conversionFailed(converters: ["a", "b"]), 422, "conversion_failed"),
            (.busy, 503, "server_busy"),
            (.storageFailed, 500, "internal_error"),
        ]
        for (error, status, code) in table {
            #expect(error.status == status && error.code == code, "\(error)")
            #expect(error.apiError.status.code == status && error.apiError.code == code)
        }
        #expect(DocumentError.uploadTooLarge(limitBytes: 25 << 20).message.contains("25 MiB"))
        #expect(DocumentError.tooManyPages(count: 9, limit: 5).message.contains("9 pages"))
        #expect(DocumentError.conversionFailed(converters: ["poppler", "mupdf"]).message.contains("(poppler, mupdf) failed"))
    }
}

@Suite("Conversion plan")
struct DocumentConversionPlanTests {
    let converters = ["poppler", "mupdf"]

    @Test("the first converter counts, then renders every page")
    func firstConverterWorks() {
        var plan = ConversionPlan(converters: converters, maxPages: 5)
        #expect(plan.start() == .run(.count(converter: 0)))
        #expect(plan.finished(.counted(3)) == .run(.render(converter: 0, pages: 3)))
        #expect(plan.finished(.rendered(3)) == .succeed(converter: 0, pages: 3))
        #expect(plan.failures.isEmpty)
    }

    @Test("a converter that fails to count or to render hands over to the next, which starts over")
    func fallback() {
        var plan = ConversionPlan(converters: converters, maxPages: 5)
        _ = plan.start()
        #expect(plan.finished(.failed("pdfinfo crashed (signal 11)")) == .run(.count(converter: 1)))
        #expect(plan.finished(.counted(2)) == .run(.render(converter: 1, pages: 2)))
        #expect(plan.finished(.rendered(2)) == .succeed(converter: 1, pages: 2))
        #expect(plan.failures.map(\.converter) == ["poppler"])

        var renderFails = ConversionPlan(converters: converters, maxPages: 5)
        _ = renderFails.start()
        _ = renderFails.finished(.counted(2))
        #expect(renderFails.finished(.failed("pdftoppm ran past the 1 s limit and was killed")) == .run(.count(converter: 1)))
    }

    @Test("a renderer that leaves pages out has failed")
    func missingPages() {
        var plan = ConversionPlan(converters: converters, maxPages: 5)
        _ = plan.start()
        _ = plan.finished(.counted(3))
        #expect(plan.finished(.rendered(2)) == .run(.count(converter: 1)))
        #expect(plan.failures.first?.reason == "it rendered 2 of 3 pages")
    }

    @Test("too many pages ends the plan at once: the next converter would count the same pages")
    func tooManyPages() {
        var plan = ConversionPlan(converters: converters, maxPages: 5)
        _ = plan.start()
        #expect(plan.finished(.counted(6)) == .fail(.tooManyPages(count: 6, limit: 5)))

        var second = ConversionPlan(converters: converters, maxPages: 5)
        _ = second.start()
        _ = second.finished(.failed("pdfinfo failed"))
        #expect(second.finished(.counted(1_000)) == .fail(.tooManyPages(count: 1_000, limit: 5)))
    }

    @Test("exactly the limit is allowed")
    func limitIsInclusive() {
        var plan = ConversionPlan(converters: converters, maxPages: 5)
        _ = plan.start()
        #expect(plan.finished(.counted(5)) == .run(.render(converter: 0, pages: 5)))
    }

    @Test("when every converter fails, the upload fails and the log has each reason in order")
    func allFail() {
        var plan = ConversionPlan(converters: converters, maxPages: 5)
        _ = plan.start()
        _ = plan.finished(.failed("A"))
        _ = plan.finished(.counted(0))
        #expect(plan.failures.map(\.reason) == ["A", "it found no pages"])
        var last = ConversionPlan(converters: converters, maxPages: 5)
        _ = last.start()
        _ = last.finished(.failed("A"))
        #expect(last.finished(.failed("B")) == .fail(.conversionFailed(converters: ["poppler", "mupdf"])))
        #expect(last.failures.map(\.reason) == ["A", "B"])
    }

    @Test("with no converter configured, the upload fails at once")
    func noConverters() {
        var plan = ConversionPlan(converters: [], maxPages: 5)
        #expect(plan.start() == .fail(.conversionFailed(converters: [])))
    }
}

@Suite("Conversion slots")
struct DocumentConversionSlotsTests {
    @Test("conversions past the running and waiting bounds are refused as busy, and waiters run in turn")
    func bounded() async throws {
        let slots = ConversionSlots(running: 1, waiting: 1)
        let (gate, open) = AsyncStream<Void>.makeStream()
        let (started, startedSink) = AsyncStream<Int>.makeStream()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                _ = try await slots.withSlot {
                    _ = startedSink.yield(1)
                    for await _ in gate { break }
                }
            }
            var iterator = started.makeAsyncIterator()
            #expect(await iterator.next() == 1)
            group.addTask { _ = try await slots.withSlot { _ = startedSink.yield(2) } }
            for _ in 0..<1_000 where await slots.waitingCount == 0 { try await Task.sleep(for: .milliseconds(2)) }
            #expect(await slots.waitingCount == 1)
            var refused = false
            do {
                _ = try await slots.withSlot { _ = startedSink.yield(3) }
            } catch {
                #expect(error as? DocumentError == .busy)
                refused = true
            }
            #expect(refused)
            open.yield()
            #expect(await iterator.next() == 2, "the waiter runs once the slot is free")
            try await group.waitForAll()
        }
    }
}
