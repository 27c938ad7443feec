import Crypto
import Foundation
import SwiftASN1
import SystemPackage
import X509

#if canImport(Glibc)
import Glibc
#endif

/// The cluster's certificate authority: it issues each machine the certificate that admits it
/// to the zone links between machines (mutual TLS, both directions checked against this CA).
///
/// `parley cluster init` keeps it beside the machines' data directories, never on a machine:
/// whoever holds `ca.key` can admit a machine to the cluster. Time is an input (`now`), so
/// tests can issue certificates for any moment.
public struct ClusterAuthority: Sendable {
    /// Where the CA lives: `ca.pem` and `ca.key`.
    public let directory: String
    public let certificate: Certificate
    /// The CA certificate as PEM: what every machine trusts (`zone/tls/ca.pem`).
    public let certificatePEM: String
    private let key: Certificate.PrivateKey

    public static func certificatePath(in directory: String) -> String { directory + "/ca.pem" }
    public static func keyPath(in directory: String) -> String { directory + "/ca.key" }

    /// Loads the CA from `directory`, or makes it when neither file exists yet. One file
    /// without the other is an error, not a reason to make a new CA: machines may already
    /// trust the old one.
    public static func loadOrCreate(directory: String, now: Date) throws(ClusterCertificateError) -> ClusterAuthority {
        let certificatePath = certificatePath(in: directory), keyPath = keyPath(in: directory)
        let manager = FileManager.default
        switch (manager.fileExists(atPath: certificatePath), manager.fileExists(atPath: keyPath)) {
        case (true, true):
            return try load(directory: directory)
        case (true, false):
            throw .incompleteAuthority(missing: keyPath, present: certificatePath)
        case (false, true):
            throw .incompleteAuthority(missing: certificatePath, present: keyPath)
        case (false, false):
            let key = P256.Signing.PrivateKey()
            let authority = try create(directory: directory, key: key, now: now)
            try CredentialFiles.privateDirectory(directory)
            // The key first: a crash in between leaves a key without a certificate, which
            // the next run reports instead of silently making another CA.
            try CredentialFiles.write(key.pemRepresentation + "\n", to: keyPath, mode: 0o600)
            try CredentialFiles.write(authority.certificatePEM, to: certificatePath, mode: 0o644)
            return authority
        }
    }

    private static func load(directory: String) throws(ClusterCertificateError) -> ClusterAuthority {
        let certificatePath = certificatePath(in: directory), keyPath = keyPath(in: directory)
        let certificate = try attempt({ .unreadable(path: certificatePath, problem: $0) }) {
            try Certificate(pemEncoded: String(contentsOfFile: certificatePath, encoding: .utf8))
        }
        let key = try attempt({ .unreadable(path: keyPath, problem: $0) }) {
            try P256.Signing.PrivateKey(pemRepresentation: String(contentsOfFile: keyPath, encoding: .utf8))
        }
        // A swapped or restored-from-elsewhere key would sign certificates nobody accepts.
        guard Certificate.PublicKey(key.publicKey) == certificate.publicKey else {
            throw .keyMismatch(certificate: certificatePath, key: keyPath)
        }
        return try ClusterAuthority(directory: directory, certificate: certificate, key: Certificate.PrivateKey(key))
    }

    private static func create(directory: String, key: P256.Signing.PrivateKey, now: Date) throws(ClusterCertificateError) -> ClusterAuthority {
        let signing = Certificate.PrivateKey(key)
        let start = wholeSeconds(now)
        let certificate = try attempt({ .cannotIssue(subject: "the cluster CA", problem: $0) }) {
            let name = try DistinguishedName {
                CommonName("Parley cluster CA")
                OrganizationName("Parley")
            }
            return try Certificate(
                version: .v3, serialNumber: randomSerial(), publicKey: signing.publicKey,
                notValidBefore: start - 3600, notValidAfter: years(10, after: start),
                issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    // Path length 0: it signs machine certificates only, never another CA.
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                    Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                    SubjectKeyIdentifier(hash: signing.publicKey)
                },
                issuerPrivateKey: signing)
        }
        return try ClusterAuthority(directory: directory, certificate: certificate, key: signing)
    }

    private init(directory: String, certificate: Certificate, key: Certificate.PrivateKey) throws(ClusterCertificateError) {
        self.directory = directory
        self.certificate = certificate
        self.key = key
        certificatePEM = try Self.attempt({ .cannotIssue(subject: "the cluster CA", problem: $0) }) {
            try certificate.serializeAsPEM().pemString + "\n"
        }
    }

    /// A fresh key and a certificate for `machine`, valid for two years from an hour before
    /// `now` (an hour of slack for clocks that lag). It serves both ends of a link
    /// (serverAuth and clientAuth): every machine accepts links and makes them.
    ///
    /// - Parameter address: the machine's address from the cluster configuration; an IP
    ///   address SAN if it is one (IPv4 or IPv6), else a DNS name SAN.
    public func issueMachineCertificate(machine: String, address: String, now: Date) throws(ClusterCertificateError)
        -> (certificatePEM: String, keyPEM: String) {
        let machineKey = P256.Signing.PrivateKey()
        let publicKey = Certificate.PublicKey(machineKey.publicKey)
        let start = Self.wholeSeconds(now)
        let authorityKeyID = (try? certificate.extensions.subjectKeyIdentifier)?.keyIdentifier
        var names: [GeneralName] = [.dnsName(machine)]
        if let ip = Self.ipAddressBytes(address) {
            names.append(.ipAddress(ASN1OctetString(contentBytes: ip[...])))
        } else if !address.isEmpty, address != machine {
            names.append(.dnsName(address))
        }
        let issued = try Self.attempt({ .cannotIssue(subject: "machine \(machine) (\(address))", problem: $0) }) {
            try Certificate(
                version: .v3, serialNumber: Self.randomSerial(), publicKey: publicKey,
                notValidBefore: start - 3600, notValidAfter: Self.years(2, after: start),
                issuer: self.certificate.subject,
                subject: try DistinguishedName {
                    CommonName(machine)
                    OrganizationName("Parley")
                },
                signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    Critical(KeyUsage(digitalSignature: true))
                    try ExtendedKeyUsage([.serverAuth, .clientAuth])
                    SubjectAlternativeNames(names)
                    SubjectKeyIdentifier(hash: publicKey)
                    // Lets TLS stacks find the issuer by key, not only by name.
                    if let authorityKeyID { AuthorityKeyIdentifier(keyIdentifier: authorityKeyID) }
                },
                issuerPrivateKey: self.key)
        }
        let pem = try Self.attempt({ .cannotIssue(subject: "machine \(machine)", problem: $0) }) {
            try issued.serializeAsPEM().pemString + "\n"
        }
        return (pem, machineKey.pemRepresentation + "\n")
    }

    /// 20 random bytes, the most RFC 5280 allows, kept positive and without a leading zero so
    /// that DER encodes exactly 20 (the library's own random serial can grow to 21).
    private static func randomSerial() -> Certificate.SerialNumber {
        var generator = SystemRandomNumberGenerator()
        var bytes = (0..<20).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        bytes[0] = bytes[0] & 0x3F | 0x40
        return Certificate.SerialNumber(bytes: bytes)
    }

    /// X.509 times have no fractions of a second.
    private static func wholeSeconds(_ date: Date) -> Date {
        Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded(.down))
    }

    private static func years(_ count: Int, after date: Date) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar.date(byAdding: .year, value: count, to: date) ?? date + Double(count) * 365 * 86_400
    }

    /// The 4 or 16 bytes of an IPv4 or IPv6 address (brackets allowed), nil for a host name.
    static func ipAddressBytes(_ address: String) -> [UInt8]? {
        let bare = address.hasPrefix("[") && address.hasSuffix("]") ? String(address.dropFirst().dropLast()) : address
        var buffer = [UInt8](repeating: 0, count: 16)
        if inet_pton(AF_INET, bare, &buffer) == 1 { return Array(buffer.prefix(4)) }
        if inet_pton(AF_INET6, bare, &buffer) == 1 { return buffer }
        return nil
    }

    /// Runs `body`, turning whatever it throws into a ``ClusterCertificateError``.
    private static func attempt<T>(_ wrap: (String) -> ClusterCertificateError,
                                   _ body: () throws -> T) throws(ClusterCertificateError) -> T {
        do { return try body() } catch { throw wrap(String(describing: error)) }
    }
}

/// A machine's TLS files, in `zone/tls` of its data directory (see `ZonePaths.tlsDirectory`):
/// `ca.pem` (the CA it trusts), `machine.pem` (its certificate) and `machine.key`.
public enum MachineCredentials {
    public static let fileNames = ["ca.pem", "machine.pem", "machine.key"]

    /// Issues `machine` its credentials and writes them into `tlsDirectory` (mode 0700; the
    /// key 0600, the certificates 0644). Returns false, keeping them, when all three exist:
    /// running `parley cluster init` again must not change a running machine's credentials.
    public static func write(ca: ClusterAuthority, machine: String, address: String, into tlsDirectory: String,
                             now: Date) throws(ClusterCertificateError) -> Bool {
        let paths = fileNames.map { tlsDirectory + "/" + $0 }
        let missing = paths.filter { !FileManager.default.fileExists(atPath: $0) }
        guard !missing.isEmpty else {
            // Kept credentials from another CA would be refused by every newly issued peer.
            let kept = try? Certificate(pemEncoded: String(contentsOfFile: paths[0], encoding: .utf8))
            guard kept == ca.certificate else {
                throw .otherAuthority(path: paths[0], authority: ClusterAuthority.certificatePath(in: ca.directory))
            }
            return false
        }
        guard missing.count == paths.count else { throw .incompleteCredentials(directory: tlsDirectory, missing: missing) }
        let issued = try ca.issueMachineCertificate(machine: machine, address: address, now: now)
        try CredentialFiles.privateDirectory(tlsDirectory)
        // The key first, the CA last: each file appears whole (see CredentialFiles.write).
        try CredentialFiles.write(issued.keyPEM, to: paths[2], mode: 0o600)
        try CredentialFiles.write(issued.certificatePEM, to: paths[1], mode: 0o644)
        try CredentialFiles.write(ca.certificatePEM, to: paths[0], mode: 0o644)
        return true
    }
}

public enum ClusterCertificateError: Error, Equatable, Sendable, CustomStringConvertible {
    case incompleteAuthority(missing: String, present: String)
    case keyMismatch(certificate: String, key: String)
    case incompleteCredentials(directory: String, missing: [String])
    case otherAuthority(path: String, authority: String)
    case unreadable(path: String, problem: String)
    case cannotIssue(subject: String, problem: String)
    case cannotWrite(path: String, problem: String)

    public var description: String {
        switch self {
        case .incompleteAuthority(let missing, let present):
            "the cluster CA is incomplete: \(present) exists but \(missing) does not. Restore \(missing) from a backup; "
                + "if no machine has certificates from this CA yet, delete \(present) and run 'parley cluster init' again to make a new CA"
        case .keyMismatch(let certificate, let key):
            "\(key) is not the private key of the CA certificate \(certificate); restore the pair that belongs together from a backup"
        case .incompleteCredentials(let directory, let missing):
            "\(directory) lacks \(missing.joined(separator: ", ")) but has the other TLS files of its machine; "
                + "delete the rest of \(directory) and run 'parley cluster init' again to issue a complete set"
        case .otherAuthority(let path, let authority):
            "\(path) is not the CA certificate \(authority), so this machine and the ones it issues would refuse each other's links; "
                + "restore the CA that issued it, or delete the tls directory of every machine and run 'parley cluster init' again"
        case .unreadable(let path, let problem):
            "cannot read \(path): \(problem); restore it from a backup"
        case .cannotIssue(let subject, let problem):
            "cannot issue a certificate for \(subject): \(problem); machine names and addresses must be ASCII host names or IP addresses"
        case .cannotWrite(let path, let problem):
            "cannot write \(path): \(problem); check that its directory is writable by this user"
        }
    }
}

/// Writing key and certificate files: whole or not at all, never readable by others first.
enum CredentialFiles {
    /// Makes `path` (and missing parents) and sets it to mode 0700.
    static func privateDirectory(_ path: String) throws(ClusterCertificateError) {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw .cannotWrite(path: path, problem: String(describing: error))
        }
        guard chmod(path, 0o700) == 0 else { throw .cannotWrite(path: path, problem: String(cString: strerror(errno))) }
    }

    /// Writes a temporary file created 0600 (so a key is never briefly readable by others),
    /// sets `mode`, then renames it into place: a reader sees the old file or the whole new one.
    static func write(_ text: String, to path: String, mode: mode_t) throws(ClusterCertificateError) {
        let temporary = path + ".tmp-\(getpid())"
        do {
            let file = try FileDescriptor.open(FilePath(temporary), .writeOnly, options: [.create, .truncate],
                                               permissions: .ownerReadWrite)
            try file.closeAfter { _ = try file.writeAll(Array(text.utf8)) }
        } catch {
            unlink(temporary)
            throw .cannotWrite(path: path, problem: String(describing: error))
        }
        guard chmod(temporary, mode) == 0, rename(temporary, path) == 0 else {
            let problem = String(cString: strerror(errno))
            unlink(temporary)
            throw .cannotWrite(path: path, problem: problem)
        }
    }
}
