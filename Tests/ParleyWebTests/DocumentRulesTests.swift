import ParleyCore
@testable import ParleyWeb
import Synchronization
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
            (.tooManyUploads, 503, "server_busy"),
            (.tooManyDeletions, 503, "server_busy"),
            (.sandboxUnavailable, 503, "converter_sandbox_unavailable"),
            (.notPresenter, 403, "not_presenter"),
            (.meetingEnded, 409, "meeting_ended"),
            (.unknownMeeting, 404, "unknown_meeting"),
            (.quotaExceeded(limitBytes: 200 << 20, usedBytes: 1), 413, "meeting_quota_exceeded"),
            (.unknownDocument, 404, "unknown_document"),
            (.documentShown, 409, "document_shown"),
            (.storageFailed, 500, "internal_error"),
        ]
        for (error, status, code) in table {
            #expect(error.status == status && error.code == code, "\(error)")
            #expect(error.apiError.status.code == status && error.apiError.code == code)
        }
        #expect(DocumentError.uploadTooLarge(limitBytes: 25 << 20).message.contains("25 MiB"))
        #expect(DocumentError.tooManyPages(count: 9, limit: 5).message.contains("9 pages"))
        #expect(DocumentError.conversionFailed(converters: ["poppler", "mupdf"]).message.contains("(poppler, mupdf) failed"))
        #expect(DocumentError.quotaExceeded(limitBytes: 200 << 20, usedBytes: 150 << 20 + 300 << 10).message
            .contains("at most 200 MiB and 150.3 MiB are taken"))
    }
}

@Suite("Who may change a meeting's documents")
struct DocumentPermissionTests {
    static let host = ParticipantID("p-host"), ada = ParticipantID("p-ada"), bo = ParticipantID("p-bo")

    /// A meeting with a host (presenting), and Ada and Bo as attendees.
    static func meeting() throws -> Meeting {
        var meeting = Meeting(id: MeetingID("m-1"), title: "Documents")
        var seq: Seq = 0
        for (id, name, role) in [(host, "Host", Role.host), (ada, "Ada", .attendee), (bo, "Bo", .attendee)] {
            seq += 1
            try meeting.apply(.join(participant: id, name: name, role: role), by: .system, at: 0, seq: seq)
        }
        return meeting
    }

    func allowed(_ participant: ParticipantID, _ tokenRole: Role, in meeting: Meeting) -> DocumentError? {
        do {
            try DocumentPermission.check(participant, tokenRole: tokenRole, in: meeting)
            return nil
        } catch {
            return error
        }
    }

    @Test("in the meeting, the host and the presenter may, whatever their tokens say; attendees may not")
    func present() throws {
        var meeting = try Self.meeting()
        #expect(allowed(Self.host, .host, in: meeting) == nil)
        #expect(allowed(Self.ada, .attendee, in: meeting) == .notPresenter)
        #expect(allowed(Self.ada, .presenter, in: meeting) == .notPresenter, "the meeting's role, not the token's")
        try meeting.apply(.setPresenter(to: Self.ada), by: .participant(Self.host), at: 0, seq: 4)
        #expect(allowed(Self.ada, .attendee, in: meeting) == nil, "made presenter")
        #expect(allowed(Self.host, .host, in: meeting) == nil, "the host, not presenting")
        try meeting.apply(.handOverHost(to: Self.bo), by: .participant(Self.host), at: 0, seq: 5)
        #expect(allowed(Self.host, .host, in: meeting) == .notPresenter, "handed over")
        #expect(allowed(Self.bo, .attendee, in: meeting) == nil, "the new host")
    }

    @Test("not in the meeting, one is what one's token would make one on joining now: the host, or the presenter only while nobody presents")
    func absent() throws {
        var meeting = try Self.meeting()
        let newcomer = ParticipantID("p-new")
        #expect(allowed(newcomer, .attendee, in: meeting) == .notPresenter)
        #expect(allowed(newcomer, .presenter, in: meeting) == .notPresenter, "the host presents: joining would not make one presenter")
        #expect(allowed(newcomer, .host, in: meeting) == .notPresenter, "a second host token joins as an attendee")
        try meeting.apply(.leave(participant: Self.host), by: .system, at: 0, seq: 4)
        #expect(allowed(Self.host, .attendee, in: meeting) == .notPresenter, "gone, with an attendee's token")
        #expect(allowed(Self.ada, .attendee, in: meeting) == nil, "Ada inherited the host role")
        let empty = Meeting(id: MeetingID("m-2"), title: "Nobody yet")
        #expect(allowed(newcomer, .host, in: empty) == nil, "the host may upload before joining")
        #expect(allowed(newcomer, .presenter, in: empty) == nil, "nobody presents: joining would make one presenter")
        #expect(allowed(newcomer, .attendee, in: empty) == .notPresenter)
        var locked = empty
        try locked.apply(.join(participant: Self.ada, name: "Ada", role: .attendee), by: .system, at: 0, seq: 1)
        try locked.apply(.join(participant: Self.host, name: "Host", role: .host), by: .system, at: 0, seq: 2)
        try locked.apply(.setPresenter(to: Self.ada), by: .participant(Self.host), at: 0, seq: 3)
        try locked.apply(.leave(participant: Self.ada), by: .system, at: 0, seq: 4)
        try locked.apply(.leave(participant: Self.host), by: .system, at: 0, seq: 5)
        #expect(allowed(newcomer, .presenter, in: locked) == nil, "everyone left: nobody presents")
        try locked.apply(.join(participant: Self.host, name: "Host", role: .host), by: .system, at: 0, seq: 6)
        try locked.apply(.lock, by: .participant(Self.host), at: 0, seq: 7)
        try locked.apply(.leave(participant: Self.host), by: .system, at: 0, seq: 8)
        #expect(allowed(newcomer, .presenter, in: locked) == .notPresenter, "a locked meeting would not let a presenter's token in")
        #expect(allowed(newcomer, .host, in: locked) == nil, "the host may always come back")
    }

    @Test("a presenter's token whose holder has not joined may not, once the host has made someone else presenter")
    func presenterTokenAfterAnotherIsMadePresenter() throws {
        var meeting = try Self.meeting()
        try meeting.apply(.setPresenter(to: Self.bo), by: .participant(Self.host), at: 0, seq: 4)
        let alice = ParticipantID("p-alice")
        #expect(allowed(alice, .presenter, in: meeting) == .notPresenter)
        // Joined, the model agrees: she has the presenter role but is not the presenter, and
        // may not add a document.
        try meeting.apply(.join(participant: alice, name: "Alice", role: .presenter), by: .system, at: 0, seq: 5)
        #expect(meeting.participant(alice)?.role == .presenter && meeting.participant(alice)?.isPresenter == false)
        #expect(throws: Rejection.self) {
            try meeting.apply(.addDocument(id: DocumentID("d-1"), title: "One", pages: [PageID("pg-1")]), by: .participant(alice), at: 0, seq: 6)
        }
        #expect(allowed(alice, .presenter, in: meeting) == .notPresenter)
    }

    @Test("for anyone, in the meeting or not, with any token, the answer is the model's: whether their addDocument would be accepted once their token's join is applied")
    func agreesWithTheModel() throws {
        let newcomer = ParticipantID("p-new")
        var states: [(String, Meeting)] = [("empty", Meeting(id: MeetingID("m-1"), title: "Documents"))]
        var meeting = try Self.meeting()
        states.append(("host presenting", meeting))
        try meeting.apply(.setPresenter(to: Self.bo), by: .participant(Self.host), at: 0, seq: 4)
        states.append(("Bo presenting", meeting))
        try meeting.apply(.leave(participant: Self.bo), by: .system, at: 0, seq: 5)
        states.append(("Bo left", meeting))
        try meeting.apply(.leave(participant: Self.host), by: .system, at: 0, seq: 6)
        states.append(("host left", meeting))
        try meeting.apply(.lock, by: .participant(Self.ada), at: 0, seq: 7)
        states.append(("locked", meeting))
        var attendees = Meeting(id: MeetingID("m-2"), title: "Attendees")
        try attendees.apply(.join(participant: Self.ada, name: "Ada", role: .attendee), by: .system, at: 0, seq: 1)
        states.append(("attendees only", attendees))
        var full = Meeting(id: MeetingID("m-3"), title: "Full", settings: MeetingSettings(maxParticipants: 1))
        try full.apply(.join(participant: Self.ada, name: "Ada", role: .attendee), by: .system, at: 0, seq: 1)
        states.append(("full", full))
        var checked = 0
        for (label, state) in states {
            for participant in [Self.host, Self.ada, Self.bo, newcomer] {
                for role in Role.allCases {
                    var model = state
                    if model.participant(participant).map({ $0.presence == .left }) ?? true {
                        try? model.apply(.join(participant: participant, name: "Someone", role: role), by: .system, at: 0, seq: 100)
                    }
                    let accepted = (try? model.apply(.addDocument(id: DocumentID("d-check"), title: "Check", pages: [PageID("pg-check")]),
                                                     by: .participant(participant), at: 0, seq: 101)) != nil
                    #expect((allowed(participant, role, in: state) == nil) == accepted, "\(label): \(participant) with a \(role) token")
                    checked += 1
                }
            }
        }
        #expect(checked == states.count * 4 * Role.allCases.count)
    }

    @Test("an ended meeting takes no documents; the document shown cannot be deleted, any other can")
    func endedAndShown() throws {
        var meeting = try Self.meeting()
        try meeting.apply(.addDocument(id: DocumentID("d-1"), title: "One", pages: [PageID("pg-1"), PageID("pg-2")]),
                          by: .participant(Self.host), at: 0, seq: 4)
        #expect(throws: DocumentError.documentShown) { try DocumentPermission.checkDeletable(pages: ["pg-2", "pg-1"], in: meeting) }
        #expect(throws: Never.self) { try DocumentPermission.checkDeletable(pages: ["pg-3"], in: meeting) }
        #expect(throws: Never.self) { try DocumentPermission.checkDeletable(pages: ["pg-1"], in: Meeting(id: MeetingID("m-2"), title: "x")) }
        try meeting.apply(.end, by: .participant(Self.host), at: 0, seq: 5)
        #expect(allowed(Self.host, .host, in: meeting) == .meetingEnded)
    }
}

@Suite("Upload limits")
struct UploadLimitTests {
    @Test("two uploads to one meeting cannot both take the last of its quota; another meeting's are apart")
    func sharedQuota() {
        var ledger = QuotaLedger()
        ledger.begin(1, meeting: "m-a")
        ledger.begin(2, meeting: "m-a")
        ledger.begin(3, meeting: "m-b")
        // Both read the store (600 of 1000 taken) before either claims.
        let version = ledger.version(of: "m-a")
        #expect(ledger.claim(1, bytes: 300, storedBytes: 600, readAt: version, limitBytes: 1000) == .fits)
        #expect(ledger.claim(2, bytes: 300, storedBytes: 600, readAt: version, limitBytes: 1000) == .exceeded(usedBytes: 900))
        #expect(ledger.claim(2, bytes: 100, storedBytes: 600, readAt: version, limitBytes: 1000) == .fits, "exactly full is fine")
        #expect(ledger.claim(3, bytes: 1000, storedBytes: 0, readAt: ledger.version(of: "m-b"), limitBytes: 1000) == .fits)
        // Upload 1 grows its claim (its pages are larger than its source): 1 and 2's others count, not its own.
        #expect(ledger.claim(1, bytes: 301, storedBytes: 600, readAt: version, limitBytes: 1000) == .exceeded(usedBytes: 700))
        #expect(ledger.claim(1, bytes: 200, storedBytes: 600, readAt: version, limitBytes: 1000) == .fits)
    }

    @Test("a reading of the store taken before another upload finished is stale; the ledger forgets a meeting with no upload left")
    func staleReadings() {
        var ledger = QuotaLedger()
        ledger.begin(1, meeting: "m-a")
        ledger.begin(2, meeting: "m-a")
        let before = ledger.version(of: "m-a")
        #expect(ledger.claim(1, bytes: 500, storedBytes: 0, readAt: before, limitBytes: 1000) == .fits)
        // 1 stores its 500 bytes and ends: 2's reading (0 stored) no longer counts them.
        ledger.end(1)
        #expect(ledger.claim(2, bytes: 600, storedBytes: 0, readAt: before, limitBytes: 1000) == .stale)
        #expect(ledger.claim(2, bytes: 600, storedBytes: 500, readAt: ledger.version(of: "m-a"), limitBytes: 1000)
            == .exceeded(usedBytes: 500))
        let beforeDeletion = ledger.version(of: "m-a")
        ledger.changed("m-a")
        #expect(ledger.claim(2, bytes: 600, storedBytes: 0, readAt: beforeDeletion, limitBytes: 1000) == .stale)
        #expect(ledger.trackedMeetings == 1)
        ledger.end(2)
        #expect(ledger.trackedMeetings == 0)
    }

    @Test("the quota reads the store again after a stale reading, and gives up with server_busy if it never settles")
    func quotaRereads() async {
        let quota = DocumentQuota(limitBytes: 1000)
        let first = quota.begin(meeting: "m-a")
        let second = quota.begin(meeting: "m-a")
        let readings = ReadingCounter()
        // While `second` reads, `first` ends once: one stale reading, then a good one.
        await #expect(throws: Never.self) {
            try await quota.claim(second, meeting: "m-a", bytes: 100) { () async throws(DocumentError) in
                if readings.next() == 1 { quota.end(first) }
                return 0
            }
        }
        #expect(readings.count == 2)
        await #expect(throws: DocumentError.tooManyUploads) {
            try await quota.claim(second, meeting: "m-a", bytes: 100) { () async throws(DocumentError) in
                quota.changed(meeting: "m-a")
                return 0
            }
        }
        await #expect(throws: DocumentError.quotaExceeded(limitBytes: 1000, usedBytes: 950)) {
            try await quota.claim(second, meeting: "m-a", bytes: 100) { () async throws(DocumentError) in 950 }
        }
        quota.end(second)
        #expect(quota.trackedMeetings == 0)
    }

    @Test("the upload gate lets in its limit and refuses the next at once, until one leaves")
    func gate() throws {
        let gate = UploadGate(limit: 2)
        try gate.enter()
        try gate.enter()
        #expect(throws: DocumentError.tooManyUploads) { try gate.enter() }
        gate.leave()
        try gate.enter()
        #expect(gate.count == 2)
        // The deletions' gate says what is busy.
        let deletions = UploadGate(limit: 1, refusal: .tooManyDeletions)
        try deletions.enter()
        #expect(throws: DocumentError.tooManyDeletions) { try deletions.enter() }
    }
}

/// Counts calls, from any task.
final class ReadingCounter: Sendable {
    private let value = Mutex(0)
    func next() -> Int { value.withLock { $0 += 1; return $0 } }
    var count: Int { value.withLock { $0 } }
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
