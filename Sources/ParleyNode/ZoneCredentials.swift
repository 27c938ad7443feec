import FoundationEssentials
import NIOCore
import NIOSSL
import ParleyServer
import ParleyZone

/// What a zone process proves itself with on its links to the others.
///
/// - The zone secret names the process (``ZoneSecret``): every link carries it.
/// - In a cluster (a zone configuration with `machines`), links cross real networks and
///   carry meeting content, so they also run over mutual TLS with the cluster's
///   certificates (``ZoneTLS``). On one machine the links stay on loopback, in the clear.
public struct ZoneCredentials: Sendable {
    public let secret: ZoneSecret
    /// nil on a zone of one machine.
    public let tls: ZoneTLS?

    public init(secret: ZoneSecret, tls: ZoneTLS?) {
        self.secret = secret
        self.tls = tls
    }

    /// Reads the secret, and in a cluster the machine's TLS files, from the data directory.
    /// A cluster without its TLS files does not start: links between its machines must not
    /// run in the clear.
    public static func load(paths: ZonePaths, configuration: ZoneConfiguration) throws -> ZoneCredentials {
        let secret = try ZoneSecret(contentsOf: paths.zoneSecret)
        guard !configuration.machines.isEmpty else { return ZoneCredentials(secret: secret, tls: nil) }
        return ZoneCredentials(secret: secret, tls: try ZoneTLS(paths: paths))
    }

    /// The scheme of the zone addresses this process gives out.
    public var scheme: String { tls == nil ? "http" : "https" }
}

/// A machine's side of the cluster's mutual TLS: its certificate and key, and the cluster's
/// CA, which must have signed the certificate of every peer, in both directions.
///
/// Membership is what is checked: any certificate the cluster's CA signed is accepted, not a
/// particular machine's (addresses change; the CA issues only machine certificates). Which
/// process is at the other end is then proven by the zone secret.
public struct ZoneTLS: Sendable {
    /// For accepting links: a client certificate is required.
    public let server: TLSConfiguration
    /// For making links.
    public let client: TLSConfiguration
    /// How long closing a link waits for the peer's TLS close_notify.
    static let shutdownTimeout = TimeAmount.milliseconds(250)
    /// The name sent as SNI: links go to IP addresses, which SNI may not carry.
    public static let serverName = "parley-zone"

    public init(paths: ZonePaths) throws(ZoneTLSError) {
        try self.init(caPath: paths.clusterCA, certificatePath: paths.machineCertificate, keyPath: paths.machineKey)
    }

    public init(caPath: String, certificatePath: String, keyPath: String) throws(ZoneTLSError) {
        let missing = [caPath, certificatePath, keyPath].filter { !FileManager.default.fileExists(atPath: $0) }
        guard missing.isEmpty else { throw .missing(missing) }
        let ca: [NIOSSLCertificate]
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        do {
            ca = try ServerTLS.certificates(at: caPath)
            (chain, key) = try ServerTLS.read(certificatePath: certificatePath, keyPath: keyPath)
        } catch {
            throw .unreadable(error.path, error.problem)
        }

        var server = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                              privateKey: .privateKey(key))
        server.trustRoots = .certificates(ca)
        server.certificateVerification = .noHostnameVerification
        server.minimumTLSVersion = .tlsv13
        var client = TLSConfiguration.makeClientConfiguration()
        client.certificateChain = chain.map { .certificate($0) }
        client.privateKey = .privateKey(key)
        client.trustRoots = .certificates(ca)
        client.certificateVerification = .noHostnameVerification
        client.minimumTLSVersion = .tlsv13
        // A link to a machine cut off by a partition never gets the peer's close_notify. The
        // default wait for it (5 s) kept every process from its new manager for 5 s after the
        // lease moved on, because a link is done only once its TLS shutdown is.
        server.shutdownTimeout = Self.shutdownTimeout
        client.shutdownTimeout = Self.shutdownTimeout
        self.server = server
        self.client = client
    }
}

public enum ZoneTLSError: Error, Equatable, Sendable, CustomStringConvertible {
    case missing([String])
    case unreadable(String, String)
    /// A peer's zone address is not `https`, so the link would run in the clear.
    case plainAddress(String)

    public var description: String {
        switch self {
        case .missing(let paths):
            "this zone spans machines, so its links need the cluster's TLS credentials, and \(paths.joined(separator: ", ")) "
                + "\(paths.count == 1 ? "is" : "are") missing; 'parley cluster init' makes them (see the README, \"A cluster\")"
        case .unreadable(let path, let problem):
            "cannot read the cluster TLS file \(path): \(problem)"
        case .plainAddress(let url):
            "a cluster's zone links use TLS, but \(url) is not an https address (is that process running without the cluster's configuration?)"
        }
    }
}
