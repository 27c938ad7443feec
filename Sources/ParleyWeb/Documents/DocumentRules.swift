import FoundationEssentials
import ParleyCore

// The pure rules of the documents API: what an upload is, which identifiers are valid, how
// a title is cleaned, and every error an uploader or viewer can get. No I/O here.

/// What an upload is, decided by its first bytes alone. The file name and the
/// `Content-Type` header are never trusted: "non-PDF bytes named .pdf" are refused here.
enum DocumentKind: String, Codable, Equatable, Sendable {
    case pdf
    case png
    case jpeg

    /// The kind of `bytes`, or nil if they are none of the three.
    ///
    /// - PDF: `%PDF-` at offset 0. Readers accept up to 1 KB of junk before it; we do not,
    ///   so a text file that merely mentions `%PDF-` is refused rather than sent to a converter.
    /// - PNG: the 8-byte signature followed by an `IHDR` chunk, as every PNG starts.
    /// - JPEG: SOI (`FF D8`) followed by a marker (`FF`).
    static func sniff(_ bytes: some Collection<UInt8>) -> DocumentKind? {
        let head = Array(bytes.prefix(16))
        if head.starts(with: Array("%PDF-".utf8)) { return .pdf }
        if head.count >= 16, head.starts(with: pngSignature), Array(head[12..<16]) == Array("IHDR".utf8) { return .png }
        if head.count >= 3, head[0] == 0xFF, head[1] == 0xD8, head[2] == 0xFF { return .jpeg }
        return nil
    }

    static let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// The `Content-Type` a page of this kind is served with (a PDF's pages are PNGs).
    var pageContentType: String {
        switch self {
        case .pdf, .png: "image/png"
        case .jpeg: "image/jpeg"
        }
    }

    /// The file extension of a page of this kind.
    var pageExtension: String {
        switch self {
        case .pdf, .png: "png"
        case .jpeg: "jpg"
        }
    }

    /// Page file extensions and the `Content-Type` each is served with.
    static let pageContentTypes: [(fileExtension: String, contentType: String)] = [("png", "image/png"), ("jpg", "image/jpeg")]
}

/// Document and page identifiers: `d-` or `pg-` and 16 of `[0-9a-z]`, as `randomID(prefix:)`
/// makes them. Anything else is refused before it gets near a file path.
enum DocumentIDs {
    static func isDocumentID(_ text: some StringProtocol) -> Bool { matches(text, prefix: "d-") }
    static func isPageID(_ text: some StringProtocol) -> Bool { matches(text, prefix: "pg-") }

    /// Whether a meeting id can name a directory: 1 to 64 of `[A-Za-z0-9_-]`, so never `.`,
    /// `..` or a path. Meeting ids come from signed tokens; this is defence in depth.
    static func isSafeMeetingID(_ text: some StringProtocol) -> Bool {
        !text.isEmpty && text.utf8.count <= ModelLimits.identifierLength && text.utf8.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
        }
    }

    private static func matches(_ text: some StringProtocol, prefix: String) -> Bool {
        let utf8 = Array(text.utf8)
        guard utf8.count == prefix.utf8.count + 16, utf8.starts(with: prefix.utf8) else { return false }
        return utf8.dropFirst(prefix.utf8.count).allSatisfy { (0x30...0x39).contains($0) || (0x61...0x7A).contains($0) }
    }
}

/// The title of an upload, from `X-Parley-Title` (a percent-encoded file name).
enum DocumentTitle {
    static let fallback = "Document"

    /// Percent-decoded (kept as sent if it does not decode), without control characters,
    /// trimmed, cut to the meeting model's title length so the `addDocument` op that
    /// follows the upload is accepted; "Document" if nothing is left.
    static func from(header: String?) -> String {
        guard let header else { return fallback }
        let decoded = header.removingPercentEncoding ?? header
        let visible = String(String.UnicodeScalarView(decoded.unicodeScalars.filter { scalar in
            switch scalar.properties.generalCategory {
            case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate, .privateUse, .unassigned: false
            default: true
            }
        }))
        let trimmed = String(visible.trimmingCharacters(in: .whitespaces).prefix(ModelLimits.titleLength))
            .trimmingCharacters(in: .whitespaces)
        return trimmed.isEmpty ? fallback : trimmed
    }
}

/// What a converter's page counter printed: the `Pages: N` line of `pdfinfo` and of
/// `mutool info` alike. Nil if there is no such line.
enum PageCountOutput {
    static func parse(_ text: String) -> Int? {
        for line in text.split(whereSeparator: \.isNewline) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard trimmed.hasPrefix("Pages:") else { continue }
            return Int(trimmed.dropFirst("Pages:".count).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }
}

/// `If-None-Match` against a page's ETag: a list of entity tags, weak or strong, or `*`.
enum EntityTags {
    static func matches(ifNoneMatch header: String?, etag: String) -> Bool {
        guard let header else { return false }
        for candidate in header.split(separator: ",") {
            var tag = candidate.trimmingCharacters(in: .whitespaces)
            if tag == "*" { return true }
            if tag.hasPrefix("W/") { tag.removeFirst(2) }
            if tag == etag { return true }
        }
        return false
    }
}

/// Where a program is: an absolute path as given, or the first executable of that name on
/// `PATH`. Nil when there is none, which the caller reports as "install …".
enum ToolLocator {
    static let defaultSearchPath = "/usr/local/bin:/usr/bin:/bin"

    static func locate(_ tool: String, searchPath: String?, isExecutable: (String) -> Bool) -> String? {
        if tool.hasPrefix("/") { return isExecutable(tool) ? tool : nil }
        guard !tool.isEmpty, !tool.contains("/") else { return nil }
        for directory in (searchPath ?? defaultSearchPath).split(separator: ":") where directory.hasPrefix("/") {
            let candidate = directory + "/" + tool
            if isExecutable(candidate) { return candidate }
        }
        return nil
    }
}

/// Who may upload and delete a meeting's documents: exactly who may add one to the meeting
/// (the `addDocument` rule in ParleyCore's `Meeting+Rules`: the host, or the current
/// presenter), as the meeting's committed state has them now, not as their token had them
/// when it was issued: an attendee made presenter may, a host who handed over may not, and
/// someone with the presenter role who is not the current presenter may not.
///
/// Someone not in the meeting (not joined yet, or left) is judged as the model would make
/// them if they joined now with their token (the model's own `join`, applied to a copy):
/// a host token while nobody else is host; a presenter token only while the meeting has no
/// presenter (then they would become it). A join the meeting would refuse (locked, full)
/// allows nothing. So an upload may come before the join, as the SDK allows, exactly when
/// the document could then be added.
enum DocumentPermission {
    static func check(_ participant: ParticipantID, tokenRole: Role, in meeting: Meeting) throws(DocumentError) {
        guard !meeting.ended else { throw .meetingEnded }
        guard let member = Self.member(participant, tokenRole: tokenRole, in: meeting),
              member.role == .host || member.isPresenter
        else { throw .notPresenter }
    }

    /// `participant` as in the meeting now, or as joining now would make them; nil if the
    /// meeting would not let them in.
    static func member(_ participant: ParticipantID, tokenRole: Role, in meeting: Meeting) -> Participant? {
        if let present = meeting.participant(participant), present.presence != .left { return present }
        var joined = meeting
        // The name is not looked at beyond being valid; `at` and `seq` are not kept.
        guard (try? joined.apply(.join(participant: participant, name: "upload", role: tokenRole), by: .system, at: 0, seq: 0)) != nil
        else { return nil }
        return joined.participant(participant)
    }

    /// Whether deleting a document whose pages are `pages` would pull the page everyone is
    /// looking at from under them: that one is refused (`document_shown`) until the
    /// presenter turns elsewhere. Any other may go; its pages then answer `unknown_page`, and
    /// the meeting page says the page could not be loaded if someone turns to it.
    static func checkDeletable(pages: [String], in meeting: Meeting) throws(DocumentError) {
        if let current = meeting.currentPage, pages.contains(current.rawValue) { throw .documentShown }
    }
}

/// Every way an upload or a page fetch can be refused. Each has a stable `code` (the
/// browser page and SDKs switch on it) and a message a person can act on.
enum DocumentError: Error, Equatable, Sendable {
    case missingToken
    case invalidToken(String)
    case tokenExpired(String)
    /// The token is for another meeting than the URL names.
    case wrongMeeting
    case uploadTooLarge(limitBytes: Int)
    case unsupportedDocument(String)
    case tooManyPages(count: Int, limit: Int)
    /// Every converter failed; the names are in the order they were tried.
    case conversionFailed(converters: [String])
    /// Unknown, malformed, or another meeting's: one answer for all, so nothing leaks.
    case unknownPage
    /// No upload of this participant's by that name is running.
    case unknownUpload
    /// More conversions are running and waiting than the server allows.
    case busy
    /// More uploads are in progress than `maxConcurrentUploads`.
    case tooManyUploads
    /// More deletions are in progress than `DocumentRoutes.concurrentDeletions`.
    case tooManyDeletions
    /// The converter sandbox does not work here and converting without it is not allowed.
    case sandboxUnavailable
    /// Only the host and the presenter may upload and delete (``DocumentPermission``).
    case notPresenter
    case meetingEnded
    /// The token is genuine but its meeting is not in the store.
    case unknownMeeting
    /// The meeting's documents would take more than `limitBytes`; `usedBytes` are taken
    /// (stored, or being uploaded meanwhile).
    case quotaExceeded(limitBytes: Int, usedBytes: Int)
    /// No document of this meeting has that id.
    case unknownDocument
    /// The document holds the page everyone is looking at.
    case documentShown
    case storageFailed

    var status: Int {
        switch self {
        case .missingToken, .invalidToken, .tokenExpired: 401
        case .wrongMeeting, .notPresenter: 403
        case .unknownPage, .unknownUpload, .unknownMeeting, .unknownDocument: 404
        case .meetingEnded, .documentShown: 409
        case .uploadTooLarge, .quotaExceeded: 413
        case .unsupportedDocument: 415
        case .tooManyPages, .conversionFailed: 422
        case .busy, .tooManyUploads, .tooManyDeletions, .sandboxUnavailable: 503
        case .storageFailed: 500
        }
    }

    var code: String {
        switch self {
        case .missingToken, .invalidToken: "invalid_token"
        case .tokenExpired: "token_expired"
        case .wrongMeeting: "wrong_meeting"
        case .uploadTooLarge: "upload_too_large"
        case .unsupportedDocument: "unsupported_document"
        case .tooManyPages: "too_many_pages"
        case .conversionFailed: "conversion_failed"
        case .unknownPage: "unknown_page"
        case .unknownUpload: "unknown_upload"
        case .busy, .tooManyUploads, .tooManyDeletions: "server_busy"
        case .sandboxUnavailable: "converter_sandbox_unavailable"
        case .notPresenter: "not_presenter"
        case .meetingEnded: "meeting_ended"
        case .unknownMeeting: "unknown_meeting"
        case .quotaExceeded: "meeting_quota_exceeded"
        case .unknownDocument: "unknown_document"
        case .documentShown: "document_shown"
        case .storageFailed: "internal_error"
        }
    }

    var message: String {
        switch self {
        case .missingToken:
            "send the meeting's join token as 'Authorization: Bearer <token>'"
        case .invalidToken(let message), .tokenExpired(let message):
            message
        case .wrongMeeting:
            "the join token is for another meeting"
        case .uploadTooLarge(let limit):
            "the upload is larger than \(Self.describe(bytes: limit)), the most this server accepts"
        case .unsupportedDocument(let why):
            "\(why); upload a PDF, PNG or JPEG file"
        case .tooManyPages(let count, let limit):
            "the document has \(count) pages; this server accepts at most \(limit)"
        case .conversionFailed(let converters):
            "the document could not be converted: \(converters.isEmpty ? "no converter is configured" : "every converter (\(converters.joined(separator: ", "))) failed"); it may be damaged, or too large or complex to render within this server's limits"
        case .unknownPage:
            "there is no such page in this meeting"
        case .unknownUpload:
            "no upload of yours by that name is running"
        case .busy:
            "too many documents are being converted right now; try again in a minute"
        case .tooManyUploads:
            "too many documents are being uploaded right now; try again in a minute"
        case .tooManyDeletions:
            "too many documents are being deleted right now; try again in a moment"
        case .sandboxUnavailable:
            "this server cannot convert documents safely right now (its converter sandbox does not work); its operator's log says why"
        case .notPresenter:
            "only the meeting's host or presenter can upload or delete documents"
        case .meetingEnded:
            "the meeting has ended"
        case .unknownMeeting:
            "there is no such meeting"
        case .quotaExceeded(let limit, let used):
            "this meeting's documents may take at most \(Self.describe(bytes: limit)) and \(Self.describe(bytes: used)) are taken; this upload does not fit: delete a document first"
        case .unknownDocument:
            "there is no such document in this meeting"
        case .documentShown:
            "the document is being shown in the meeting; turn to a page of another document first"
        case .storageFailed:
            "the document could not be stored; see the server log"
        }
    }

    /// In MiB from 1 MiB, else in KiB from 1 KiB: whole when exact, else to a tenth.
    static func describe(bytes: Int) -> String {
        for (shift, unit) in [(20, "MiB"), (10, "KiB")] where bytes >= 1 << shift {
            if bytes % (1 << shift) == 0 { return "\(bytes >> shift) \(unit)" }
            let tenths = (bytes * 10 + (1 << (shift - 1))) >> shift
            return "\(tenths / 10).\(tenths % 10) \(unit)"
        }
        return "\(bytes) bytes"
    }
}
