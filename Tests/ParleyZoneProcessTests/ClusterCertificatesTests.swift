import Foundation
import ParleyChaos
import ParleySupervisor
import ParleyZone
import Subprocess
import SwiftASN1
import SystemPackage
import Testing
// The non-deprecated way to validate at a given moment (RFC5280Policy(validationTime:) is deprecated).
@_spi(FixedExpiryValidationTime) import X509

#if canImport(Glibc)
import Glibc
import ParleyTestSupport
#endif

/// `parley cluster init`'s certificates: a cluster CA, and per machine a certificate it signed
/// that serves both ends of a zone link.
@Suite("ClusterCertificates: the cluster CA and the machines' TLS credentials", MachineLoad.server)
struct ClusterCertificatesTests {
    /// A fixed moment: time is an input, so nothing here depends on the clock.
    static let now = Date(timeIntervalSince1970: 1_780_000_000)

    @Test("a machine certificate verifies against its CA, names the machine and its address, and serves both ends of a link")
    func machineCertificateVerifies() async throws {
        let directory = try HarnessDirectory()
        defer { directory.remove() }
        let ca = try ClusterAuthority.loadOrCreate(directory: directory.path + "/ca", now: Self.now)
        #expect(ca.certificate.subject.description.contains("CN=Parley cluster CA"))
        #expect(try ca.certificate.extensions.basicConstraints == .isCertificateAuthority(maxPathLength: 0))
        #expect(ca.certificate.serialNumber.bytes.count == 20)

        for (address, extra) in [("10.0.0.2", GeneralName.ipAddress(.init(contentBytes: [10, 0, 0, 2]))),
                                 ("fd00::7", .ipAddress(.init(contentBytes: [0xfd] + [UInt8](repeating: 0, count: 14) + [7]))),
                                 ("m2.example.net", .dnsName("m2.example.net"))] {
            let issued = try ca.issueMachineCertificate(machine: "m2", address: address, now: Self.now)
            let certificate = try Certificate(pemEncoded: issued.certificatePEM)
            #expect(await Self.verifies(certificate, against: ca.certificate, at: Self.now))
            // Still valid a year on; not after two years.
            #expect(await Self.verifies(certificate, against: ca.certificate, at: Self.now + 365 * 86_400))
            #expect(await !Self.verifies(certificate, against: ca.certificate, at: Self.now + 3 * 365 * 86_400))
            #expect(Array(try #require(try certificate.extensions.subjectAlternativeNames)) == [.dnsName("m2"), extra])
            let usages = Array(try #require(try certificate.extensions.extendedKeyUsage))
            #expect(usages.contains(.serverAuth) && usages.contains(.clientAuth))
            #expect(try certificate.extensions.basicConstraints == .notCertificateAuthority)
            #expect(try certificate.extensions.keyUsage?.digitalSignature == true)
            #expect(certificate.issuer == ca.certificate.subject)
            #expect(certificate.subject.description.contains("CN=m2"))
            // The key is the certificate's own.
            #expect(try Certificate.PrivateKey(pemEncoded: issued.keyPEM).publicKey == certificate.publicKey)
        }
    }

    @Test("a machine certificate from another CA does not verify against this one")
    func otherAuthorityRefused() async throws {
        let directory = try HarnessDirectory()
        defer { directory.remove() }
        let ours = try ClusterAuthority.loadOrCreate(directory: directory.path + "/ours", now: Self.now)
        let theirs = try ClusterAuthority.loadOrCreate(directory: directory.path + "/theirs", now: Self.now)
        let foreign = try Certificate(pemEncoded: theirs.issueMachineCertificate(machine: "m1", address: "10.0.0.1", now: Self.now).certificatePEM)
        #expect(await Self.verifies(foreign, against: theirs.certificate, at: Self.now))
        #expect(await !Self.verifies(foreign, against: ours.certificate, at: Self.now))
    }

    @Test("the CA and a machine's credentials are kept when made again, with private modes")
    func keptAndPrivate() throws {
        let directory = try HarnessDirectory()
        defer { directory.remove() }
        let caDirectory = directory.path + "/ca"
        let first = try ClusterAuthority.loadOrCreate(directory: caDirectory, now: Self.now)
        let caFiles = try Self.contents(of: [ClusterAuthority.certificatePath(in: caDirectory), ClusterAuthority.keyPath(in: caDirectory)])
        let again = try ClusterAuthority.loadOrCreate(directory: caDirectory, now: Self.now + 86_400)
        #expect(again.certificatePEM == first.certificatePEM)
        #expect(try Self.contents(of: caFiles.map(\.path)) == caFiles)
        #expect(Self.mode(ClusterAuthority.keyPath(in: caDirectory)) == 0o600)
        #expect(Self.mode(ClusterAuthority.certificatePath(in: caDirectory)) == 0o644)
        #expect(Self.mode(caDirectory) == 0o700)

        let paths = ZonePaths(data: directory.path + "/m1")
        #expect(try MachineCredentials.write(ca: first, machine: "m1", address: "127.0.0.1", into: paths.tlsDirectory, now: Self.now))
        let files = try Self.contents(of: [paths.clusterCA, paths.machineCertificate, paths.machineKey])
        #expect(try !MachineCredentials.write(ca: again, machine: "m1", address: "127.0.0.1", into: paths.tlsDirectory, now: Self.now))
        #expect(try Self.contents(of: files.map(\.path)) == files)
        #expect(files[0].text == first.certificatePEM)
        #expect(Self.mode(paths.machineKey) == 0o600)
        #expect(Self.mode(paths.machineCertificate) == 0o644)
        #expect(Self.mode(paths.clusterCA) == 0o644)
        #expect(Self.mode(paths.tlsDirectory) == 0o700)

        // Some but not all of a machine's files: which are missing is named, nothing is written.
        try FileManager.default.removeItem(atPath: paths.machineKey)
        #expect(throws: ClusterCertificateError.incompleteCredentials(directory: paths.tlsDirectory, missing: [paths.machineKey])) {
            try MachineCredentials.write(ca: first, machine: "m1", address: "127.0.0.1", into: paths.tlsDirectory, now: Self.now)
        }
        // Kept credentials of another CA are reported, not silently left to fail at link time.
        let other = try ClusterAuthority.loadOrCreate(directory: directory.path + "/other", now: Self.now)
        let otherPaths = ZonePaths(data: directory.path + "/m2")
        _ = try MachineCredentials.write(ca: other, machine: "m2", address: "127.0.0.2", into: otherPaths.tlsDirectory, now: Self.now)
        #expect(throws: ClusterCertificateError.otherAuthority(path: otherPaths.clusterCA, authority: caDirectory + "/ca.pem")) {
            try MachineCredentials.write(ca: first, machine: "m2", address: "127.0.0.2", into: otherPaths.tlsDirectory, now: Self.now)
        }
    }

    @Test("a CA with only one of its two files is an error naming the missing one, not a new CA")
    func halfAuthority() throws {
        let directory = try HarnessDirectory()
        defer { directory.remove() }
        let caDirectory = directory.path + "/ca"
        _ = try ClusterAuthority.loadOrCreate(directory: caDirectory, now: Self.now)
        try FileManager.default.removeItem(atPath: caDirectory + "/ca.key")
        let error = #expect(throws: ClusterCertificateError.incompleteAuthority(missing: caDirectory + "/ca.key", present: caDirectory + "/ca.pem")) {
            try ClusterAuthority.loadOrCreate(directory: caDirectory, now: Self.now)
        }
        #expect(error?.description.contains("parley cluster init") == true)
        #expect(!FileManager.default.fileExists(atPath: caDirectory + "/ca.key"))
    }

    @Test("parley cluster init gives every machine its TLS files and keeps the CA key out of the machines")
    func clusterInit() async throws {
        let directory = try HarnessDirectory()
        defer { directory.remove() }
        let configuration = ClusterTarget.standardConfiguration(storeURL: "postgres://unused@127.0.0.1/parley")
        let configPath = directory.path + "/cluster.json"
        try JSONEncoder().encode(configuration).write(to: URL(fileURLWithPath: configPath))
        let out = directory.path + "/out"
        let run = { () async throws -> String in
            let result = try await Subprocess.run(.path(FilePath(ZoneHarness.binary)),
                                                  arguments: ["cluster", "init", "--config", configPath, "--out", out],
                                                  output: .string(limit: 1 << 16), error: .string(limit: 1 << 16))
            #expect(result.terminationStatus.isSuccess, "\(result.standardError)")
            return result.standardOutput
        }
        let output = try await run()
        #expect(output.contains(out + "/ca/ca.pem"), "the output says where the CA is: \(output)")
        let ca = try Certificate(pemEncoded: String(contentsOfFile: out + "/ca/ca.pem", encoding: .utf8))
        var keys: [String: String] = [:]
        for machine in configuration.machines {
            #expect(output.contains("\(machine.name) (\(machine.address)): \(out)/\(machine.name)  (TLS certificate issued)"))
            let paths = ZonePaths(data: out + "/" + machine.name)
            #expect(Self.mode(paths.zoneDirectory) == 0o700)
            #expect(Self.mode(paths.tlsDirectory) == 0o700)
            #expect(Self.mode(paths.machineKey) == 0o600)
            #expect(Self.mode(paths.machineCertificate) == 0o644)
            #expect(Self.mode(paths.clusterCA) == 0o644)
            #expect(try Certificate(pemEncoded: String(contentsOfFile: paths.clusterCA, encoding: .utf8)) == ca)
            let certificate = try Certificate(pemEncoded: String(contentsOfFile: paths.machineCertificate, encoding: .utf8))
            #expect(await Self.verifies(certificate, against: ca, at: Date()))
            keys[machine.name] = try String(contentsOfFile: paths.machineKey, encoding: .utf8)
        }
        #expect(Set(keys.values).count == configuration.machines.count, "every machine has a key of its own")
        // The CA key is only in OUT/ca.
        let everywhere = try FileManager.default.subpathsOfDirectory(atPath: out).filter { $0.hasSuffix("ca.key") }
        #expect(everywhere == ["ca/ca.key"])
        #expect(Self.mode(out + "/ca/ca.key") == 0o600)

        // Again: everything kept.
        let again = try await run()
        #expect(again.components(separatedBy: "(TLS certificate kept)").count == configuration.machines.count + 1, "\(again)")
        for machine in configuration.machines {
            #expect(try String(contentsOfFile: ZonePaths(data: out + "/" + machine.name).machineKey, encoding: .utf8) == keys[machine.name])
        }
    }

    // MARK: - Helpers

    static func verifies(_ certificate: Certificate, against ca: Certificate, at time: Date) async -> Bool {
        var verifier = Verifier(rootCertificates: CertificateStore([ca])) { RFC5280Policy(fixedExpiryValidationTime: time) }
        if case .validCertificate = await verifier.validate(leaf: certificate, intermediates: CertificateStore()) { return true }
        return false
    }

    static func contents(of paths: [String]) throws -> [FileText] {
        try paths.map { FileText(path: $0, text: try String(contentsOfFile: $0, encoding: .utf8)) }
    }

    struct FileText: Equatable {
        let path: String
        let text: String
    }

    static func mode(_ path: String) -> mode_t {
        var info = stat()
        guard stat(path, &info) == 0 else { return 0 }
        return info.st_mode & 0o777
    }
}
