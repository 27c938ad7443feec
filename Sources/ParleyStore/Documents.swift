import FoundationEssentials

/// A meeting's document as a store keeps it: its manifest (the web's JSON, opaque here) and
/// one image per page.
public struct StoredDocument: Equatable, Sendable {
    public struct Page: Equatable, Sendable {
        public var id: String
        public var contentType: String
        public var bytes: [UInt8]

        public init(id: String, contentType: String, bytes: [UInt8]) {
            self.id = id
            self.contentType = contentType
            self.bytes = bytes
        }
    }

    public var meeting: String
    public var document: String
    public var manifest: Data
    public var createdAt: Int64
    public var pages: [Page]

    public init(meeting: String, document: String, manifest: Data, createdAt: Int64, pages: [Page]) {
        self.meeting = meeting
        self.document = document
        self.manifest = manifest
        self.createdAt = createdAt
        self.pages = pages
    }
}

/// Documents in the database every machine shares, so that any web front serves any page
/// and losing the machine a document was uploaded to loses nothing. On one machine they
/// stay files in the data directory instead (`DocumentStore` in ParleyWeb).
public protocol DocumentRows: Sendable {
    /// Stores the document and all its pages at once: afterwards every page is there, or
    /// (when it throws) none.
    func storeDocument(_ document: StoredDocument) async throws(StoreError)
    /// The page, only if it belongs to one of `meeting`'s documents.
    func documentPage(meeting: String, page: String) async throws(StoreError) -> StoredDocument.Page?
    /// The page ids of `meeting`'s document `document`, in no particular order; nil if
    /// there is no such document.
    func documentPageIDs(meeting: String, document: String) async throws(StoreError) -> [String]?
    /// The bytes `meeting`'s documents take: page images and manifests.
    func documentBytes(meeting: String) async throws(StoreError) -> Int
    /// Removes the document and its pages at once; false if there was none.
    func deleteDocument(meeting: String, document: String) async throws(StoreError) -> Bool
}
