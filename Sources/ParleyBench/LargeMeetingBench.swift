import Foundation
import Logging
import NIOPosix
import ParleyChaos
import ParleyClient
import ParleyCore
import ParleyZone

/// One meeting too large for comfort on one server: its participants spread over several
/// collaboration servers with edges on (docs/zone.md, "Edges"), against the same meeting with
/// every participant on its host. Both in a whole zone started from this binary.
public struct LargeMeetingConfiguration: Sendable {
    public var participants = 5_000
    /// Collaboration servers in the zone: the host, its standby and edges.
    public var collabs = 4
    public var messageBytes = 128
    public var stepSeconds = 10.0
    /// Offered deliveries per second (messages/s × participants), in order; each run stops
    /// after its first rate that is not sustained.
    public var offeredDeliveries: [Double] = [25_000, 50_000, 100_000, 200_000, 400_000]
    public var drainSeconds = 5.0
    public var joinConcurrency = 32
    public var joinTimeoutMs = 60_000
    public var logger = Logger(label: "parley.bench")

    public init() {}

    public func problems() -> [String] {
        var problems: [String] = []
        if participants < 2 || participants > 50_000 { problems.append("participants must be 2 to 50000") }
        if collabs < 2 || collabs > 16 { problems.append("collabs must be 2 to 16") }
        if messageBytes < 13 || messageBytes > 60_000 { problems.append("the message size must be 13 to 60000 bytes") }
        if !(stepSeconds >= 0.5 && stepSeconds <= 3_600) { problems.append("a step lasts 0.5 s to 1 h") }
        if offeredDeliveries.isEmpty || offeredDeliveries.contains(where: { !($0 > 0) }) {
            problems.append("at least one offered rate, each above 0")
        }
        return problems
    }
}

public struct LargeMeetingResult: Codable, Sendable {
    public struct Run: Codable, Sendable {
        /// Whether the participants were spread over the servers (edges on).
        public var edges: Bool
        /// Client connections per collaboration server once everyone had joined.
        public var connections: [String: Int]
        public var steps: [FanOutResult.Step]
        /// Per step: the host's CPU time per message published, in microseconds.
        public var hostCpuMicrosPerMessage: [Double?]
        /// The highest delivery rate of a sustained step.
        public var peakDeliveriesPerSecond: Double?
    }

    public var participants: Int
    public var collabs: Int
    public var messageBytes: Int
    public var stepSeconds: Double
    /// Every participant on the host.
    public var oneServer: Run
    /// Participants spread over the servers.
    public var spread: Run
}

public enum LargeMeetingBench {
    public static func run(_ configuration: LargeMeetingConfiguration, executable: String, directory: String) async throws -> LargeMeetingResult {
        let problems = configuration.problems()
        guard problems.isEmpty else { throw BenchError.setup(problems.joined(separator: "; ")) }
        let oneServer = try await runOnce(configuration, edges: false, executable: executable, directory: directory + "/one-server")
        let spread = try await runOnce(configuration, edges: true, executable: executable, directory: directory + "/spread")
        return LargeMeetingResult(participants: configuration.participants, collabs: configuration.collabs,
                                  messageBytes: configuration.messageBytes, stepSeconds: configuration.stepSeconds,
                                  oneServer: oneServer, spread: spread)
    }

    /// The zone: `collabs` collaboration servers, per-connection limits out of the way (the
    /// generator's clients publish thousands of messages a second), and with `edges` the
    /// participants spread evenly (`connectionsPerCopy`).
    static func zone(_ configuration: LargeMeetingConfiguration, edges: Bool) -> ZoneConfiguration {
        var zone = ZoneConfiguration()
        zone.processes.removeAll { $0.role == .collab }
        for index in 1...configuration.collabs {
            zone.processes.append(ZoneConfiguration.ProcessSpec(name: NodeName("collab-\(index)"), role: .collab))
        }
        zone.scaling.maxCollabServers = configuration.collabs
        zone.scaling.connectionsPerServer = configuration.participants * 2
        zone.scaling.edges = edges
        zone.scaling.connectionsPerCopy = (configuration.participants + configuration.collabs - 1) / configuration.collabs
        zone.clients.framesPerSecond = 1_000_000
        zone.clients.burst = 1_000_000
        return zone
    }

    static func runOnce(_ configuration: LargeMeetingConfiguration, edges: Bool, executable: String,
                        directory: String) async throws -> LargeMeetingResult.Run {
        let logger = configuration.logger
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let target = ZoneTarget(executable: executable, directory: directory, roles: [], configuration: zone(configuration, edges: edges))
        do {
            let web = try await target.start()
            let front = BenchServer(url: web, pid: nil)
            let (ledger, frames, sink) = FanOutBench.instruments()
            let created = try await BenchMeetings.create(on: front, meetings: 1, participants: configuration.participants,
                                                         title: edges ? "large meeting, spread" : "large meeting, one server")
            let meetingID = created.ids[0]
            // Each participant asks the locator, as a client would, and joins where it is sent.
            let participants = created.tokens[0].map { BenchParticipant(meeting: 0, token: $0, sink: sink) }
            let servers = try await boundedMap(participants, concurrency: configuration.joinConcurrency) { _ in
                try await ParleyHTTP.locate(server: web, meeting: meetingID)
            }
            try await BenchParticipant.joinAll(Array(zip(participants, servers)), concurrency: configuration.joinConcurrency,
                                               timeoutMs: configuration.joinTimeoutMs, group: MultiThreadedEventLoopGroup.singleton)
            await frames.waitForQuiet()
            // The host's CPU is what edges are meant to relieve; its connections show the spread.
            var hosting = try await target.hosting(meetingID.rawValue)
            let deadline = ContinuousClock.now + .seconds(10)
            while hosting.connections.values.reduce(0, +) < configuration.participants, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(200))
                hosting = try await target.hosting(meetingID.rawValue)
            }
            logger.info("participants joined", metadata: ["edges": "\(edges)", "connections": "\(hosting.connections)"])
            let host = BenchServer(url: web, pid: hosting.pid)
            var fanOut = FanOutConfiguration()
            fanOut.participants = configuration.participants
            fanOut.messageBytes = configuration.messageBytes
            fanOut.stepSeconds = configuration.stepSeconds
            fanOut.drainSeconds = configuration.drainSeconds
            fanOut.logger = logger
            var run = LargeMeetingResult.Run(edges: edges, connections: hosting.connections, steps: [], hostCpuMicrosPerMessage: [])
            let message = BenchMessage(textBytes: configuration.messageBytes)
            for offered in configuration.offeredDeliveries {
                let step = await FanOutBench.runStep(offeredDeliveries: offered, [participants], message, ledger, host, fanOut)
                run.steps.append(step)
                run.hostCpuMicrosPerMessage.append(step.serverCpuSeconds.flatMap { step.messagesSent > 0 ? $0 * 1e6 / Double(step.messagesSent) : nil })
                logger.info("step", metadata: [
                    "edges": "\(edges)", "offered": "\(Int(offered))", "delivered_per_s": "\(Int(step.deliveriesPerSecond))",
                    "p99_ms": "\(step.latencyMs.p99 ?? -1)", "sustained": "\(step.sustained)",
                    "host_cpu_us_per_message": "\(run.hostCpuMicrosPerMessage.last.flatMap { $0 }.map { Int($0) } ?? -1)",
                ])
                if step.sustained { run.peakDeliveriesPerSecond = max(run.peakDeliveriesPerSecond ?? 0, step.deliveriesPerSecond) }
                if !step.sustained { break }
                await frames.waitForQuiet(quietMs: 300, limitSeconds: 10)
            }
            await FanOutBench.close([participants])
            await target.stop()
            return run
        } catch {
            await target.stop()
            throw error
        }
    }

}
