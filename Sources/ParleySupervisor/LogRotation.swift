import FoundationEssentials

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Keeps a process's log file (`DATA/logs/NAME.log`) from growing without bound: once it is
/// larger than `logs.maxFileBytes`, `NAME.log.1` … `NAME.log.N` move up one (the oldest is
/// deleted), the file is copied to `NAME.log.1`, and then emptied in place.
///
/// Emptied rather than moved: the process writes through the descriptor it was started with
/// (opened to append), so its next line lands at the start of the emptied file with no
/// signal or reopen. The price is the lines written between the copy and the emptying,
/// which are lost: a few at most, in a file this large.
public enum LogRotation {
    /// Rotates `path` if it is larger than `maxBytes`; returns whether it did.
    @discardableResult
    public static func rotateIfLarger(_ path: String, maxBytes: Int, keep: Int) throws -> Bool {
        let files = FileManager.default
        guard let size = (try? files.attributesOfItem(atPath: path))?[.size] as? Int, size > maxBytes else { return false }
        try? files.removeItem(atPath: "\(path).\(keep)")
        for index in stride(from: keep - 1, through: 1, by: -1) where files.fileExists(atPath: "\(path).\(index)") {
            try files.moveItem(atPath: "\(path).\(index)", toPath: "\(path).\(index + 1)")
        }
        try files.copyItem(atPath: path, toPath: "\(path).1")
        guard truncate(path, 0) == 0 else { throw RotationFailed(path: path, errno: errno) }
        return true
    }

    public struct RotationFailed: Error, CustomStringConvertible {
        public var path: String
        public var errno: Int32
        public var description: String { "cannot empty \(path) after copying it (errno \(errno))" }
    }
}
