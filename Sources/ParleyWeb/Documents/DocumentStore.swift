import FoundationEssentials
import NIOPosix
import SystemPackage

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What is kept about a stored document, in `document.json` next to its pages.
struct DocumentManifest: Codable, Equatable, Sendable {
    struct Page: Codable, Equatable, Sendable {
        var id: String
        var file: String
        var contentType: String
    }

    var document: String
    var title: String
    var kind: DocumentKind
    /// The converter that rendered a PDF; nil for an image.
    var converter: String?
    var sourceBytes: Int
    var createdAtMs: Int64
    var pages: [Page]
}

/// Documents on disk, under `DATA/documents`:
///
///     documents/{meetingId}/{documentId}/document.json     the manifest
///     documents/{meetingId}/{documentId}/source.pdf        the upload (PDFs)
///     documents/{meetingId}/{documentId}/{pageId}.png|jpg  one image per page
///     documents/.incoming/{pid}-{random}/                  work in progress
///
/// A document is staged in `.incoming`, synced, and renamed into its meeting's directory
/// in one step: a document is visible whole or not at all, whatever crashes. A page is
/// found only under the meeting it was uploaded to, so one meeting's token can never reach
/// another meeting's pages.
struct DocumentStore: Sendable {
    /// Absolute, whatever the data directory was given as: every path made here ends up on
    /// a converter's or bwrap's command line, and those start in other directories.
    let root: String

    init(dataDirectory: String) {
        root = Self.absolute(dataDirectory) + "/documents"
    }

    /// `path` made absolute against `directory` (this process's working directory), as the
    /// kernel would resolve it now: `.` components are dropped, `..` kept for the kernel.
    static func absolute(_ path: String, in directory: String = FileManager.default.currentDirectoryPath) -> String {
        let joined = path.hasPrefix("/") ? path : directory + "/" + path
        let parts = joined.split(separator: "/").filter { $0 != "." }
        return "/" + parts.joined(separator: "/")
    }

    var incomingRoot: String { root + "/.incoming" }

    /// A fresh private work directory under `.incoming`.
    func makeIncoming() throws -> String {
        let path = incomingRoot + "/\(getpid())-" + randomSuffix()
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        return path
    }

    /// Makes the staged document directory `staged` visible as `meeting`'s document
    /// `document`: syncs every file in it and the directory, renames it into place, and
    /// syncs the meeting directory so the rename survives a crash.
    func install(staged: String, meeting: String, document: String) throws {
        precondition(DocumentIDs.isSafeMeetingID(meeting) && DocumentIDs.isDocumentID(document))
        let meetingDirectory = root + "/" + meeting
        try FileManager.default.createDirectory(atPath: meetingDirectory, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: staged) {
            try Self.sync(staged + "/" + name)
        }
        try Self.sync(staged)
        guard rename(staged, meetingDirectory + "/" + document) == 0 else {
            throw StoreFailure("cannot move \(staged) to \(meetingDirectory)/\(document): errno \(errno)")
        }
        try Self.sync(meetingDirectory)
    }

    /// `page` of `meeting`, opened, or nil if that meeting has no such page. Looks in each
    /// of the meeting's documents; a meeting has few. Opening is the lookup, so a page whose
    /// document is deleted meanwhile is either open (and served whole: the file lives while
    /// it is open) or not found; never found and then unreadable.
    func openPage(_ page: String, meeting: String) -> OpenPage? {
        guard DocumentIDs.isPageID(page), DocumentIDs.isSafeMeetingID(meeting) else { return nil }
        let meetingDirectory = root + "/" + meeting
        guard let documents = try? FileManager.default.contentsOfDirectory(atPath: meetingDirectory) else { return nil }
        for document in documents where DocumentIDs.isDocumentID(document) {
            for (fileExtension, contentType) in DocumentKind.pageContentTypes {
                let descriptor = open("\(meetingDirectory)/\(document)/\(page).\(fileExtension)",
                                      O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
                guard descriptor >= 0 else { continue }
                var info = stat()
                guard fstat(descriptor, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
                    close(descriptor)
                    continue
                }
                return OpenPage(descriptor: descriptor, size: Int(info.st_size), contentType: contentType)
            }
        }
        return nil
    }

    /// The manifest of a stored document, if there is one.
    func manifest(_ document: String, meeting: String) -> DocumentManifest? {
        guard DocumentIDs.isDocumentID(document), DocumentIDs.isSafeMeetingID(meeting),
              let data = FileManager.default.contents(atPath: "\(root)/\(meeting)/\(document)/document.json")
        else { return nil }
        return try? JSONDecoder().decode(DocumentManifest.self, from: data)
    }

    /// The bytes `meeting`'s documents take: every file of every document (pages, manifest,
    /// the uploaded PDF). What the meeting's quota counts on one machine.
    func storedBytes(meeting: String) -> Int {
        guard DocumentIDs.isSafeMeetingID(meeting) else { return 0 }
        let meetingDirectory = root + "/" + meeting
        guard let documents = try? FileManager.default.contentsOfDirectory(atPath: meetingDirectory) else { return 0 }
        return documents.filter { DocumentIDs.isDocumentID($0) }.reduce(0) { $0 + Self.fileBytes(in: meetingDirectory + "/" + $1) }
    }

    /// The sizes of the regular files in `directory` (a document's), added up: all of them,
    /// or those of `names`.
    static func fileBytes(in directory: String, names: [String]? = nil) -> Int {
        var total = 0
        for name in names ?? (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
            var info = stat()
            if stat(directory + "/" + name, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG { total += Int(info.st_size) }
        }
        return total
    }

    /// Removes `meeting`'s document `document`; false if there is none. It disappears in
    /// one step (a rename into `.incoming`, synced), so a page is served whole or not at
    /// all; the files are removed after.
    func remove(_ document: String, meeting: String) throws -> Bool {
        guard DocumentIDs.isDocumentID(document), DocumentIDs.isSafeMeetingID(meeting) else { return false }
        let meetingDirectory = root + "/" + meeting
        let discarded = try makeIncoming()
        guard rename(meetingDirectory + "/" + document, discarded + "/" + document) == 0 else {
            let failure = errno
            try? FileManager.default.removeItem(atPath: discarded)
            if failure == ENOENT { return false }
            throw StoreFailure("cannot move \(meetingDirectory)/\(document) away: errno \(failure)")
        }
        try Self.sync(meetingDirectory)
        try FileManager.default.removeItem(atPath: discarded)
        return true
    }

    /// Removes work directories that a crashed process left in `.incoming`: those not
    /// touched for `olderThanSeconds`, which is far longer than any conversion may run, so
    /// a live conversion of another process sharing the data directory is never removed.
    /// Returns how many it removed.
    @discardableResult
    func sweepIncoming(olderThanSeconds: Int, now: Date = Date()) -> Int {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: incomingRoot) else { return 0 }
        var removed = 0
        for name in names {
            let path = incomingRoot + "/" + name
            guard let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date,
                  now.timeIntervalSince(modified) > Double(olderThanSeconds)
            else { continue }
            if (try? FileManager.default.removeItem(atPath: path)) != nil { removed += 1 }
        }
        return removed
    }

    /// Writes a new file (never over an existing one) and syncs it.
    static func write(_ bytes: some Sequence<UInt8>, to path: String) throws {
        let descriptor = try FileDescriptor.open(FilePath(path), .writeOnly, options: [.create, .exclusiveCreate],
                                                 permissions: [.ownerReadWrite, .groupRead])
        try descriptor.closeAfter {
            _ = try descriptor.writeAll(bytes)
            guard fsync(descriptor.rawValue) == 0 else { throw StoreFailure("cannot sync \(path): errno \(errno)") }
        }
    }

    /// fsync on a file or a directory.
    static func sync(_ path: String) throws {
        let descriptor = try FileDescriptor.open(FilePath(path), .readOnly)
        try descriptor.closeAfter {
            guard fsync(descriptor.rawValue) == 0 else { throw StoreFailure("cannot sync \(path): errno \(errno)") }
        }
    }

    private func randomSuffix() -> String {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyz")
        return String((0..<12).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] })
    }
}

/// A page file held open for serving; closed when the last reference goes (the response is
/// written, or dropped unwritten).
final class OpenPage: Sendable {
    let descriptor: Int32
    let size: Int
    let contentType: String

    init(descriptor: Int32, size: Int, contentType: String) {
        self.descriptor = descriptor
        self.size = size
        self.contentType = contentType
    }

    deinit { close(descriptor) }

    /// Up to `count` bytes from `offset`, read on NIO's thread pool (a disk read blocks).
    /// Empty at the end of the file.
    func read(at offset: Int, count: Int) async throws -> [UInt8] {
        try await NIOThreadPool.singleton.runIfActive { [self] in
            var bytes = [UInt8](repeating: 0, count: count)
            while true {
                let read = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, count, off_t(offset)) }
                if read < 0, errno == EINTR { continue }
                guard read >= 0 else { throw StoreFailure("cannot read a page: errno \(errno)") }
                return Array(bytes.prefix(read))
            }
        }
    }
}

struct StoreFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
