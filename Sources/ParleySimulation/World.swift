import ParleyClient
import ParleyCore
import ParleyProtocol
import ParleyServer
import ParleyZone

typealias ConnectionKey = UInt64
typealias HostState = MeetingHostState<ConnectionKey>

/// The simulated zone: a manager running `Placement`, collab servers hosting meetings and
/// keeping standby copies, a store, and clients, all driven by one event queue in
/// simulated milliseconds and one seeded generator.
struct World {
    // MARK: Events

    enum Event {
        case clientTick(Int)
        case clientBackoff(Int)
        case clientWork(Int)
        /// The web front's locate, answered by the manager (nil: no manager to ask).
        case locateAtManager(ConnectionKey)
        case located(ConnectionKey, Placement.LocateAnswer?)
        case opened(ConnectionKey)
        case toServer(ConnectionKey, ClientFrame)
        case toClient(ConnectionKey, ServerFrame)
        case closedToClient(ConnectionKey)
        case closedToServer(ConnectionKey)
        case toManager(link: UInt64, server: Int, Upward)
        case toCollab(link: UInt64, server: Int, Placement.Action)
        case linkClosedAtManager(link: UInt64, server: Int)
        case linkClosedAtServer(link: UInt64, server: Int)
        case subscribe(MeetingID, follower: Int, host: Int, after: Seq)
        case replica(MeetingID, follower: Int, host: Int, ReplicaStart)
        case loadStandby(MeetingID, server: Int, incarnation: Int)
        case standbyLoaded(MeetingID, server: Int, incarnation: Int, [LogEntry])
        case takeOver(MeetingID, server: Int, incarnation: Int, promoting: Bool)
        case tookOver(MeetingID, server: Int, incarnation: Int, Epoch, [LogEntry], promoting: Bool)
        case storeApply(MeetingID, server: Int, incarnation: Int, [LogEntry], Epoch)
        case commitResult(MeetingID, server: Int, incarnation: Int, CommitResult)
        case heartbeat(Int)
        case managerTick
        case fault
        case wake(Int)
        case restart(Int)
        case managerRestart
    }

    /// What a collab server tells the manager.
    enum Upward {
        case register([HeldMeeting])
        case load
        case hosting(MeetingID, Epoch)
        case failedToHost(MeetingID)
    }

    enum CommitResult { case stored, fenced(Epoch), failed }

    struct Scheduled {
        var at: Int64
        var order: UInt64
        var event: Event
    }

    // MARK: Nodes

    struct Server {
        var up = true
        var paused = false
        /// Events that reached the server while it was paused, handled when it wakes.
        var held: [Event] = []
        /// Grows at every crash, so late answers for what it held before are dropped.
        var incarnation = 0
        var downSinceMs: Int64?
        /// Its link to the manager, when one is open.
        var link: UInt64?
        var hosts: [MeetingID: HostState] = [:]
        var standbys: [MeetingID: MeetingLog] = [:]
        /// Which server each standby copy follows.
        var following: [MeetingID: Int] = [:]
        /// The standby servers subscribed to each meeting hosted here.
        var subscribers: [MeetingID: [Int]] = [:]
        var takingOver: Set<MeetingID> = []
    }

    struct Manager {
        var up = true
        var placement: Placement
        /// The link each server registered on last.
        var links: [Int: UInt64] = [:]
        var openLinks: Set<UInt64> = []
        var locates: [LocateRequest: ConnectionKey] = [:]
        var nextRequest: UInt64 = 0
    }

    struct Connection {
        var client: Int
        /// The client session's own name for it.
        var id: ConnectionID
        var server: Int?
        var open = true
    }

    struct Client {
        var session: ClientSession
        var participant: ParticipantID
        var meeting: MeetingID
        var lastApplied: Seq = 0
        var acked: [OpID: Ack] = [:]
    }

    // MARK: State

    static let tickMs: Int64 = 100
    static let heartbeatMs: Int64 = 200

    let options: SimulationOptions
    let keepTrace: Bool
    let traceLines = TraceLines()
    var rng: SplitMix64
    var now: Int64 = 0
    var queue: [Scheduled] = []
    var nextOrder: UInt64 = 0
    var servers: [Server]
    var manager: Manager
    var clients: [Client] = []
    var connections: [ConnectionKey: Connection] = [:]
    /// Each client numbers its connections from 1: the world's keys tell them apart.
    var keys: [Int: [ConnectionID: ConnectionKey]] = [:]
    var nextKey: ConnectionKey = 1
    var nextLink: UInt64 = 1
    /// Delivery times stay in order on each stream (one TCP connection each way).
    var streamClock: [String: Int64] = [:]
    /// The store: each meeting's committed log and newest claimed epoch.
    var stored: [MeetingID: [LogEntry]] = [:]
    var storeEpoch: [MeetingID: Epoch] = [:]
    /// Which host committed under each epoch of each meeting: at most one may.
    var committers: [String: String] = [:]
    let meetingIDs: [MeetingID]
    let placementTuning = Placement.Tuning(heartbeatTimeoutMs: 1_000, locateTimeoutMs: 5_000, moveTimeoutMs: 3_000,
                                           connectionsPerServer: 1_000_000, maxServers: 64)
    var report: SimulationReport

    init(options: SimulationOptions, keepTrace: Bool) {
        self.options = options
        self.keepTrace = keepTrace
        rng = SplitMix64(seed: options.seed)
        servers = Array(repeating: Server(), count: options.servers)
        manager = Manager(placement: Placement(tuning: placementTuning))
        meetingIDs = (0..<options.meetings).map { MeetingID("m\($0)") }
        report = SimulationReport(seed: options.seed)
        for meeting in meetingIDs {
            stored[meeting] = []
            storeEpoch[meeting] = Epoch(0)
        }
        let policy = ConnectionPolicy(transport: .webSocket, backoffInitial: .milliseconds(50), backoffMax: .seconds(1),
                                      heartbeatInterval: .milliseconds(500), heartbeatTimeout: .milliseconds(1_500),
                                      connectTimeout: .seconds(1), opAnswerTimeout: .seconds(5), maxAttemptsBeforeFirstWelcome: 1_000)
        for meeting in meetingIDs {
            for _ in 0..<options.clientsPerMeeting {
                let index = clients.count
                let participant = ParticipantID("p\(index)")
                let configuration = ClientSession.Configuration(token: participant.rawValue, opIDPrefix: "c\(index)-",
                                                                policy: policy, jitterSeed: options.seed &+ UInt64(index))
                clients.append(Client(session: ClientSession(configuration: configuration), participant: participant, meeting: meeting))
            }
        }
    }

    static func name(_ server: Int) -> NodeName { NodeName("collab-\(server)") }
    static func index(_ name: NodeName) -> Int? { Int(name.rawValue.dropFirst("collab-".count)) }
    static func address(_ server: Int) -> ServerAddress {
        ServerAddress(client: "sim://collab-\(server)", zone: "sim://collab-\(server)/zone", machine: "m\(server)")
    }
    static let emptySnapshotEpoch = Epoch(0)

    func emptyLog(_ meeting: MeetingID) -> MeetingLog {
        MeetingLog(meeting: Meeting(id: meeting, title: "Simulated \(meeting)"), epoch: Self.emptySnapshotEpoch)
    }

    // MARK: Running

    mutating func run() {
        for index in servers.indices { schedule(.heartbeat(index), after: Int64(index) * 7) }
        schedule(.managerTick, after: Self.tickMs)
        for index in clients.indices {
            // Clients arrive once the servers have registered.
            schedule(.clientBackoff(index), after: 300 + Int64(index) * 10)
            schedule(.clientTick(index), after: Self.tickMs)
            schedule(.clientWork(index), after: Int64.random(in: 400...800, using: &rng))
        }
        if options.faults { schedule(.fault, after: Int64.random(in: 1_000...2_000, using: &rng)) }
        var started = Set<Int>()
        let end = options.activeMs + options.settleMs
        while !queue.isEmpty {
            let next = queue.removeFirst()
            guard next.at <= end else { break }
            now = next.at
            report.events += 1
            if case .clientBackoff(let index) = next.event, !started.contains(index) {
                started.insert(index)
                perform(client: index, clients[index].session.start())
            } else {
                handle(next.event)
            }
            // A run with a violation has failed: its trace up to here is what to read.
            if settled || !report.violations.isEmpty { break }
        }
        report.simulatedMs = now
        if report.violations.isEmpty { checkAtEnd() }
        report.trace = traceLines.lines
    }

    /// After the active phase: every client live, nothing unanswered.
    var settled: Bool {
        now > options.activeMs && clients.allSatisfy { client in
            if case .live = client.session.phase { return client.session.unacked.isEmpty }
            return false
        }
    }

    mutating func schedule(_ event: Event, after delay: Int64) { schedule(event, at: now + delay) }

    mutating func schedule(_ event: Event, at time: Int64) {
        nextOrder += 1
        var low = 0, high = queue.count
        while low < high {
            let mid = (low + high) / 2
            if (queue[mid].at, queue[mid].order) < (time, nextOrder) { low = mid + 1 } else { high = mid }
        }
        queue.insert(Scheduled(at: time, order: nextOrder, event: event), at: low)
    }

    /// Schedules `event` on an ordered stream: never before what was sent on it earlier.
    mutating func send(_ event: Event, on stream: String) {
        let at = max(streamClock[stream] ?? 0, now + delay())
        streamClock[stream] = at
        schedule(event, at: at)
    }

    /// Network delay of one message.
    mutating func delay() -> Int64 { Int64.random(in: 1...(options.faults ? 40 : 5), using: &rng) }

    /// Lines are only built when the trace is kept: most runs pass and need none.
    func trace(_ node: String, _ text: @autoclosure () -> String) {
        if keepTrace { traceLines.lines.append("\(now) \(node): \(text())") }
    }

    mutating func violation(_ text: String) {
        report.violations.append("at \(now) ms: \(text)")
        trace("CHECK", "VIOLATION \(text)")
    }

    // MARK: Handling events

    mutating func handle(_ event: Event) {
        switch event {
        case .clientTick(let index):
            perform(client: index, clients[index].session.tick(nowMs: now))
            schedule(.clientTick(index), after: Self.tickMs)
        case .clientBackoff(let index):
            perform(client: index, clients[index].session.backoffElapsed())
        case .clientWork(let index):
            guard now <= options.activeMs else { return }
            if let (id, actions) = try? clients[index].session.send(.chat(text: "c\(index)-\(report.opsSent)")) {
                report.opsSent += 1
                trace("client \(index)", "send \(id)")
                perform(client: index, actions)
            }
            schedule(.clientWork(index), after: Int64.random(in: 100...600, using: &rng))
        case .locateAtManager(let key):
            locate(key)
        case .located(let key, let answer):
            located(key, answer)
        case .opened(let key):
            guard let connection = connections[key], connection.open else { return }
            perform(client: connection.client, clients[connection.client].session.connected(connection.id))
        case .toClient(let key, let frame):
            guard let connection = connections[key] else { return }
            perform(client: connection.client, clients[connection.client].session.received(frame, on: connection.id))
        case .closedToClient(let key):
            guard let connection = connections[key] else { return }
            perform(client: connection.client, clients[connection.client].session.disconnected(connection.id))
        case .toServer(let key, let frame):
            guard let server = connections[key]?.server else { return }
            atServer(server, event) { world in world.serverReceives(frame, on: key, at: server) }
        case .closedToServer(let key):
            guard let connection = connections[key], let server = connection.server else { return }
            let meeting = clients[connection.client].meeting
            atServer(server, event) { world in world.host(meeting, at: server) { host, now in host.detach(key, at: now) } }
        case .toManager(let link, let server, let message):
            managerReceives(message, link: link, from: server)
        case .toCollab(let link, let server, let order):
            atServer(server, event) { world in
                guard world.servers[server].link == link else { return }
                world.carryOut(order, at: server)
            }
        case .linkClosedAtManager(let link, let server):
            managerLinkClosed(link, server: server, reason: "link closed")
        case .linkClosedAtServer(let link, let server):
            atServer(server, event) { world in
                if world.servers[server].link == link { world.servers[server].link = nil }
            }
        case .subscribe(let meeting, let follower, let host, let after):
            atServer(host, event) { world in world.subscribe(meeting, follower: follower, host: host, after: after) }
        case .replica(let meeting, let follower, let host, let update):
            atServer(follower, event) { world in world.replica(meeting, follower: follower, host: host, update) }
        case .loadStandby(let meeting, let server, let incarnation):
            // At the store: read the committed log.
            schedule(.standbyLoaded(meeting, server: server, incarnation: incarnation, stored[meeting]!), after: storeLatency())
        case .standbyLoaded(let meeting, let server, let incarnation, let entries):
            guard servers[server].incarnation == incarnation else { return }
            atServer(server, event) { world in world.standbyLoaded(meeting, at: server, entries) }
        case .takeOver(let meeting, let server, let incarnation, let promoting):
            // At the store: claim the next epoch (which fences the old host), read the log.
            let epoch = Epoch(storeEpoch[meeting]!.rawValue + 1)
            storeEpoch[meeting] = epoch
            trace("store", "\(meeting) epoch \(epoch) claimed by collab-\(server)")
            schedule(.tookOver(meeting, server: server, incarnation: incarnation, epoch, stored[meeting]!, promoting: promoting),
                     after: storeLatency())
        case .tookOver(let meeting, let server, let incarnation, let epoch, let entries, let promoting):
            guard servers[server].incarnation == incarnation else { return }
            atServer(server, event) { world in world.tookOver(meeting, at: server, epoch, entries, promoting: promoting) }
        case .storeApply(let meeting, let server, let incarnation, let entries, let epoch):
            storeApply(meeting, server: server, incarnation: incarnation, entries, epoch)
        case .commitResult(let meeting, let server, let incarnation, let result):
            guard servers[server].incarnation == incarnation else { return }
            atServer(server, event) { world in
                world.host(meeting, at: server) { host, now in
                    switch result {
                    case .stored: host.committed(at: now)
                    case .fenced(let current): host.fenced(current: current)
                    case .failed: host.commitFailed("simulated store failure")
                    }
                }
            }
        case .heartbeat(let server):
            atServer(server, event) { world in world.heartbeat(server) }
            if servers[server].up { schedule(.heartbeat(server), after: Self.heartbeatMs) }
        case .managerTick:
            if manager.up { placementDid(manager.placement.tick(nowMs: now)) }
            schedule(.managerTick, after: Self.tickMs)
        case .fault:
            injectFault()
            if now < options.activeMs { schedule(.fault, after: Int64.random(in: 700...2_500, using: &rng)) }
        case .wake(let server):
            wake(server)
        case .restart(let server):
            guard !servers[server].up else { return }
            servers[server].up = true
            servers[server].downSinceMs = nil
            trace("collab-\(server)", "restarted, holding nothing")
            schedule(.heartbeat(server), after: 0)
        case .managerRestart:
            guard !manager.up else { return }
            manager = Manager(placement: Placement(tuning: placementTuning))
            trace("manager", "restarted; rebuilds its view from the servers' registrations")
        }
    }

    /// Runs `body` at `server` now, holds the event while it is paused, drops it when it is down.
    mutating func atServer(_ server: Int, _ event: Event, _ body: (inout World) -> Void) {
        guard servers[server].up else { return }
        if servers[server].paused {
            servers[server].held.append(event)
            return
        }
        body(&self)
    }

    mutating func storeLatency() -> Int64 { Int64.random(in: 1...(options.faults ? 30 : 3), using: &rng) }
}
