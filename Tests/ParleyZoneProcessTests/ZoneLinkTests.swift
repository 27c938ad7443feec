import FoundationEssentials
import Hummingbird
import HummingbirdWebSocket
import Logging
import ParleyCore
import ParleyNode
import ParleyZone
import Synchronization
import Testing

private let secretHex = String(repeating: "3f", count: 32)
private let otherHex = String(repeating: "a1", count: 32)
private let quiet: Logger = {
    var logger = Logger(label: "zone-link-test")
    logger.logLevel = .critical
    return logger
}()


@Suite("Zone links: authenticated with the zone secret", .timeLimit(.minutes(1)))
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

    @Test("two processes talk over a real link; a process with the wrong secret is refused")
    func realLink() async throws {
        let secret = try ZoneSecret(hex: secretHex)
        let router = Router()
        let (ports, portSink) = AsyncStream<Int>.makeStream()
        let app = Application(
            router: router,
            server: .http1WebSocketUpgrade { request, _, _ in
                guard case .success(let peer)? = ZoneLink.authenticate(request, secret: secret, nowMs: Int64(Date().timeIntervalSince1970 * 1000)) else {
                    return .dontUpgrade
                }
                return .upgrade([:]) { inbound, outbound, _ in
                    await ZoneLink.accept(peer: peer, inbound: inbound, outbound: outbound) { link in
                        for try await message in link.messages() {
                            if case .locate(let request, let meeting) = message {
                                try await link.send(.located(request: request, answer: .unavailable("\(link.peer) asked for \(meeting)")))
                            }
                        }
                    }
                }
            },
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in portSink.yield(channel.localAddress?.port ?? 0) },
            logger: quiet)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.runService() }
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            let url = "http://127.0.0.1:\(port)"
            let answer = Mutex<ZoneMessage?>(nil)
            try await ZoneLink.connect(to: url, as: "web", peer: "manager-1", secret: secret,
                                       nowMs: Int64(Date().timeIntervalSince1970 * 1000), logger: quiet) { link in
                try await link.send(.locate(request: 7, meeting: "m-1"))
                for try await message in link.messages() {
                    answer.withLock { $0 = message }
                    return
                }
            }
            #expect(answer.withLock { $0 } == .located(request: 7, answer: .unavailable("web asked for m-1")))
            let intruder = try ZoneSecret(hex: otherHex)
            await #expect(throws: (any Error).self) {
                try await ZoneLink.connect(to: url, as: "web", peer: "manager-1", secret: intruder,
                                           nowMs: Int64(Date().timeIntervalSince1970 * 1000), logger: quiet) { _ in }
            }
            group.cancelAll()
        }
    }
}
