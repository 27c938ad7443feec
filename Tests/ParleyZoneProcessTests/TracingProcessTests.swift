import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import ParleyClient
import ParleyCore
import ParleyTestSupport
import ParleyZone
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A zone with tracing on, exporting OTLP/HTTP JSON to a collector the test runs on loopback.
@Suite("Tracing: a zone exports its spans over OTLP", MachineLoad.processes, .serialized, .timeLimit(.minutes(3)))
struct TracingProcessTests {
    @Test("ops and a SIGKILL failover arrive as spans: parley.op (applied, committed, delivered), parley.failover from the loss to the new host's confirmation, and under it the new host's parley.promotion to its first ack")
    func failoverTrace() async throws {
        try await OTLPCollector.with { collector in
            let tracing = #""tracing": {"enabled": true, "endpoint": "\#(collector.url)", "protocol": "http/json", "exportDelayMs": 100},"#
            try await ZoneHarness.run(processes: ZoneHarness.fullZone, extraConfiguration: tracing) { zone in
                let web = try await zone.publicURL()
                let created = try await ParleyHTTP.createMeeting(server: web, title: "Traced")
                let meeting = created.meeting.id
                let alice = try MeetingClient(server: web, token: created.hostToken, options: Scenario.options(.webSocket))
                try await alice.connect()
                for index in 0..<3 { _ = try await alice.send(.chat(text: "before-\(index)")) }
                let (host, standby) = try await zone.hostAndStandby(of: meeting)
                try zone.signal(try await zone.running(host.name).pid, SIGKILL)
                _ = try await zone.waitFor("the meeting hosted on its standby") { status in
                    status[standby].flatMap { $0.hosts(meeting) ? true : nil }
                }
                _ = try await alice.send(.chat(text: "after"))

                let spans = try await collector.waitFor("the failover, its promotion and the ops exported") { spans in
                    let failover = spans.first { $0.name == "parley.failover" && $0.attribute("parley.meeting") == meeting.rawValue }
                    let promotion = spans.first { $0.name == "parley.promotion" && $0.attribute("parley.meeting") == meeting.rawValue }
                    let ops = spans.filter { $0.name == "parley.op" && $0.attribute("parley.meeting") == meeting.rawValue }
                    return failover != nil && promotion != nil && ops.count >= 4 ? spans : nil
                }
                let failover = try #require(spans.first { $0.name == "parley.failover" && $0.attribute("parley.meeting") == meeting.rawValue })
                #expect(failover.events == ["server lost", "promote ordered", "hosting confirmed"])
                #expect(failover.attribute("parley.from") == host.name.rawValue)
                #expect(failover.attribute("parley.to") == standby.rawValue)
                let promotion = try #require(spans.first { $0.name == "parley.promotion" && $0.attribute("parley.meeting") == meeting.rawValue })
                #expect(promotion.traceID == failover.traceID, "the promotion continues the manager's trace")
                #expect(promotion.parentSpanID == failover.spanID)
                #expect(promotion.events == ["hosting", "first ack"])
                #expect(promotion.attribute("parley.server") == standby.rawValue)
                #expect(promotion.endNanos >= failover.startNanos)
                let ops = spans.filter { $0.name == "parley.op" && $0.attribute("parley.meeting") == meeting.rawValue }
                #expect(ops.allSatisfy { $0.events == ["applied", "committed", "delivered"] }, "\(ops.map(\.events))")
                #expect(ops.allSatisfy { $0.attribute("parley.op.kind") == "chat" })
                #expect(spans.contains { $0.name == "parley.commit" })
                #expect(collector.services.contains("parley"))
            }
        }
    }
}

/// An OpenTelemetry collector as far as OTLP/HTTP JSON goes: it keeps every span posted to
/// `/v1/traces`.
final class OTLPCollector: Sendable {
    struct ExportedSpan: Sendable {
        var name: String
        var traceID: String
        var spanID: String
        var parentSpanID: String
        var events: [String]
        var attributes: [String: String]
        var startNanos: UInt64
        var endNanos: UInt64
        func attribute(_ key: String) -> String? { attributes[key] }
    }

    private let received = Mutex<[ExportedSpan]>([])
    private let serviceNames = Mutex<Set<String>>([])
    let url: String

    private init(url: String) { self.url = url }

    var spans: [ExportedSpan] { received.withLock { $0 } }
    var services: Set<String> { serviceNames.withLock { $0 } }

    static func with<T: Sendable>(_ body: (OTLPCollector) async throws -> T) async throws -> T {
        let (ports, portSink) = AsyncStream<Int>.makeStream()
        let box = Mutex<OTLPCollector?>(nil)
        let router = Router()
        router.post("/v1/traces") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 16 << 20)
            box.withLock { $0 }?.take(Data(buffer: body))
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: "{}")))
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { channel in portSink.yield(channel.localAddress?.port ?? 0) })
        let service = ServiceGroup(configuration: .init(services: [app], logger: Logger(label: "otlp-collector")))
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                try await service.run()
                return nil
            }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { throw HarnessFailure("the collector did not start") }
            let collector = OTLPCollector(url: "http://127.0.0.1:\(port)")
            box.withLock { $0 = collector }
            do {
                let result = try await body(collector)
                await service.triggerGracefulShutdown()
                try await group.waitForAll()
                return result
            } catch {
                await service.triggerGracefulShutdown()
                throw error
            }
        }
    }

    /// Reads one export request: resourceSpans[].scopeSpans[].spans[].
    private func take(_ data: Data) {
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return }
        var found: [ExportedSpan] = []
        for resource in json["resourceSpans"] as? [[String: Any]] ?? [] {
            let attributes = ((resource["resource"] as? [String: Any])?["attributes"] as? [[String: Any]]) ?? []
            if let service = Self.attributes(attributes)["service.name"] { serviceNames.withLock { _ = $0.insert(service) } }
            for scope in resource["scopeSpans"] as? [[String: Any]] ?? [] {
                for span in scope["spans"] as? [[String: Any]] ?? [] {
                    found.append(ExportedSpan(
                        name: span["name"] as? String ?? "", traceID: span["traceId"] as? String ?? "",
                        spanID: span["spanId"] as? String ?? "", parentSpanID: span["parentSpanId"] as? String ?? "",
                        events: (span["events"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String },
                        attributes: Self.attributes(span["attributes"] as? [[String: Any]] ?? []),
                        startNanos: Self.nanos(span["startTimeUnixNano"]), endNanos: Self.nanos(span["endTimeUnixNano"])))
                }
            }
        }
        received.withLock { $0 += found }
    }

    private static func attributes(_ list: [[String: Any]]) -> [String: String] {
        var attributes: [String: String] = [:]
        for attribute in list {
            guard let key = attribute["key"] as? String, let value = attribute["value"] as? [String: Any] else { continue }
            if let text = value["stringValue"] as? String { attributes[key] = text }
            else if let number = value["intValue"] { attributes[key] = "\(number)" }
        }
        return attributes
    }

    /// OTLP JSON writes 64-bit integers as strings.
    private static func nanos(_ value: Any?) -> UInt64 {
        if let text = value as? String { return UInt64(text) ?? 0 }
        return (value as? NSNumber)?.uint64Value ?? 0
    }

    /// Waits (up to 30 s) until `condition` finds what it needs among the spans received.
    func waitFor<T>(_ what: String, _ condition: ([ExportedSpan]) -> T?) async throws -> T {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if let found = condition(spans) { return found }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw HarnessFailure("timed out waiting for \(what); spans received: \(spans.map(\.name))")
    }
}
