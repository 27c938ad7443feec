import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import ParleyCore

// Documents: upload a PDF or image, follow its conversion, and fetch its page images.
//
// All three calls go to the web server (the same `server` as ``ParleyHTTP/createMeeting(server:title:settings:apiKey:session:)``;
// with `parley serve --single`, the server itself), not to the collaboration server that
// ``ParleyHTTP/locate(server:meeting:session:)`` names. Each is authorised by a join token for
// `meeting`, sent as `Authorization: Bearer <token>`.
//
// Uploading stores the pages but shows them to nobody: the meeting learns of the document
// only when the presenter (or host) sends the `addDocument` op, e.g.
// `try await client.send(.addDocument(uploaded))`.

extension ParleyHTTP {
    /// How long an upload may wait for its answer. The server answers only once every page is
    /// rendered: a PDF may wait for a conversion slot, then go through two converters in turn,
    /// each allowed a minute by default.
    static let uploadTimeoutSeconds: Double = 300

    /// `POST /v1/meetings/{id}/documents`: sends a PDF, PNG or JPEG and returns once the server
    /// has stored it as page images (a PDF as one PNG per page; an image as one page, kept
    /// byte for byte). The server decides what the file is from its first bytes alone.
    ///
    /// The document is not in the meeting yet. To show it, the presenter (or host) then sends
    /// `MeetingOp.addDocument(id:title:pages:)` with exactly what this returns:
    ///
    /// ```swift
    /// let uploaded = try await ParleyHTTP.uploadDocument(server: server, meeting: meeting, token: token,
    ///                                                    data: pdf, title: "Q3 review.pdf")
    /// try await client.send(.addDocument(uploaded))   // .addDocument(id:title:pages:) with its fields
    /// ```
    ///
    /// The request itself allows five minutes for the answer, longer than other calls: the
    /// server answers only once the last page is rendered.
    ///
    /// - Parameters:
    ///   - server: the server's HTTP base URL (in a zone, the web process's).
    ///   - meeting: the meeting the document is for.
    ///   - token: a join token for `meeting` (any role may upload; only a presenter or host may
    ///     add the document to the meeting).
    ///   - data: the file's bytes: a PDF, PNG or JPEG.
    ///   - title: shown in the meeting, typically the file name. Percent-encoded on the way, so
    ///     any text is fine; the server drops control characters and keeps at most
    ///     `ModelLimits.titleLength` characters. Nil or blank: "Document".
    ///   - uploadID: names this upload so ``uploadProgress(server:meeting:token:uploadID:session:)``
    ///     can follow it while it converts: 1 to 64 ASCII letters, digits, `-` or `_`, chosen by
    ///     the caller (a `UUID().uuidString` fits). Unique among this participant's uploads
    ///     running at the same time.
    ///   - session: the `URLSession` to use; nil for a shared one.
    /// - Throws: ``ParleyError/http(_:)`` with code
    ///   - ``APIErrorCode/invalidToken`` (missing or bad token), ``APIErrorCode/tokenExpired``
    ///     or ``APIErrorCode/wrongMeeting`` (the token is for another meeting);
    ///   - ``APIErrorCode/uploadTooLarge``: over the server's `maxUploadBytes` (25 MiB by default);
    ///     the message says the limit;
    ///   - ``APIErrorCode/unsupportedDocument``: empty, or not a PDF, PNG or JPEG;
    ///   - ``APIErrorCode/tooManyPages``: the PDF has more pages than the server accepts;
    ///   - ``APIErrorCode/conversionFailed``: no converter could render the PDF (damaged, or
    ///     too large or complex for the server's limits); retrying the same file will not help;
    ///   - ``APIErrorCode/serverBusy``: too many conversions running; retry in a minute;
    ///   - ``APIErrorCode/internalError``: the server could not store it (see its log).
    ///
    ///   ``ParleyError/invalidOptions(_:)`` for a malformed `uploadID` (nothing is sent),
    ///   ``ParleyError/network(_:)``, ``ParleyError/cancelled`` or ``ParleyError/invalidServerURL(_:)``.
    public static func uploadDocument(server: URL, meeting: MeetingID, token: String, data: Data, title: String? = nil,
                                      uploadID: String? = nil, session: URLSession? = nil)
        async throws(ParleyError) -> UploadedDocument {
        if let uploadID { try checkUploadID(uploadID) }
        let url = try endpoint(server, "v1/meetings/\(pathSegment(meeting.rawValue))/documents")
        // The server never trusts the type, but without one FoundationNetworking sends a form type.
        var headers = ["Content-Type": "application/octet-stream"]
        if let title { headers["X-Parley-Title"] = percentEncodedTitle(title) }
        if let uploadID { headers["X-Parley-Upload"] = uploadID }
        let reply = try await HTTP.send("POST", url, body: data, headers: headers, timeoutSeconds: uploadTimeoutSeconds,
                                        bearer: token, session: session ?? HTTP.defaultSession)
        guard (200..<300).contains(reply.status) else { throw HTTP.httpError(reply.status, reply.body) }
        return try decode(UploadedDocument.self, reply, from: url)
    }

    /// `GET /v1/meetings/{id}/uploads/{upload}`: how far an upload sent with this `uploadID`
    /// has got, for a progress bar while ``uploadDocument(server:meeting:token:data:title:uploadID:session:)``
    /// waits. Poll it every second or so from another task.
    ///
    /// Only the participant that sent the upload sees it (the same participant's token);
    /// to everyone else it is `unknownUpload`.
    ///
    /// - Throws: ``ParleyError/http(_:)`` with ``APIErrorCode/unknownUpload`` before the
    ///   server has begun the upload and once it has answered it (so a poll racing the upload's
    ///   answer gets it too: treat it as "not running", not as a failure of the upload);
    ///   ``APIErrorCode/invalidToken``, ``APIErrorCode/tokenExpired`` or
    ///   ``APIErrorCode/wrongMeeting`` for the token. ``ParleyError/invalidOptions(_:)`` for a
    ///   malformed `uploadID` (nothing is sent), ``ParleyError/network(_:)``,
    ///   ``ParleyError/cancelled`` or ``ParleyError/invalidServerURL(_:)``.
    public static func uploadProgress(server: URL, meeting: MeetingID, token: String, uploadID: String,
                                      session: URLSession? = nil) async throws(ParleyError) -> UploadProgressReport {
        try checkUploadID(uploadID)
        let url = try endpoint(server, "v1/meetings/\(pathSegment(meeting.rawValue))/uploads/\(uploadID)")
        let reply = try await HTTP.send("GET", url, body: nil, headers: [:], timeoutSeconds: 10, bearer: token,
                                        session: session ?? HTTP.defaultSession)
        guard (200..<300).contains(reply.status) else { throw HTTP.httpError(reply.status, reply.body) }
        return try decode(UploadProgressReport.self, reply, from: url)
    }

    /// `GET /v1/meetings/{id}/pages/{pageId}`: a page's image, as the server stores it.
    ///
    /// A page id never changes its content, so an app may cache the image under the id for as
    /// long as it likes and never ask again.
    ///
    /// - Parameters:
    ///   - server: the server's HTTP base URL (in a zone, the web process's).
    ///   - meeting: the meeting the page belongs to.
    ///   - token: a join token for `meeting`.
    ///   - page: a page of a document in `meeting` (from ``UploadedDocument/pages`` or the
    ///     meeting's documents).
    ///   - session: the `URLSession` to use; nil for a shared one.
    /// - Throws: ``ParleyError/http(_:)`` with ``APIErrorCode/unknownPage`` for a page that
    ///   does not exist or belongs to another meeting (the server does not tell them apart);
    ///   ``APIErrorCode/invalidToken``, ``APIErrorCode/tokenExpired`` or
    ///   ``APIErrorCode/wrongMeeting`` for the token; ``APIErrorCode/internalError`` if the
    ///   server cannot read the stored image. ``ParleyError/network(_:)``,
    ///   ``ParleyError/cancelled`` or ``ParleyError/invalidServerURL(_:)``.
    public static func pageImage(server: URL, meeting: MeetingID, token: String, page: PageID,
                                 session: URLSession? = nil) async throws(ParleyError) -> PageImage {
        let url = try endpoint(server, "v1/meetings/\(pathSegment(meeting.rawValue))/pages/\(pathSegment(page.rawValue))")
        let reply = try await HTTP.send("GET", url, body: nil, headers: [:], bearer: token, session: session ?? HTTP.defaultSession)
        guard (200..<300).contains(reply.status) else { throw HTTP.httpError(reply.status, reply.body) }
        return PageImage(data: reply.body, contentType: reply.header("Content-Type") ?? "application/octet-stream",
                         etag: reply.header("ETag"))
    }

    // MARK: - Helpers

    /// What the server accepts as an upload id (it ignores any other, so progress would never show).
    static func isValidUploadID(_ id: String) -> Bool {
        (1...64).contains(id.utf8.count) && id.utf8.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
        }
    }

    private static func checkUploadID(_ id: String) throws(ParleyError) {
        guard isValidUploadID(id) else {
            throw .invalidOptions("uploadID must be 1 to 64 ASCII letters, digits, '-' or '_' (it is '\(id.prefix(80))')")
        }
    }

    /// Like the meeting page's `encodeURIComponent`: everything but ASCII letters, digits and
    /// `-_.!~*'()` is percent-encoded as UTF-8, which the server decodes.
    static func percentEncodedTitle(_ title: String) -> String {
        title.addingPercentEncoding(withAllowedCharacters: uriComponentAllowed) ?? ""
    }

    private static let uriComponentAllowed = CharacterSet(
        charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()")

    /// One path segment: an id can never add a segment or a query to the address.
    private static func pathSegment(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: unreservedAllowed) ?? ""
    }

    private static let unreservedAllowed = CharacterSet(
        charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")

    private static func decode<T: Decodable>(_ type: T.Type, _ reply: HTTP.Reply, from url: URL) throws(ParleyError) -> T {
        do { return try JSONDecoder().decode(type, from: reply.body) } catch {
            throw .network(NetworkFailure(
                url: url.absoluteString,
                message: "\(url) answered \(reply.status) with a body that is not what Parley sends: \(error)",
                underlying: error))
        }
    }
}

/// What the server stored for an upload: exactly the fields the `addDocument` op takes.
public struct UploadedDocument: Codable, Equatable, Sendable {
    /// Chosen by the server; new for every upload.
    public var document: DocumentID
    /// The title as the server cleaned it (see ``ParleyHTTP/uploadDocument(server:meeting:token:data:title:uploadID:session:)``).
    public var title: String
    /// One per page, in page order; never empty. Fetch each with
    /// ``ParleyHTTP/pageImage(server:meeting:token:page:session:)``.
    public var pages: [PageID]

    public init(document: DocumentID, title: String, pages: [PageID]) {
        self.document = document
        self.title = title
        self.pages = pages
    }
}

extension MeetingOp {
    /// ``addDocument(id:title:pages:)`` for an upload, so `client.send(.addDocument(uploaded))`
    /// adds it to the meeting. Only a presenter or host may; anyone else is rejected with
    /// `notPresenter`. Sending it twice is rejected with `duplicateID`.
    public static func addDocument(_ uploaded: UploadedDocument) -> MeetingOp {
        .addDocument(id: uploaded.document, title: uploaded.title, pages: uploaded.pages)
    }
}

/// How far a running upload has got (``ParleyHTTP/uploadProgress(server:meeting:token:uploadID:session:)``).
public struct UploadProgressReport: Codable, Equatable, Sendable, CustomStringConvertible {
    /// The steps in the order an upload goes through them. An image goes from `receiving`
    /// straight to its answer; only a PDF waits, counts, converts and stores.
    public enum State: Hashable, Sendable, RawRepresentable, Codable, CustomStringConvertible {
        /// The server is reading the file.
        case receiving
        /// For a converter: other conversions are running.
        case waiting
        /// Counting the PDF's pages.
        case counting
        /// Rendering page ``UploadProgressReport/page`` of ``UploadProgressReport/pages``.
        case converting
        /// Storing the rendered pages; the answer follows.
        case storing
        /// A state this SDK does not know, from a newer server.
        case other(String)

        public init(rawValue: String) {
            switch rawValue {
            case "receiving": self = .receiving
            case "waiting": self = .waiting
            case "counting": self = .counting
            case "converting": self = .converting
            case "storing": self = .storing
            default: self = .other(rawValue)
            }
        }

        public var rawValue: String {
            switch self {
            case .receiving: "receiving"
            case .waiting: "waiting"
            case .counting: "counting"
            case .converting: "converting"
            case .storing: "storing"
            case .other(let state): state
            }
        }

        public var description: String { rawValue }
    }

    public var state: State
    /// While ``State/converting``: the page being rendered, counting from 1.
    public var page: Int?
    /// While ``State/converting``: how many pages the document has.
    public var pages: Int?

    public init(state: State, page: Int? = nil, pages: Int? = nil) {
        self.state = state
        self.page = page
        self.pages = pages
    }

    public var description: String {
        if state == .converting, let page, let pages { return "converting page \(page) of \(pages)" }
        return state.rawValue
    }
}

/// A page's image (``ParleyHTTP/pageImage(server:meeting:token:page:session:)``).
public struct PageImage: Sendable, Equatable {
    /// The image file: a PNG for a page of a PDF; an uploaded image exactly as it was uploaded.
    public var data: Data
    /// `image/png` or `image/jpeg`.
    public var contentType: String
    /// As the server sent it, quotes included (`"pg-…"`), for `If-None-Match` in a cache
    /// that revalidates; nil if the server sent none.
    public var etag: String?

    public init(data: Data, contentType: String, etag: String?) {
        self.data = data
        self.contentType = contentType
        self.etag = etag
    }
}
