import Foundation
import NIOSSL
import ParleyClient
import ParleySupervisor
import Subprocess
import SystemPackage
import Synchronization
import Testing
import WSClient

#if canImport(Glibc)
import Glibc
import ParleyTestSupport
#endif

/// TLS on the client port, through the real `parley serve`: what a user's browser and SDK see.
@Suite("TLS for clients: parley serve --tls-cert --tls-key", MachineLoad.server, .serialized, .timeLimit(.minutes(2)))
struct ClientTLSTests {
    @Test("clients reach the server over HTTPS and WSS with a certificate they trust, the locator gives https addresses, and plain HTTP gets no answer")
    func servesTLS() async throws {
        let directory = try scratchDirectory("client-tls")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let now = Date()
        // A certificate for 127.0.0.1 and "localhost", from a CA only this test trusts.
        let ca = try ClusterAuthority.loadOrCreate(directory: directory + "/ca", now: now)
        let issued = try ca.issueMachineCertificate(machine: "localhost", address: "127.0.0.1", now: now)
        let (caFile, certificate, key) = (directory + "/ca/ca.pem", directory + "/server.pem", directory + "/server.key")
        try issued.certificatePEM.write(toFile: certificate, atomically: true, encoding: .utf8)
        try issued.keyPEM.write(toFile: key, atomically: true, encoding: .utf8)

        let portFile = directory + "/port"
        let logPath = directory + "/server.log"
        let log = try FileDescriptor.open(FilePath(logPath), .writeOnly, options: [.create, .append], permissions: [.ownerReadWrite])
        let configuration = Configuration(
            executable: .path(FilePath(parleyBinary)),
            arguments: ["serve", "--single", "--data", directory + "/data", "--port", "0", "--port-file", portFile,
                        "--tls-cert", certificate, "--tls-key", key, "--log-level", "warning"])
        let outcome = try await Subprocess.run(configuration, input: .none, output: .discarded,
                                               error: .fileDescriptor(log, closeAfterSpawningProcess: true)) { execution in
            defer { _ = kill(execution.processIdentifier.value, SIGTERM) }
            let port = try await waitForPortFile(portFile)
            let base = "https://127.0.0.1:\(port)"
            // HTTPS: create a meeting and locate it, as the SDK and the page do.
            let created = try JSONDecoder().decode(CreatedMeeting.self, from: try await curl(
                ["--cacert", caFile, "-X", "POST", "-H", "content-type: application/json", "-d", #"{"title":"over TLS"}"#,
                 base + "/v1/meetings"]))
            struct Located: Decodable { var url: String }
            let located = try JSONDecoder().decode(Located.self, from: try await curl(
                ["--cacert", caFile, base + "/v1/meetings/\(created.meeting.id.rawValue)/locate"]))
            #expect(located.url == base)

            // WSS: the host joins with its token and is welcomed. The client checks the
            // server's certificate fully (chain and name).
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .file(caFile)
            let welcome = Mutex<String?>(nil)
            try await WebSocketClient.connect(url: "wss://127.0.0.1:\(port)/v1/ws", configuration: .init(sniHostname: "localhost"),
                                              tlsConfiguration: tls, logger: Logger(label: "client-tls-test")) { inbound, outbound, _ in
                let hello = FrameEncoder().encode(ClientFrame.hello(token: created.hostToken, resume: nil))
                try await outbound.write(.text(String(decoding: hello, as: UTF8.self)))
                for try await message in inbound.messages(maxSize: 1 << 20) {
                    if case .text(let text) = message { welcome.withLock { $0 = text } }
                    return
                }
            }
            #expect(welcome.withLock { $0 }?.contains(#""type":"welcome""#) == true, "first frame: \(welcome.withLock { $0 } ?? "none")")

            // A client that does not trust the certificate is stopped by its own TLS, and
            // plain HTTP on the TLS port gets no HTTP answer.
            await #expect(throws: CurlFailed.self) { try await curl([base + "/v1/ping"]) }
            await #expect(throws: CurlFailed.self) { try await curl(["http://127.0.0.1:\(port)/v1/ping"]) }
        }
        #expect(outcome.terminationStatus == .exited(0), "log: \((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "")")
    }

    @Test("TLS files that are missing or not PEM stop the server at start with one line naming the file; --tls-cert without --tls-key is refused")
    func badFiles() async throws {
        let directory = try scratchDirectory("client-tls-bad")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let notPEM = directory + "/not.pem"
        try "not a certificate\n".write(toFile: notPEM, atomically: true, encoding: .utf8)
        // Exit 1 for a file that fails at start, 64 (usage) for options that do not go together.
        let cases: [([String], String, Int32)] = [
            (["--tls-cert", directory + "/missing.pem", "--tls-key", notPEM], "TLS file not found: \(directory)/missing.pem", 1),
            (["--tls-cert", notPEM, "--tls-key", notPEM], "cannot read the TLS file \(notPEM)", 1),
            (["--tls-cert", notPEM], "--tls-cert and --tls-key go together", 64),
        ]
        for (extra, expected, code) in cases {
            for mode in [["--single"], []] {
                let result = try await Subprocess.run(
                    .path(FilePath(parleyBinary)),
                    arguments: Arguments(["serve"] + mode + ["--data", directory + "/data", "--port", "0"] + extra),
                    output: .discarded, error: .string(limit: 1 << 20))
                #expect(result.terminationStatus == .exited(code), "\(mode) \(extra)")
                let stderr = result.standardError
                #expect(stderr.contains(expected), "\(mode) \(extra): \(stderr.suffix(2_000))")
            }
        }
    }
}

private struct CurlFailed: Error, CustomStringConvertible {
    var status: TerminationStatus
    var stderr: String
    var description: String { "curl ended with \(status): \(stderr)" }
}

/// `curl -sS --fail ARGUMENTS`: the body, or ``CurlFailed``.
@discardableResult
private func curl(_ arguments: [String]) async throws -> Data {
    let result = try await Subprocess.run(.name("curl"), arguments: Arguments(["-sS", "--fail", "--max-time", "10"] + arguments),
                                          output: .bytes(limit: 1 << 20), error: .string(limit: 1 << 16))
    guard result.terminationStatus == .exited(0) else {
        throw CurlFailed(status: result.terminationStatus, stderr: result.standardError)
    }
    return Data(result.standardOutput)
}

private var parleyBinary: String { BuiltProducts.parley }

private func waitForPortFile(_ path: String) async throws -> Int {
    let deadline = ContinuousClock.now + .seconds(30)
    while ContinuousClock.now < deadline {
        if let text = try? String(contentsOfFile: path, encoding: .utf8), let port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
            return port
        }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw CurlFailed(status: .exited(-1), stderr: "parley serve wrote no port to \(path) within 30 s")
}

private func scratchDirectory(_ prefix: String) throws -> String {
    let path = FileManager.default.temporaryDirectory.path + "/\(prefix)-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
