import Foundation
import ParleyZone

#if canImport(Glibc)
import Glibc
#endif

/// The files every machine of a cluster shares, made once by `parley cluster init`.
public enum ClusterFiles {
    /// Makes `origin/zone/secret` (0600, in a 0700 directory) unless it exists.
    public static func prepare(origin: String) throws {
        let zone = origin + "/zone"
        try FileManager.default.createDirectory(atPath: zone, withIntermediateDirectories: true)
        guard chmod(zone, 0o700) == 0 else { throw SupervisorError.cannotPrepare(path: zone, errno: errno) }
        try ZoneFiles.createSecretIfMissing(at: zone + "/secret")
    }

    /// Copies each of `files` (paths relative to the data directories) from `origin` to
    /// `data`, keeping mode 0600 for secrets, unless `data` has it already.
    public static func copyShared(from origin: String, to data: String, files: [String]) throws {
        let manager = FileManager.default
        for file in files {
            let target = data + "/" + file
            guard !manager.fileExists(atPath: target) else { continue }
            let directory = (target as NSString).deletingLastPathComponent
            try manager.createDirectory(atPath: directory, withIntermediateDirectories: true)
            guard chmod(directory, 0o700) == 0 else { throw SupervisorError.cannotPrepare(path: directory, errno: errno) }
            try manager.copyItem(atPath: origin + "/" + file, toPath: target)
            guard chmod(target, file.hasSuffix(".pub") ? 0o644 : 0o600) == 0 else {
                throw SupervisorError.cannotPrepare(path: target, errno: errno)
            }
        }
    }
}
