import FoundationEssentials
import NIOSSL

/// TLS on the client port (`--tls-cert`, `--tls-key`, or the zone configuration's `tls`):
/// the certificate chain and key clients see, in PEM files.
public struct ServerTLS: Sendable, Equatable {
    public var certificatePath: String
    public var keyPath: String

    public init(certificatePath: String, keyPath: String) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
    }

    /// The server side of TLS, read from the files now: a server with TLS configured but
    /// unreadable files does not start (it never falls back to plain HTTP).
    public func configuration() throws(TLSFileError) -> TLSConfiguration {
        let (chain, key) = try Self.read(certificatePath: certificatePath, keyPath: keyPath)
        return TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
    }

    /// A PEM certificate chain (leaf first) and its private key.
    public static func read(certificatePath: String, keyPath: String) throws(TLSFileError) -> ([NIOSSLCertificate], NIOSSLPrivateKey) {
        let missing = [certificatePath, keyPath].filter { !FileManager.default.fileExists(atPath: $0) }
        guard missing.isEmpty else { throw .missing(missing) }
        let chain = try certificates(at: certificatePath)
        let key: NIOSSLPrivateKey
        do { key = try NIOSSLPrivateKey(file: keyPath, format: .pem) } catch { throw .unreadable(keyPath, "\(error) (is it a PEM private key, readable by this user?)") }
        return (chain, key)
    }

    /// The PEM certificates in a file: at least one.
    public static func certificates(at path: String) throws(TLSFileError) -> [NIOSSLCertificate] {
        let certificates: [NIOSSLCertificate]
        do { certificates = try NIOSSLCertificate.fromPEMFile(path) } catch { throw .unreadable(path, "\(error)") }
        guard !certificates.isEmpty else { throw .unreadable(path, "it holds no PEM certificate") }
        return certificates
    }
}

public enum TLSFileError: Error, Equatable, Sendable, CustomStringConvertible {
    case missing([String])
    case unreadable(String, String)

    /// The first file at fault, and what is wrong with it.
    public var path: String {
        switch self {
        case .missing(let paths): paths.first ?? ""
        case .unreadable(let path, _): path
        }
    }

    public var problem: String {
        switch self {
        case .missing: "not found"
        case .unreadable(_, let problem): problem
        }
    }

    public var description: String {
        switch self {
        case .missing(let paths): "TLS file\(paths.count == 1 ? "" : "s") not found: \(paths.joined(separator: ", "))"
        case .unreadable(let path, let problem): "cannot read the TLS file \(path): \(problem)"
        }
    }
}
