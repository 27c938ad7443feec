import Foundation
import InMemoryTracing
import ParleyCore
import ParleyProtocol
import ParleyServer
import ParleyTelemetry
import ParleyTestSupport
import Testing
import Tracing

/// Spans for an op's path, recorded by an in-memory tracer given to a real server.
@Suite("Tracing an op's path", MachineLoad.server, .timeLimit(.minutes(1)))
struct TracingTests {
    @Test("each op is one parley.op span: applied, committed, delivered, in order; each group commit a parley.commit span linked to its ops")
    func opSpans() async throws {
        let tracer = InMemoryTracer()
        try await withServer({ $0.tracing = ProcessTracing(tracer: tracer) }) { endpoint in
            let meeting = try await endpoint.createMeeting()
            try await withRawSocket(endpoint) { host in
                _ = try await host.join(token: meeting.hostToken)
                for (index, text) in ["one", "two"].enumerated() {
                    try await host.send(.op(id: OpID("c\(index)"), operation: .chat(text: text)))
                }
                _ = try await host.receive { if case .ack(let id, _, _) = $0 { id == "c1" } else { false } }
            }
            // The loop ends an op's span after the ack has gone out; wait for it rather than race it.
            let deadline = ContinuousClock.now + .seconds(5)
            while tracer.finishedSpans.count { $0.operationName == "parley.op" } < 2, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            let ops = tracer.finishedSpans.filter { $0.operationName == "parley.op" }
            #expect(ops.count == 2)
            for op in ops {
                #expect(op.events.map(\.name) == ["applied", "committed", "delivered"])
                #expect(op.attributes["parley.op.kind"]?.toSpanAttribute() == "chat")
                #expect(op.attributes["parley.meeting"]?.toSpanAttribute() == .string(meeting.meeting.id))
                #expect(op.kind == .server)
            }
            let commits = tracer.finishedSpans.filter { $0.operationName == "parley.commit" }
            let linked = Set(commits.flatMap { $0.links.compactMap { $0.context.inMemorySpanContext?.spanID } })
            #expect(Set(ops.map(\.spanID)).isSubset(of: linked), "every op's span is linked from the commit that stored it")
            #expect(commits.allSatisfy { ($0.attributes["parley.batch.entries"]?.toSpanAttribute()).map { $0 != .int(0) } ?? false })
        }
    }

    @Test("tracing is off unless configured: a server's default starts no span; a given tracer turns it on")
    func offByDefault() async throws {
        #expect(!ServerConfiguration(host: "127.0.0.1", port: 0, dataDirectory: "/nonexistent").tracing.isOn)
        #expect(!ProcessTracing.off.isOn)
        #expect(ProcessTracing(tracer: InMemoryTracer()).isOn)
    }
}
