import CoreMetrics
import ParleyProtocol
import ParleyTelemetry
import Synchronization

/// What a server records (docs/operations.md, "Metrics"), each handle made once.
public struct ServerMetrics: Sendable {
    public let process: ProcessMetrics
    let opsCommitted: CoreMetrics.Counter
    let commitDuration: CoreMetrics.Timer
    let deliveries: CoreMetrics.Counter
    let slowConsumersDropped: CoreMetrics.Counter
    let fencedCommits: CoreMetrics.Counter
    private let resumeReplay: CoreMetrics.Counter
    private let resumeSnapshot: CoreMetrics.Counter
    private let webSockets: CoreMetrics.Meter
    private let longPolls: CoreMetrics.Meter
    private let hosted: CoreMetrics.Meter
    private let standbys: CoreMetrics.Meter
    private let edges: CoreMetrics.Meter
    private let deepestSendQueue: CoreMetrics.Meter
    private let queuedFrames: CoreMetrics.Meter
    /// One counter per code, made as codes first occur (codes are a fixed set).
    private let rejections = RejectionCounters()

    public static let off = ServerMetrics(.off)

    public init(_ process: ProcessMetrics) {
        self.process = process
        opsCommitted = process.counter(.opsCommitted)
        commitDuration = process.timer(.commitDuration)
        deliveries = process.counter(.deliveries)
        slowConsumersDropped = process.counter(.slowConsumersDropped)
        fencedCommits = process.counter(.fencedCommits)
        resumeReplay = process.counter(.resumes, [("mode", ResumeMode.replay.rawValue)])
        resumeSnapshot = process.counter(.resumes, [("mode", ResumeMode.snapshot.rawValue)])
        webSockets = process.gauge(.connections, [("transport", "websocket")])
        longPolls = process.gauge(.connections, [("transport", "long-poll")])
        hosted = process.gauge(.meetings, [("role", "host")])
        standbys = process.gauge(.meetings, [("role", "standby")])
        edges = process.gauge(.meetings, [("role", "edge")])
        deepestSendQueue = process.gauge(.sendQueueFrames, [("of", "deepest")])
        queuedFrames = process.gauge(.sendQueueFrames, [("of", "all")])
    }

    func resumed(_ mode: ResumeMode) {
        (mode == .replay ? resumeReplay : resumeSnapshot).increment()
    }

    func connectionOpened(_ transport: String) { (transport == "long-poll" ? longPolls : webSockets).increment() }
    func connectionClosed(_ transport: String) { (transport == "long-poll" ? longPolls : webSockets).decrement() }

    /// A client was refused something (an op, a hello, a resume) with this code: a
    /// `RejectionCode` or a `ProtocolErrorCode`, both fixed sets.
    func refused(_ code: String) {
        guard process.isOn else { return }
        rejections.counters.withLock { counters in
            if let counter = counters[code] { return counter }
            let counter = process.counter(.rejections, [("code", code)])
            counters[code] = counter
            return counter
        }.increment()
    }

    /// Read before a scrape: the meetings held here, and the clients' send queues.
    func sample(hosted: Int, standbys: Int, edges: Int, sendQueues: [Int]) {
        self.hosted.set(Int64(hosted))
        self.standbys.set(Int64(standbys))
        self.edges.set(Int64(edges))
        deepestSendQueue.set(Int64(sendQueues.max() ?? 0))
        queuedFrames.set(Int64(sendQueues.reduce(0, +)))
    }
}

private final class RejectionCounters: Sendable {
    let counters = Mutex<[String: CoreMetrics.Counter]>([:])
}
