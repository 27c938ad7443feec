#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How much a converter has put in its output directory, at any depth: what it would cost
/// the disk, and how many names.
struct OutputUsage: Equatable, Sendable {
    var bytes = 0
    var entries = 0

    /// Whether it stays within `limits`' budget for one converter run.
    func fits(_ limits: ConverterLimits) -> Bool {
        bytes <= limits.outputBytes && entries <= limits.outputEntries
    }
}

/// The output directory is the one place a converter writes that the server reads back,
/// and a converter may be hostile: anything in it may be a symbolic link to a file of the
/// server's, a FIFO that blocks whoever opens it, a hard link, or far too much. Nothing
/// here follows a link, blocks on a FIFO, or reads more than a bound; page images are
/// copied into files the server creates, so no inode the converter made is ever renamed
/// into the store or served.
enum ConverterOutput {
    /// What `directory` holds, found without following links. Stops counting as soon as
    /// the usage no longer fits `limits` (so a directory of millions of names costs no more
    /// than the budget to look at). A directory that cannot be opened counts as empty: the
    /// converter made it unreadable to its own loss, since its pages will not be collected.
    static func usage(of directory: String, limits: ConverterLimits) -> OutputUsage {
        var usage = OutputUsage()
        let root = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard root >= 0 else { return usage }
        // Directories still to read, each open (openat from its parent, never by a path a
        // converter could swap for a link meanwhile). At most `outputEntries` + 1 are open.
        var pending = [root]
        defer { pending.forEach { close($0) } }
        while let descriptor = pending.popLast() {
            guard let stream = fdopendir(descriptor) else {
                close(descriptor)
                continue
            }
            defer { closedir(stream) }
            while let entry = readdir(stream) {
                let name = entryName(entry)
                if name == "." || name == ".." { continue }
                var info = stat()
                guard fstatat(dirfd(stream), name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
                usage.entries += 1
                usage.bytes += max(Int(info.st_size), 0)
                guard usage.fits(limits) else { return usage }
                if (info.st_mode & S_IFMT) == S_IFDIR {
                    let child = openat(dirfd(stream), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                    if child >= 0 { pending.append(child) }
                }
            }
        }
        return usage
    }

    /// Why a page image cannot be taken, as a phrase after "wrote page N".
    enum Refusal: Error, Equatable, Sendable, CustomStringConvertible {
        case symbolicLink
        case notRegularFile
        case hardLink
        case tooLarge(limitBytes: Int)
        case notPNG
        /// It changed size while it was copied: something still writes it.
        case changed
        case unreadable(errno: Int32)
        /// The server could not write its copy.
        case cannotCopy(errno: Int32)

        var description: String {
            switch self {
            case .symbolicLink: "as a symbolic link"
            case .notRegularFile: "that is not a regular file"
            case .hardLink: "that has other names (a hard link)"
            case .tooLarge(let limit): "larger than \(DocumentError.describe(bytes: limit))"
            case .notPNG: "that is not a PNG image"
            case .changed: "that changed while it was read"
            case .unreadable(let error): "that cannot be opened (errno \(error))"
            case .cannotCopy(let error): "that the server could not copy (errno \(error))"
            }
        }
    }

    /// Copies `name` in the directory open as `directory` to a new file `destination` (which
    /// must not exist), if it is a regular file with one name, at most `maxBytes`, starting
    /// with `signature`. Opened without following a link and without blocking (a FIFO opens
    /// at once and is then refused); exactly the size it had when opened is copied.
    static func copy(_ name: String, in directory: Int32, to destination: String, maxBytes: Int,
                     signature: [UInt8]) -> Result<Void, Refusal> {
        let source = openat(directory, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        guard source >= 0 else { return .failure(errno == ELOOP ? .symbolicLink : .unreadable(errno: errno)) }
        defer { close(source) }
        var info = stat()
        guard fstat(source, &info) == 0 else { return .failure(.unreadable(errno: errno)) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { return .failure(.notRegularFile) }
        guard info.st_nlink == 1 else { return .failure(.hardLink) }
        let size = Int(info.st_size)
        guard size <= maxBytes else { return .failure(.tooLarge(limitBytes: maxBytes)) }

        let copy = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o640)
        guard copy >= 0 else { return .failure(.cannotCopy(errno: errno)) }
        var copied = 0
        let outcome: Result<Void, Refusal> = {
            var buffer = [UInt8](repeating: 0, count: 64 << 10)
            while copied < size {
                let count = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, min($0.count, size - copied)) }
                if count < 0, errno == EINTR { continue }
                guard count > 0 else { return .failure(count == 0 ? .changed : .unreadable(errno: errno)) }
                if copied < signature.count {
                    let checked = min(count, signature.count - copied)
                    guard Array(buffer[0..<checked]) == Array(signature[copied..<(copied + checked)]) else { return .failure(.notPNG) }
                }
                var written = 0
                while written < count {
                    let wrote = buffer.withUnsafeBytes { write(copy, $0.baseAddress! + written, count - written) }
                    if wrote < 0, errno == EINTR { continue }
                    guard wrote > 0 else { return .failure(.cannotCopy(errno: errno)) }
                    written += wrote
                }
                copied += count
            }
            return copied >= signature.count ? .success(()) : .failure(.notPNG)
        }()
        close(copy)
        if case .failure = outcome { unlink(destination) }
        return outcome
    }

    private static func entryName(_ entry: UnsafeMutablePointer<dirent>) -> String {
        withUnsafePointer(to: &entry.pointee.d_name) { tuple in
            tuple.withMemoryRebound(to: CChar.self, capacity: MemoryLayout.size(ofValue: entry.pointee.d_name)) { String(cString: $0) }
        }
    }
}
