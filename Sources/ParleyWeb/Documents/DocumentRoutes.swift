import FoundationEssentials
import HTTPTypes
import Hummingbird
import Logging
import ParleyCore
import ParleyServer
import ParleyStore
import ParleyZone

/// Uploads (PDF or image) and page images, for the meeting page.
///
/// - `POST /v1/meetings/{id}/documents`: the body is the file itself;
///   `Authorization: Bearer <join token>`; `X-Parley-Title: <percent-encoded name>`
///   (optional). 201 `{"document", "title", "pages"}`. A PDF becomes one PNG per page, made
///   by separate converter processes under time and memory limits, with a second,
///   independent converter tried when the first fails. An image is one page, kept as is.
/// - `GET /v1/meetings/{id}/pages/{pageId}` with the same kind of token: the image,
///   cacheable forever (a page id never changes content), with an ETag for revalidation.
///
/// - `DELETE /v1/meetings/{id}/documents/{document}` with the same kind of token: removes
///   the document and its pages, freeing the meeting's quota. 204.
///
/// Uploads and deletions are for the meeting's host and presenter only
/// (``DocumentPermission``). Each meeting's documents share `meetingDocumentBytes`
/// (``DocumentQuota``); at most `maxConcurrentUploads` uploads are in progress at once
/// (``UploadGate``), and converters run in the sandbox (``ConverterIsolation``) or, when it
/// is unavailable and the operator did not allow otherwise, uploads are refused.
///
/// - `GET /v1/meetings/{id}/uploads/{upload}` with the same token: while an upload sent
///   with `X-Parley-Upload: <upload>` runs, how far it has got (``UploadProgress/Report``);
///   404 `unknown_upload` before it starts and after it ends.
///
/// Every refusal is a JSON ``APIError`` with a stable code (``DocumentError``). What a
/// client can learn about another meeting's pages is nothing: they are `unknown_page`,
/// exactly like pages that do not exist.
struct DocumentRoutes: Sendable {
    let dataDirectory: String
    /// Where meetings are committed: who is host and presenter is read from there.
    let meetings: any Store
    let tokens: TokenAuthority
    let settings: WebSettings
    let logger: Logger
    let converters: [PDFConverter]
    let runner: ConverterRunner
    let slots: ConversionSlots
    /// Where uploads are staged and converted, on this machine; and where documents are kept
    /// when there is no `shared` store.
    let store: DocumentStore
    /// The database every machine shares (PostgreSQL), when there is one: documents are kept
    /// there, so any web front serves them and none is lost with a machine.
    let shared: (any DocumentRows)?
    let progress = UploadProgress()
    let metrics: WebMetrics
    let isolation: ConverterIsolation
    let gate: UploadGate
    /// Deletions in progress: each reads the meeting's committed state, so they are bounded
    /// apart from uploads (a burst of them must not starve uploads, nor the reverse).
    let deletions: UploadGate
    let quota: DocumentQuota

    /// Conversions that run at once (each is a process using a core), and that may wait
    /// for their turn; further uploads get `server_busy`.
    static let concurrentConversions = 2
    static let waitingConversions = 8
    /// Deletions in progress at once; more get `server_busy`. A person deletes one document
    /// at a time; this is for scripts.
    static let concurrentDeletions = 4

    /// - Parameters:
    ///   - converters: tried in this order for each PDF.
    ///   - searchPath: where converter tools are looked up; nil for this process's `PATH`.
    ///   - isolation: how converters run, as ``ConverterIsolation/startup(settings:dataDirectory:logger:searchPath:probe:)`` decided.
    init(dataDirectory: String, meetings: any Store, shared: (any DocumentRows)? = nil, tokens: TokenAuthority,
         settings: WebSettings, logger: Logger, converters: [PDFConverter] = PDFConverter.standard,
         searchPath: String? = ProcessInfo.processInfo.environment["PATH"], isolation: ConverterIsolation,
         metrics: WebMetrics = .off) {
        self.metrics = metrics
        // Absolute: converters and bwrap start in other directories than this process.
        self.dataDirectory = DocumentStore.absolute(dataDirectory)
        self.meetings = meetings
        self.shared = shared
        self.tokens = tokens
        self.settings = settings
        self.logger = logger
        self.converters = converters
        self.isolation = isolation
        self.runner = ConverterRunner(searchPath: searchPath, sandbox: isolation.sandbox)
        self.slots = ConversionSlots(running: Self.concurrentConversions, waiting: Self.waitingConversions)
        self.store = DocumentStore(dataDirectory: dataDirectory)
        self.gate = UploadGate(limit: settings.maxConcurrentUploads)
        self.deletions = UploadGate(limit: Self.concurrentDeletions, refusal: .tooManyDeletions)
        self.quota = DocumentQuota(limitBytes: settings.meetingDocumentBytes)
    }

    /// The most pages a PDF may have: the web settings' limit, but never more than a
    /// meeting's `addDocument` op accepts.
    var maxPages: Int { min(settings.maxDocumentPages, ModelLimits.pagesPerDocument) }

    func add(to router: Router<ParleyRequestContext>) {
        // What a crashed process left behind; a live conversion is far younger than this.
        let stale = max(3600, 4 * settings.converterTimeoutSeconds)
        let removed = store.sweepIncoming(olderThanSeconds: stale)
        if removed > 0 {
            logger.notice("removed \(removed) unfinished document uploads left by an earlier run",
                          metadata: ["directory": "\(store.incomingRoot)"])
        }
        router.post("/v1/meetings/:id/documents") { request, context in
            do {
                let response = try await upload(request, meeting: try context.parameters.require("id"))
                metrics.upload(.stored)
                return response
            } catch let error as DocumentError {
                metrics.upload(error == .storageFailed ? .failed : .refused)
                throw error.apiError
            } catch {
                // The body could not be read (the uploader went away), or the like.
                metrics.upload(.failed)
                throw error
            }
        }
        router.delete("/v1/meetings/:id/documents/:document") { request, context in
            do {
                return try await delete(request, meeting: try context.parameters.require("id"),
                                        document: try context.parameters.require("document"))
            } catch let error as DocumentError {
                throw error.apiError
            }
        }
        router.get("/v1/meetings/:id/uploads/:upload") { request, context in
            do {
                let meeting = try context.parameters.require("id")
                let claims = try await authorize(request, meeting: meeting)
                let upload = try context.parameters.require("upload")
                guard UploadProgress.isValidID(upload),
                      let report = await progress.report(UploadProgress.key(meeting: meeting, participant: claims.participant.rawValue, upload: upload))
                else { throw DocumentError.unknownUpload }
                let body = try JSONEncoder().encode(report)
                return Response(status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                                body: .init(byteBuffer: ByteBuffer(bytes: body)))
            } catch let error as DocumentError {
                throw error.apiError
            }
        }
        router.get("/v1/meetings/:id/pages/:page") { request, context in
            do {
                return try await page(request, meeting: try context.parameters.require("id"),
                                      page: try context.parameters.require("page"))
            } catch let error as DocumentError {
                throw error.apiError
            }
        }
    }

    // MARK: - Upload

    struct Uploaded: Encodable {
        var document: String
        var title: String
        var pages: [String]
    }

    /// Every refusal that needs no byte of the body comes first, and none reads it: the
    /// sandbox, the number of uploads in progress, who is uploading, the declared size.
    private func upload(_ request: Request, meeting: String) async throws -> Response {
        let claims = try await authorize(request, meeting: meeting)
        if case .refused = isolation { throw DocumentError.sandboxUnavailable }
        try gate.enter()
        defer { gate.leave() }
        try DocumentPermission.check(claims.participant, tokenRole: claims.role, in: try await committedMeeting(meeting))
        // The claim on the meeting's quota stands until the document is stored (or not).
        let upload = quota.begin(meeting: meeting)
        defer { quota.end(upload) }
        // Progress is reported only for an upload the page named; a bad name is ignored, not refused.
        let tracked = request.headers[Self.uploadHeader].flatMap { UploadProgress.isValidID($0) ? $0 : nil }
            .map { UploadProgress.key(meeting: meeting, participant: claims.participant.rawValue, upload: $0) }
        if let tracked { await progress.begin(tracked) }
        do {
            let response = try await receive(request, meeting: meeting, claims: claims, upload: upload, tracked: tracked)
            if let tracked { await progress.end(tracked) }
            return response
        } catch {
            if let tracked { await progress.end(tracked) }
            throw error
        }
    }

    private func receive(_ request: Request, meeting: String, claims: JoinClaims, upload: Int, tracked: String?) async throws -> Response {
        let progress = self.progress
        let report: @Sendable (UploadProgress.Report) async -> Void = { step in
            if let tracked { await progress.update(tracked, step) }
        }
        // Claims `bytes` of the meeting's quota for this upload (replacing its claim so far).
        let claim = { (bytes: Int) async throws(DocumentError) in
            try await quota.claim(upload, meeting: meeting, bytes: bytes) { () async throws(DocumentError) in
                try await storedBytes(meeting)
            }
        }
        // Refuse what is declared too large before reading any of it; collect(upTo:) stops
        // reading one chunk past the limit for bodies that do not say their length.
        let declared = request.headers[.contentLength].flatMap(Int.init)
        if let declared {
            guard declared <= settings.maxUploadBytes else { throw DocumentError.uploadTooLarge(limitBytes: settings.maxUploadBytes) }
            try await claim(declared)
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: settings.maxUploadBytes)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw DocumentError.uploadTooLarge(limitBytes: settings.maxUploadBytes)
        }
        let bytes = body.readableBytesView
        guard !bytes.isEmpty else { throw DocumentError.unsupportedDocument("the upload is empty") }
        // The source alone must fit before a converter spends time on it.
        if declared != bytes.count { try await claim(bytes.count) }
        guard let kind = DocumentKind.sniff(bytes) else {
            throw DocumentError.unsupportedDocument("the file is not a PDF, PNG or JPEG (whatever its name or type says)")
        }
        let title = DocumentTitle.from(header: request.headers[Self.titleHeader])
        let document = randomID(prefix: "d")
        let started = ContinuousClock.now

        let incoming: String
        do {
            incoming = try store.makeIncoming()
        } catch {
            logger.error("cannot make a work directory for an upload: \(error)", metadata: ["directory": "\(store.incomingRoot)"])
            throw DocumentError.storageFailed
        }
        defer { try? FileManager.default.removeItem(atPath: incoming) }
        let staged = incoming + "/document"
        var manifest = DocumentManifest(document: document, title: title, kind: kind, converter: nil,
                                        sourceBytes: bytes.count, createdAtMs: Self.nowMs(), pages: [])
        do {
            try FileManager.default.createDirectory(atPath: staged, withIntermediateDirectories: false)
            switch kind {
            case .png, .jpeg:
                let page = randomID(prefix: "pg")
                let file = "\(page).\(kind.pageExtension)"
                try DocumentStore.write(bytes, to: staged + "/" + file)
                manifest.pages = [.init(id: page, file: file, contentType: kind.pageContentType)]
            case .pdf:
                try DocumentStore.write(bytes, to: staged + "/source.pdf")
                if let tracked { await progress.update(tracked, .waiting) }
                let rendered = try await slots.withSlot {
                    await PDFConversion(converters: converters, runner: runner, limits: ConverterLimits(settings: settings),
                                        maxPages: maxPages, pixels: settings.pageImagePixels, logger: logger, metrics: metrics,
                                        progress: { step in
                                            switch step {
                                            case .counting: await report(.counting)
                                            case .rendering(let page, let pages): await report(.converting(page: page, of: pages))
                                            }
                                        })
                        .convert(source: staged + "/source.pdf", workDirectory: incoming + "/work", document: document)
                }.get()
                if let tracked { await progress.update(tracked, .storing) }
                manifest.converter = rendered.converter
                // The server's own copies of the converter's output (PDFConversion.collect).
                for image in rendered.pages {
                    let page = randomID(prefix: "pg")
                    let file = "\(page).png"
                    try FileManager.default.moveItem(atPath: image, toPath: staged + "/" + file)
                    manifest.pages.append(.init(id: page, file: file, contentType: kind.pageContentType))
                }
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let manifestBytes = try encoder.encode(manifest)
            // What it will take, as the store counts it, must fit in the quota: known only now.
            if let shared {
                // The database keeps the pages and the manifest (not the PDF). Claimed from
                // the files' sizes before any page is read: a document that does not fit is
                // never held in memory.
                let pageBytes = DocumentStore.fileBytes(in: staged, names: manifest.pages.map(\.file))
                try await claim(pageBytes + manifestBytes.count)
                let stored = StoredDocument(
                    meeting: claims.meeting.rawValue, document: document, manifest: manifestBytes, createdAt: manifest.createdAtMs,
                    pages: try manifest.pages.map { page in
                        StoredDocument.Page(id: page.id, contentType: page.contentType,
                                            bytes: Array(try Data(contentsOf: URL(fileURLWithPath: staged + "/" + page.file))))
                    })
                // The files are this server's own and unchanged since; this only guards the claim.
                let readBytes = stored.pages.reduce(manifestBytes.count) { $0 + $1.bytes.count }
                if readBytes != pageBytes + manifestBytes.count { try await claim(readBytes) }
                try await shared.storeDocument(stored)
            } else {
                try DocumentStore.write(manifestBytes, to: staged + "/document.json")
                try await claim(DocumentStore.fileBytes(in: staged))
                try store.install(staged: staged, meeting: claims.meeting.rawValue, document: document)
            }
        } catch let error as DocumentError {
            logger.info("document upload refused: \(error.code)", metadata: [
                "meeting": "\(meeting)", "participant": "\(claims.participant)", "code": "\(error.code)",
                "bytes": "\(bytes.count)", "ms": "\((ContinuousClock.now - started).wholeMilliseconds)",
            ])
            throw error
        } catch {
            logger.error("cannot store document \(document): \(error)", metadata: ["meeting": "\(meeting)"])
            throw DocumentError.storageFailed
        }
        let elapsed = ContinuousClock.now - started
        logger.info("document uploaded", metadata: [
            "meeting": "\(meeting)", "document": "\(document)", "participant": "\(claims.participant)",
            "kind": "\(kind.rawValue)", "pages": "\(manifest.pages.count)", "bytes": "\(bytes.count)",
            "converter": "\(manifest.converter ?? "none")",
            "ms": "\(elapsed.wholeMilliseconds)",
        ])
        let answer = try JSONEncoder().encode(Uploaded(document: document, title: title, pages: manifest.pages.map(\.id)))
        return Response(status: .created, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(bytes: answer)))
    }

    // MARK: - Deletion

    /// The checks that need no store come first (the token, for this meeting; the document
    /// id's form; a place among the deletions in progress), then one read of the committed
    /// meeting that changes nothing. Who may delete cannot be told from the token alone: an
    /// attendee made presenter may.
    private func delete(_ request: Request, meeting: String, document: String) async throws(DocumentError) -> Response {
        let claims = try await authorize(request, meeting: meeting)
        guard DocumentIDs.isDocumentID(document) else { throw .unknownDocument }
        try deletions.enter()
        defer { deletions.leave() }
        let state = try await committedMeeting(meeting)
        try DocumentPermission.check(claims.participant, tokenRole: claims.role, in: state)
        guard let pages = try await pageIDs(of: document, meeting: meeting) else { throw .unknownDocument }
        try DocumentPermission.checkDeletable(pages: pages, in: state)
        let removed: Bool
        do {
            if let shared {
                removed = try await shared.deleteDocument(meeting: meeting, document: document)
            } else {
                removed = try store.remove(document, meeting: meeting)
            }
        } catch {
            logger.error("cannot delete document \(document): \(error)", metadata: ["meeting": "\(meeting)"])
            throw .storageFailed
        }
        // Deleted by someone else meanwhile: the same answer as a document that never was.
        guard removed else { throw .unknownDocument }
        quota.changed(meeting: meeting)
        logger.info("document deleted", metadata: [
            "meeting": "\(meeting)", "document": "\(document)", "participant": "\(claims.participant)", "pages": "\(pages.count)",
        ])
        return Response(status: .noContent)
    }

    // MARK: - What the stores hold

    /// The meeting as committed now: who is host and presenter, which page is shown. Read
    /// with `peek`, which changes nothing: repairing a damaged log is its host's business,
    /// not that of whoever holds a token.
    private func committedMeeting(_ meeting: String) async throws(DocumentError) -> Meeting {
        let id = MeetingID(meeting)
        do {
            let recovered = try await meetings.peek(id)
            let record = recovered.record
            let snapshot = recovered.snapshot ?? Snapshot(meeting: Meeting(id: id, title: record.title, settings: record.settings),
                                                          seq: 0, epoch: Epoch(0), outcomes: OpOutcomes(capacity: 1))
            return try MeetingLog(standbyFrom: snapshot, entries: recovered.entries).meeting
        } catch StoreError.unknownMeeting {
            throw .unknownMeeting
        } catch {
            logger.error("cannot read meeting \(meeting) to check who may change its documents: \(error)",
                         metadata: ["meeting": "\(meeting)"])
            throw .storageFailed
        }
    }

    /// The bytes the meeting's documents take in the store that keeps them.
    private func storedBytes(_ meeting: String) async throws(DocumentError) -> Int {
        guard let shared else { return store.storedBytes(meeting: meeting) }
        do {
            return try await shared.documentBytes(meeting: meeting)
        } catch {
            logger.error("cannot read the size of meeting \(meeting)'s documents: \(error)", metadata: ["meeting": "\(meeting)"])
            throw .storageFailed
        }
    }

    /// The page ids of a stored document; nil if the meeting has no such document.
    private func pageIDs(of document: String, meeting: String) async throws(DocumentError) -> [String]? {
        guard let shared else { return store.manifest(document, meeting: meeting)?.pages.map(\.id) }
        do {
            return try await shared.documentPageIDs(meeting: meeting, document: document)
        } catch {
            logger.error("cannot read document \(document): \(error)", metadata: ["meeting": "\(meeting)"])
            throw .storageFailed
        }
    }

    // MARK: - Pages

    static let cacheControl = "private, max-age=31536000, immutable"
    static let titleHeader = HTTPField.Name("X-Parley-Title")!
    static let uploadHeader = HTTPField.Name("X-Parley-Upload")!
    static let noSniffHeader = HTTPField.Name("X-Content-Type-Options")!

    private func page(_ request: Request, meeting: String, page: String) async throws -> Response {
        let claims = try await authorize(request, meeting: meeting)
        let stored: StoredPage
        if let shared {
            guard DocumentIDs.isPageID(page) else { throw DocumentError.unknownPage }
            do {
                guard let found = try await shared.documentPage(meeting: claims.meeting.rawValue, page: page) else {
                    throw DocumentError.unknownPage
                }
                stored = .bytes(found.bytes, contentType: found.contentType)
            } catch let error as StoreError {
                logger.error("cannot read page \(page): \(error)", metadata: ["meeting": "\(meeting)"])
                throw DocumentError.storageFailed
            }
        } else {
            // Opened here: a page deleted after this is still served whole, one deleted
            // before is unknown_page (never a failure to read what was just found).
            guard let found = store.openPage(page, meeting: claims.meeting.rawValue) else { throw DocumentError.unknownPage }
            stored = .file(found)
        }
        // A page id never changes its content, so the id is its entity tag.
        let etag = "\"\(page)\""
        var headers: HTTPFields = [.cacheControl: Self.cacheControl, .eTag: etag]
        if EntityTags.matches(ifNoneMatch: request.headers[.ifNoneMatch], etag: etag) {
            return Response(status: .notModified, headers: headers)
        }
        // Images are kept as uploaded: a browser must not read one as anything but an image.
        headers[Self.noSniffHeader] = "nosniff"
        switch stored {
        case .bytes(let bytes, let contentType):
            headers[.contentType] = contentType
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        case .file(let file):
            headers[.contentType] = file.contentType
            let chunkBytes = Self.pageChunkBytes
            return Response(status: .ok, headers: headers, body: ResponseBody(contentLength: file.size) { writer in
                var offset = 0
                while offset < file.size {
                    let chunk = try await file.read(at: offset, count: min(chunkBytes, file.size - offset))
                    // A page file never changes; one that shrank is a fault, and the client
                    // sees a cut response rather than a wrong image.
                    guard !chunk.isEmpty else { throw StoreFailure("page \(page) shrank while it was served") }
                    try await writer.write(ByteBuffer(bytes: chunk))
                    offset += chunk.count
                }
                try await writer.finish(nil)
            })
        }
    }

    /// How much of a page file is read at a time while it is served.
    static let pageChunkBytes = 128 << 10

    /// A page to serve: a file of this machine's, open, or bytes from the shared store.
    enum StoredPage {
        case file(OpenPage)
        case bytes([UInt8], contentType: String)
    }

    // MARK: - Tokens

    /// The token's claims, if it is valid and for the meeting the URL names.
    private func authorize(_ request: Request, meeting: String) async throws(DocumentError) -> JoinClaims {
        guard let header = request.headers[.authorization] else { throw .missingToken }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { throw .missingToken }
        let claims: JoinClaims
        do {
            claims = try await tokens.verify(String(parts[1]).trimmingCharacters(in: .whitespaces))
        } catch {
            if error.code.rawValue == "token_expired" { throw .tokenExpired(error.message) }
            throw .invalidToken(error.message)
        }
        guard claims.meeting.rawValue == meeting, DocumentIDs.isSafeMeetingID(meeting) else { throw .wrongMeeting }
        return claims
    }

    private static func nowMs() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }
}

extension DocumentError {
    var apiError: APIError {
        APIError(HTTPResponse.Status(code: status), code, message)
    }
}

/// Bounds the conversions that run at once and those that wait. A conversion holds its
/// slot until its converters have finished or been killed, which their time limit bounds.
actor ConversionSlots {
    private let running: Int
    private let waiting: Int
    private var busy = 0
    private var queue: [CheckedContinuation<Void, Never>] = []

    init(running: Int, waiting: Int) {
        precondition(running >= 1 && waiting >= 0)
        self.running = running
        self.waiting = waiting
    }

    /// Conversions waiting for a slot now.
    var waitingCount: Int { queue.count }

    func withSlot<T: Sendable>(_ body: @Sendable () async -> T) async throws(DocumentError) -> T {
        try await acquire()
        let result = await body()
        release()
        return result
    }

    private func acquire() async throws(DocumentError) {
        if busy < running {
            busy += 1
            return
        }
        guard queue.count < waiting else { throw .busy }
        // The slot is handed over by release(): busy stays the same.
        await withCheckedContinuation { queue.append($0) }
    }

    private func release() {
        if queue.isEmpty {
            busy -= 1
        } else {
            queue.removeFirst().resume()
        }
    }
}
