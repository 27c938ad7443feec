import FoundationEssentials
import ParleyZone
import SystemPackage

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The files a zone needs before its first process starts.
enum ZoneFiles {
    /// Creates the data, zone (0700) and logs directories, the zone secret if it is missing,
    /// and writes the configuration every process reads (``ZonePaths/resolvedConfiguration``).
    static func prepare(paths: ZonePaths, configuration: ZoneConfiguration) throws {
        let files = FileManager.default
        try files.createDirectory(atPath: paths.zoneDirectory, withIntermediateDirectories: true)
        guard chmod(paths.zoneDirectory, 0o700) == 0 else {
            throw SupervisorError.cannotPrepare(path: paths.zoneDirectory, errno: errno)
        }
        // Every process's log sits in one directory; ZonePaths names the files, not the folder.
        let logs = FilePath(paths.log(of: "supervisor")).removingLastComponent()
        try files.createDirectory(atPath: logs.string, withIntermediateDirectories: true)
        try createSecretIfMissing(at: paths.zoneSecret)

        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Whole or not at all: a process starting during a rewrite never reads half a file.
        let temporary = paths.resolvedConfiguration + ".tmp"
        try encoder.encode(configuration).write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, paths.resolvedConfiguration) == 0 else {
            throw SupervisorError.cannotPrepare(path: paths.resolvedConfiguration, errno: errno)
        }
    }

    /// 32 random bytes as 64 hex digits, mode 0600. An existing secret is kept: processes on
    /// other machines will share it.
    static func createSecretIfMissing(at path: String) throws {
        let file: FileDescriptor
        do {
            file = try FileDescriptor.open(FilePath(path), .writeOnly, options: [.create, .exclusiveCreate],
                                           permissions: .ownerReadWrite)
        } catch Errno.fileExists {
            return
        }
        var generator = SystemRandomNumberGenerator()
        let hex = (0..<32).map { _ in
            let byte = UInt8.random(in: .min ... .max, using: &generator)
            return String(byte, radix: 16).count == 1 ? "0" + String(byte, radix: 16) : String(byte, radix: 16)
        }.joined()
        try file.closeAfter { _ = try file.writeAll(Array((hex + "\n").utf8)) }
    }
}
