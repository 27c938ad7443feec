@testable import ParleyCore
import Testing

@Suite("Rules: documents, whiteboards, pages and annotations")
struct DocumentRuleTests {
    static func stroke(_ id: StrokeID, on page: PageID = "p1", text: String? = nil, color: String = "#00ff7F",
                       width: Double = 2, points: [Point] = [Point(x: 0, y: 0), Point(x: 3.5, y: -1)]) -> MeetingOp {
        .draw(page: page, stroke: id, tool: .pen, color: color, width: width, points: points, text: text)
    }

    @Test("the presenter or the host adds a document; the first page becomes current")
    func addDocument() {
        let after = expectAccepted(.standard(), .addDocument(id: "deck", title: "Deck", pages: ["p1", "p2"]), by: by(pia))
        #expect(after.documents == [Document(id: "deck", title: "Deck", pages: ["p1", "p2"], isWhiteboard: false)])
        #expect(after.currentPage == "p1")
        let second = expectAccepted(after, .addDocument(id: "notes", title: "", pages: ["n1"]), by: by(hana))
        #expect(second.currentPage == "p1", "adding a document does not move the current page")
        #expect(second.documents.map(\.id) == ["deck", "notes"])
    }

    @Test("addDocument refusals: not presenter, bad ids, title, page count, duplicates")
    func addDocumentRefusals() {
        let meeting = Meeting.withDocuments()
        let tooMany = (0...ModelLimits.pagesPerDocument).map { PageID("x\($0)") }
        let refusals = [
            Refusal("attendee", meeting, .addDocument(id: "d", title: "D", pages: ["x1"]), by: by(ari), .notPresenter),
            Refusal("participant with presenter role but not presenting", meeting
                .applying(.join(participant: "cy", name: "Cy", role: .presenter), by: .system),
                    .addDocument(id: "d", title: "D", pages: ["x1"]), by: by("cy"), .notPresenter),
            Refusal("empty id", meeting, .addDocument(id: "", title: "D", pages: ["x1"]), by: by(pia), .invalidArgument),
            Refusal("id with a slash", meeting, .addDocument(id: "a/b", title: "D", pages: ["x1"]), by: by(pia), .invalidArgument),
            Refusal("title over 200", meeting, .addDocument(id: "d", title: String(repeating: "t", count: 201), pages: ["x1"]), by: by(pia), .invalidArgument),
            Refusal("no pages", meeting, .addDocument(id: "d", title: "D", pages: []), by: by(pia), .invalidArgument),
            Refusal("2,001 pages", meeting, .addDocument(id: "d", title: "D", pages: tooMany), by: by(pia), .invalidArgument),
            Refusal("bad page id", meeting, .addDocument(id: "d", title: "D", pages: ["x 1"]), by: by(pia), .invalidArgument),
            Refusal("document id taken", meeting, .addDocument(id: "deck", title: "D", pages: ["x1"]), by: by(pia), .duplicateID),
            Refusal("page repeated", meeting, .addDocument(id: "d", title: "D", pages: ["x1", "x1"]), by: by(pia), .duplicateID),
            Refusal("page in another document", meeting, .addDocument(id: "d", title: "D", pages: ["x1", "p2"]), by: by(pia), .duplicateID),
        ]
        for refusal in refusals { refusal.check() }
    }

    @Test("a whiteboard starts with one page named '<id>.1'")
    func addWhiteboard() {
        let after = expectAccepted(.standard(), .addWhiteboard(id: "wb", title: "Board"), by: by(pia))
        #expect(after.documents == [Document(id: "wb", title: "Board", pages: ["wb.1"], isWhiteboard: true)])
        #expect(after.currentPage == "wb.1")
        #expect(Meeting.firstWhiteboardPage(of: "wb") == "wb.1")
    }

    @Test("addWhiteboard refusals: not presenter, bad id or title, id taken, first page taken")
    func addWhiteboardRefusals() {
        let meeting = Meeting.withDocuments()
        let pageClash = Meeting.standard().applying(.addDocument(id: "deck", title: "D", pages: ["b.1"]), by: by(pia))
        let refusals = [
            Refusal("attendee", meeting, .addWhiteboard(id: "b", title: "B"), by: by(ben), .notPresenter),
            Refusal("bad id", meeting, .addWhiteboard(id: "b b", title: "B"), by: by(pia), .invalidArgument),
            Refusal("title over 200", meeting, .addWhiteboard(id: "b", title: String(repeating: "t", count: 201)), by: by(pia), .invalidArgument),
            Refusal("id taken", meeting, .addWhiteboard(id: "deck", title: "B"), by: by(pia), .duplicateID),
            Refusal("first page id taken", pageClash, .addWhiteboard(id: "b", title: "B"), by: by(pia), .duplicateID),
        ]
        for refusal in refusals { refusal.check() }
    }

    @Test("the presenter or host adds a page to a whiteboard")
    func addWhiteboardPage() {
        let after = expectAccepted(.withDocuments(), .addWhiteboardPage(document: "wb", page: "wb.2"), by: by(hana))
        #expect(after.documents.last?.pages == ["wb.1", "wb.2"])
    }

    @Test("addWhiteboardPage refusals: not presenter, unknown document, not a whiteboard, bad or taken page id, full")
    func addWhiteboardPageRefusals() {
        let meeting = Meeting.withDocuments()
        var full = meeting
        full.documents[1].pages = (1...ModelLimits.pagesPerDocument).map { PageID("wb.\($0)") }
        let refusals = [
            Refusal("attendee", meeting, .addWhiteboardPage(document: "wb", page: "wb.2"), by: by(ari), .notPresenter),
            Refusal("unknown document", meeting, .addWhiteboardPage(document: "nope", page: "wb.2"), by: by(pia), .unknownDocument),
            Refusal("a slide deck", meeting, .addWhiteboardPage(document: "deck", page: "p3"), by: by(pia), .invalidArgument),
            Refusal("bad page id", meeting, .addWhiteboardPage(document: "wb", page: ""), by: by(pia), .invalidArgument),
            Refusal("page taken", meeting, .addWhiteboardPage(document: "wb", page: "p1"), by: by(pia), .duplicateID),
            Refusal("2,000 pages already", full, .addWhiteboardPage(document: "wb", page: "extra"), by: by(pia), .invalidArgument),
        ]
        for refusal in refusals { refusal.check() }
    }

    @Test("only the presenter turns pages, to any page of any document")
    func turnPage() {
        let after = expectAccepted(.withDocuments(), .turnPage(to: "wb.1"), by: by(pia))
        #expect(after.currentPage == "wb.1")
        let back = expectAccepted(after, .turnPage(to: "p2"), by: by(pia))
        #expect(back.currentPage == "p2")
    }

    @Test("turnPage refusals: a host who is not presenting, an attendee, an unknown page")
    func turnPageRefusals() {
        let meeting = Meeting.withDocuments()
        let refusals = [
            Refusal("host not presenting", meeting, .turnPage(to: "p2"), by: by(hana), .notPresenter),
            Refusal("attendee", meeting, .turnPage(to: "p2"), by: by(ari), .notPresenter),
            Refusal("unknown page", meeting, .turnPage(to: "p9"), by: by(pia), .unknownPage),
        ]
        for refusal in refusals { refusal.check() }
    }

    @Test("anyone present may draw on a page; the stroke records its author")
    func draw() {
        let after = expectAccepted(.withDocuments(), Self.stroke("s1", text: "note"), by: by(ari))
        #expect(after.annotations == [PageAnnotations(page: "p1", strokes: [
            Stroke(id: "s1", author: ari, tool: .pen, color: "#00ff7F", width: 2,
                   points: [Point(x: 0, y: 0), Point(x: 3.5, y: -1)], text: "note"),
        ])])
        // The same stroke id on another page is a different stroke.
        let other = expectAccepted(after, Self.stroke("s1", on: "p2"), by: by(ben))
        #expect(other.annotations.map(\.page) == ["p1", "p2"])
        // Width 100 and 5,000 points are the inclusive limits.
        let maxPoints = Array(repeating: Point(x: 1, y: 1), count: ModelLimits.strokePoints)
        _ = expectAccepted(after, Self.stroke("s2", width: 100, points: maxPoints), by: by(ari))
    }

    @Test("draw refusals: feature off, unknown page, bad stroke id, points, width, colour, text, duplicate stroke")
    func drawRefusals() {
        let meeting = Meeting.withDocuments().applying(Self.stroke("s1"), by: by(ari))
        let noAnnotation = Meeting.withDocuments(settings: MeetingSettings(features: Features(annotation: false)))
        let tooMany = Array(repeating: Point(x: 1, y: 1), count: ModelLimits.strokePoints + 1)
        let refusals = [
            Refusal("annotation off", noAnnotation, Self.stroke("s2"), by: by(pia), .featureDisabled),
            Refusal("unknown page", meeting, Self.stroke("s2", on: "p9"), by: by(ari), .unknownPage),
            Refusal("bad stroke id", meeting, Self.stroke("s 2"), by: by(ari), .invalidArgument),
            Refusal("no points", meeting, Self.stroke("s2", points: []), by: by(ari), .invalidArgument),
            Refusal("5,001 points", meeting, Self.stroke("s2", points: tooMany), by: by(ari), .invalidArgument),
            Refusal("infinite point", meeting, Self.stroke("s2", points: [Point(x: .infinity, y: 0)]), by: by(ari), .invalidArgument),
            Refusal("NaN point", meeting, Self.stroke("s2", points: [Point(x: 0, y: .nan)]), by: by(ari), .invalidArgument),
            Refusal("zero width", meeting, Self.stroke("s2", width: 0), by: by(ari), .invalidArgument),
            Refusal("negative width", meeting, Self.stroke("s2", width: -1), by: by(ari), .invalidArgument),
            Refusal("width over 100", meeting, Self.stroke("s2", width: 100.5), by: by(ari), .invalidArgument),
            Refusal("NaN width", meeting, Self.stroke("s2", width: .nan), by: by(ari), .invalidArgument),
            Refusal("named colour", meeting, Self.stroke("s2", color: "red"), by: by(ari), .invalidArgument),
            Refusal("short colour", meeting, Self.stroke("s2", color: "#12345"), by: by(ari), .invalidArgument),
            Refusal("non-hex colour", meeting, Self.stroke("s2", color: "#12345g"), by: by(ari), .invalidArgument),
            Refusal("empty text", meeting, Self.stroke("s2", text: ""), by: by(ari), .invalidArgument),
            Refusal("stroke id taken on this page", meeting, Self.stroke("s1"), by: by(ben), .duplicateID),
        ]
        for refusal in refusals { refusal.check() }
    }

    @Test("a stroke is erased by its author, the presenter or the host; an emptied page drops its annotations")
    func erase() {
        let meeting = Meeting.withDocuments()
            .applying(Self.stroke("s1"), by: by(ari))
            .applying(Self.stroke("s2"), by: by(ari))
        for eraser in [ari, pia, hana] {
            let after = expectAccepted(meeting, .erase(page: "p1", stroke: "s1"), by: by(eraser))
            #expect(after.annotations.first?.strokes.map(\.id) == ["s2"], "erased by \(eraser)")
        }
        let emptied = meeting
            .applying(.erase(page: "p1", stroke: "s1"), by: by(ari))
            .applying(.erase(page: "p1", stroke: "s2"), by: by(ari))
        #expect(emptied.annotations == [])
        #expect(emptied == .withDocuments())
    }

    @Test("erase refusals: feature off, unknown stroke or page, another attendee's stroke")
    func eraseRefusals() {
        let meeting = Meeting.withDocuments().applying(Self.stroke("s1"), by: by(ari))
        var noAnnotation = meeting
        noAnnotation.settings.features.annotation = false
        let refusals = [
            Refusal("annotation off", noAnnotation, .erase(page: "p1", stroke: "s1"), by: by(ari), .featureDisabled),
            Refusal("unknown stroke", meeting, .erase(page: "p1", stroke: "s9"), by: by(ari), .unknownStroke),
            Refusal("stroke is on another page", meeting, .erase(page: "p2", stroke: "s1"), by: by(ari), .unknownStroke),
            Refusal("another attendee's stroke", meeting, .erase(page: "p1", stroke: "s1"), by: by(ben), .forbidden),
        ]
        for refusal in refusals { refusal.check() }
    }

    @Test("the presenter or host clears a page's annotations, leaving other pages alone")
    func clearPage() {
        let meeting = Meeting.withDocuments()
            .applying(Self.stroke("s1"), by: by(ari))
            .applying(Self.stroke("s2", on: "p2"), by: by(ari))
        let after = expectAccepted(meeting, .clearPage(page: "p1"), by: by(hana))
        #expect(after.annotations.map(\.page) == ["p2"])
        // Clearing a page without annotations is allowed and changes nothing.
        let again = expectAccepted(after, .clearPage(page: "p1"), by: by(pia))
        #expect(again == after)
    }

    @Test("clearPage refusals: feature off, attendee, unknown page")
    func clearPageRefusals() {
        let meeting = Meeting.withDocuments().applying(Self.stroke("s1"), by: by(ari))
        var noAnnotation = meeting
        noAnnotation.settings.features.annotation = false
        let refusals = [
            Refusal("annotation off", noAnnotation, .clearPage(page: "p1"), by: by(pia), .featureDisabled),
            Refusal("attendee", meeting, .clearPage(page: "p1"), by: by(ari), .notPresenter),
            Refusal("unknown page", meeting, .clearPage(page: "p9"), by: by(pia), .unknownPage),
        ]
        for refusal in refusals { refusal.check() }
    }
}
