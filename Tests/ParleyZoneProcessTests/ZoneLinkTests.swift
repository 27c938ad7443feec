import FoundationEssentials
import Hummingbird
import HummingbirdWebSocket
import Logging
import ParleyCore
import NIOCore
import NIOSSL
import ParleyNode
import ParleyServer
import ParleyTestSupport
import ParleySupervisor
import ParleyZone
import Synchronization
import Subprocess
import Testing
import WSClient

private let secretHex = String(repeating: "3f", count: 32)
private let otherHex = String(repeating: "a1", count: 32)
private let quiet: Logger = {
    var logger = Logger(label: "zone-link-test")
    logger.logLevel = .critical
    return logger
}()


@Suite("Zone links: authenticated with the zone secret", MachineLoad.server, .timeLimit(.minutes(1)))
struct ZoneLinkTests {
    @Test("a header proves its name only under the same secret, unaltered and within 30 s")
    func headers() throws {
        let secret = try ZoneSecret(hex: secretHex)
        let header = secret.header(for: "collab-1", nowMs: 1_000_000)
        #expect(try secret.verify(header, nowMs: 1_000_000).get() == "collab-1")
        #expect(try secret.verify(header, nowMs: 1_030_000).get() == "collab-1")
        guard case .failure = secret.verify(header, nowMs: 1_030_001) else { Issue.record("a stale header passed"); return }
        guard case .failure = try ZoneSecret(hex: otherHex).verify(header, nowMs: 1_000_000) else {
            Issue.record("another zone's secret accepted the header")
            return
        }
        let renamed = header.replacingOccurrences(of: "collab-1", with: "manager-1")
        guard case .failure = secret.verify(renamed, nowMs: 1_000_000) else { Issue.record("a renamed header passed"); return }
        for junk in ["", "a.b", "collab-1.x.00", "collab-1.1000000." + String(repeating: "zz", count: 32)] {
            guard case .failure = secret.verify(junk, nowMs: 1_000_000) else { Issue.record("'\(junk)' passed"); return }
        }
        #expect(throws: ZoneSecretError.self) { try ZoneSecret(hex: "abc") }
    }

    @Test("two processes talk over a real link; a process with the wrong secret is refused, and the refusal is logged")
    func realLink() async throws {
        let secret = try ZoneSecret(hex: secretHex)
        let log = RecordedLog()
        try await withListener(ZoneCredentials(secret: secret, tls: nil), logger: log.logger(level: .warning)) { url in
            let answer = try await ask(url, with: ZoneCredentials(secret: secret, tls: nil))
            #expect(answer == .located(request: 7, answer: .unavailable("web asked for m-1")))
            await #expect(throws: (any Error).self) {
                try await ask(url, with: ZoneCredentials(secret: try ZoneSecret(hex: otherHex), tls: nil))
            }
        }
        #expect(log.all.contains { $0.contains("zone link refused") && $0.contains("not signed with this zone's secret") })
    }

    @Test("a connection to the zone-link port that stalls before its request head is complete is closed at the deadline; a real link is not")
    func stalledConnectionClosed() async throws {
        let secret = try ZoneSecret(hex: String(repeating: "ab", count: 32))
        let credentials = ZoneCredentials(secret: secret, tls: nil)
        try await withListener(credentials, logger: quiet, headTimeout: .seconds(1)) { url in
            let port = Int(url.split(separator: ":").last!)!
            let stalled = try RawConnection(port: port)
            try stalled.send("GET /zone/link HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            let started = ContinuousClock.now
            _ = await stalled.readUntilClosed()
            let took = ContinuousClock.now - started
            #expect(took < .seconds(5), "the stalled connection stayed open \(took)")
            #expect(try await ask(url, with: credentials) != nil, "a link that completes its head is served")
        }
    }

    @Test("in a cluster, links run over mutual TLS: only peers with a certificate from the cluster's CA get through, and every refusal is logged")
    func clusterTLS() async throws {
        let directory = try temporaryDirectory("zone-tls")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let now = Date()
        // Two machines of one cluster, and a machine of another cluster with the same zone secret.
        let ca = try ClusterAuthority.loadOrCreate(directory: directory + "/ca", now: now)
        let otherCA = try ClusterAuthority.loadOrCreate(directory: directory + "/other-ca", now: now)
        func machine(_ name: String, of authority: ClusterAuthority) throws -> ZonePaths {
            let paths = ZonePaths(data: directory + "/" + name)
            _ = try MachineCredentials.write(ca: authority, machine: name, address: "127.0.0.1", into: paths.tlsDirectory, now: now)
            return paths
        }
        let secret = try ZoneSecret(hex: secretHex)
        let m1 = ZoneCredentials(secret: secret, tls: try ZoneTLS(paths: try machine("m1", of: ca)))
        let m2 = ZoneCredentials(secret: secret, tls: try ZoneTLS(paths: try machine("m2", of: ca)))
        let stranger = ZoneCredentials(secret: secret, tls: try ZoneTLS(paths: try machine("x1", of: otherCA)))
        // TLS that trusts the cluster's CA but shows no certificate of its own.
        var anonymous = TLSConfiguration.makeClientConfiguration()
        anonymous.trustRoots = .file(ZonePaths(data: directory + "/m1").clusterCA)
        anonymous.certificateVerification = .noHostnameVerification

        // A link to a machine cut off by a partition must be let go at once: waiting out
        // NIOSSL's default 5 s for the peer's close_notify kept every process of a cluster from
        // its new manager for 5 s (`parley chaos --faults partition --seed 7`: 6.8 s at p99).
        for tls in [m1.tls, m2.tls].compactMap({ $0 }) {
            #expect(tls.client.shutdownTimeout <= .seconds(1) && tls.server.shutdownTimeout <= .seconds(1))
        }

        let log = RecordedLog()
        try await withListener(m1, logger: log.logger(level: .warning)) { url in
            #expect(url.hasPrefix("https://"))
            let answer = try await ask(url, with: m2)
            #expect(answer == .located(request: 7, answer: .unavailable("web asked for m-1")))
            for (who, credentials) in [("another cluster's machine", stranger), ("a peer without a certificate", nil),
                                       ("a peer in the clear", ZoneCredentials(secret: secret, tls: nil))] as [(String, ZoneCredentials?)] {
                let refusalsBefore = log.all.count { $0.contains("TLS handshake failed") }
                await #expect(throws: (any Error).self, "\(who) got through") {
                    if let credentials, credentials.tls != nil {
                        try await ask(url, with: credentials)
                    } else if credentials != nil {
                        // With curl: WSClient's upgrade does not fail when the server answers with a
                        // TLS alert and closes; the zone's own links never dial http in a cluster.
                        let plain = url.replacingOccurrences(of: "https://", with: "http://") + ZoneLink.path
                        let result = try await Subprocess.run(.name("curl"), arguments: ["-sS", "--fail", "--max-time", "10", plain],
                                                              output: .discarded, error: .string(limit: 1 << 16))
                        guard result.terminationStatus == .exited(0) else { throw ZoneTLSError.plainAddress(plain) }
                    } else {
                        try await WebSocketClient.connect(url: url.replacingOccurrences(of: "https://", with: "wss://") + ZoneLink.path,
                                                          configuration: .init(sniHostname: ZoneTLS.serverName),
                                                          tlsConfiguration: anonymous, logger: quiet) { _, _, _ in }
                    }
                }
                // The server logs the refusal when its side of the handshake fails, which may be
                // a moment after the client has given up.
                try await eventually { log.all.count { $0.contains("TLS handshake failed") } > refusalsBefore }
            }
        }
        // And a cluster machine does not talk to a server outside the cluster either.
        try await withListener(stranger, logger: quiet) { url in
            await #expect(throws: (any Error).self) { try await ask(url, with: m2) }
        }
    }

    /// Runs the zone's listener, answering each `locate` with who asked, for `body`.
    private func withListener(_ credentials: ZoneCredentials, logger: Logger, headTimeout: TimeAmount = .seconds(10),
                              _ body: (String) async throws -> Void) async throws {
        let port = PortAnnouncement()
        let app = ZoneListener.application(host: "127.0.0.1", credentials: credentials, serverName: "test", port: port,
                                           headTimeout: headTimeout, logger: logger) { link in
            do {
                for try await message in link.messages() {
                    if case .locate(let request, let meeting) = message {
                        try await link.send(.located(request: request, answer: .unavailable("\(link.peer) asked for \(meeting)")))
                    }
                }
            } catch {}
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.run() }
            try await body("\(credentials.scheme)://127.0.0.1:\(try await port.value())")
            group.cancelAll()
        }
    }

    /// Asks the listener at `url` one question as the web process.
    @discardableResult
    private func ask(_ url: String, with credentials: ZoneCredentials) async throws -> ZoneMessage? {
        let answer = Mutex<ZoneMessage?>(nil)
        try await ZoneLink.connect(to: url, as: "web", peer: "manager-1", credentials: credentials,
                                   nowMs: Int64(Date().timeIntervalSince1970 * 1000), logger: quiet) { link in
            try await link.send(.locate(request: 7, meeting: "m-1"))
            for try await message in link.messages() {
                answer.withLock { $0 = message }
                return
            }
        }
        return answer.withLock { $0 }
    }
}

/// Polls `condition` for up to 5 s: for what another task logs, with no event to wait on.
private func eventually(_ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(5)
    while !condition() {
        guard ContinuousClock.now < deadline else { Issue.record("the condition never held"); return }
        try await Task.sleep(for: .milliseconds(10))
    }
}

private func temporaryDirectory(_ prefix: String) throws -> String {
    let path = FileManager.default.temporaryDirectory.path + "/\(prefix)-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
