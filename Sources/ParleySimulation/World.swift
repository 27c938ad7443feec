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
        case clientStart(Int)
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
        /// Long-polling (protocol §2.2): a numbered send of frames (batch 0 opens the session
        /// with the hello), a receive of what the server holds, their answers, the end of a
        /// receive's wait, and the client's DELETE.
        case pollSend(ConnectionKey, batch: UInt64, [ClientFrame])
        case pollReceive(ConnectionKey, after: UInt64)
        case pollAnswer(ConnectionKey, PollAnswer)
        case pollWaitOver(ConnectionKey, server: Int, incarnation: Int, after: UInt64)
        case pollDelete(ConnectionKey)
        case toManager(link: UInt64, server: Int, Upward)
        case toCollab(link: UInt64, server: Int, term: UInt64, Placement.Action)
        case linkClosedAtManager(link: UInt64, server: Int)
        case linkClosedAtServer(link: UInt64, server: Int)
        case subscribe(MeetingID, follower: Int, host: Int, after: Seq, subscription: UInt64)
        case unsubscribe(MeetingID, follower: Int, host: Int, subscription: UInt64)
        case replica(MeetingID, follower: Int, host: Int, subscription: UInt64, ReplicaStart)
        /// The host's end of a subscription closed (it stopped hosting, or crashed).
        case replicaClosed(MeetingID, follower: Int, host: Int, subscription: UInt64)
        case loadStandby(MeetingID, server: Int, incarnation: Int, follow: UInt64)
        case standbyLoaded(MeetingID, server: Int, incarnation: Int, follow: UInt64, StoreRead)
        case followerRetry(MeetingID, server: Int, incarnation: Int, follow: UInt64)
        case takeOver(MeetingID, server: Int, incarnation: Int, promoting: Bool)
        case tookOver(MeetingID, server: Int, incarnation: Int, Epoch, StoreRead, promoting: Bool)
        case storeApply(MeetingID, server: Int, incarnation: Int, [LogEntry], Epoch)
        /// A host's checkpoint reaches the store.
        case storeCheckpoint(MeetingID, server: Int, Snapshot)
        case commitResult(MeetingID, server: Int, incarnation: Int, CommitResult)
        /// Timers carry the incarnation that started them: a restart starts a new chain, and
        /// the old one must end, not run beside it.
        case heartbeat(Int, incarnation: Int)
        /// A server reads the manager lease, to leave a link the lease has moved on from.
        case leaseCheck(server: Int, incarnation: Int, link: UInt64)
        case leaseChecked(server: Int, incarnation: Int, link: UInt64, ManagerLease?)
        case managerTick(Int, incarnation: Int)
        case leaseRead(manager: Int, incarnation: Int)
        case leaseReadResult(manager: Int, incarnation: Int, ManagerLease?)
        case leaseClaim(manager: Int, incarnation: Int, expected: ManagerLease?, new: ManagerLease)
        case leaseClaimResult(manager: Int, incarnation: Int, ManagerLease?)
        case fault(Int)
        case wake(Int)
        /// A process its supervisor spawned is up, as the pid it was spawned with.
        case restart(Int, pid: Int)
        case managerWake(Int)
        case managerRestart(Int, pid: Int)
        case supervisorTick(Int)
        case supervisorWake(Int)
        /// What a machine's supervisor hears from its processes: a heartbeat (the first
        /// registers), and an exit.
        case supervisorBeat(machine: Int, NodeName, pid: Int, first: Bool)
        case processExited(machine: Int, NodeName, pid: Int)
        /// A message on an ordered stream, and when it was sent: a cut loses what was in flight.
        indirect case onStream(Stream, sentAt: Int64, Event)

        /// A close is what the other side learns when a stream breaks: never lost with it.
        var isCloseNotice: Bool {
            switch self {
            case .closedToClient, .closedToServer, .linkClosedAtManager, .linkClosedAtServer, .replicaClosed, .unsubscribe: true
            default: false
            }
        }
    }

    /// A process cut off from part of the network until `until`. TCP keeps its connections
    /// through a short partition: what is sent meanwhile arrives, in order, after it heals,
    /// unless a side gives up on the connection first.
    struct Partition {
        enum Extent {
            /// From the manager and the other servers; clients and the store still reach it.
            case zone
            /// From everything: manager, servers, clients and the store.
            case everything
        }
        var until: Int64
        var extent: Extent
    }

    /// What a collab server tells the manager.
    enum Upward {
        case register([HeldMeeting])
        case load
        case hosting(MeetingID, Epoch)
        case failedToHost(MeetingID)
    }

    enum CommitResult { case stored, fenced(Epoch), failed }

    /// A long-poll request's answer: a send taken, a receive's frames, or the session gone
    /// (404, or 409 out of step: either way the client opens a new one).
    enum PollAnswer {
        case sent(batch: UInt64)
        case frames([ServerFrame])
        case gone
    }

    /// What a server reads of a meeting from the store: its newest checkpoint and its log.
    /// The log is read whole (arrays are shared, not copied); a reader takes what it would
    /// have asked for: the entries after the checkpoint, or after the copy it holds.
    struct StoreRead {
        var checkpoint: Snapshot?
        var log: [LogEntry]
    }

    /// A process that can be down, or paused with the events that reach it held.
    protocol SimulatedProcess {
        var up: Bool { get }
        var paused: Bool { get set }
        var held: [Event] { get set }
    }

    struct Scheduled {
        var at: Int64
        var order: UInt64
        var event: Event
    }

    /// A one-way stream of messages that arrive in the order they were sent.
    enum Stream: Hashable {
        case toClient(ConnectionKey)
        case toServer(ConnectionKey)
        /// A collab server's zone link, towards the manager.
        case up(UInt64)
        /// The same link, towards the server.
        case down(UInt64)
        case replication(from: Int, to: Int)
    }

    /// The events to come: a binary min-heap by (time, order). The heap moves small keys;
    /// the events themselves (large, with arrays inside) stay put in `slots` until popped.
    struct EventQueue {
        private struct Key {
            var at: Int64
            var order: UInt64
            var slot: Int
            func precedes(_ other: Key) -> Bool { at < other.at || (at == other.at && order < other.order) }
        }

        private var heap: [Key] = []
        private var slots: [Event?] = []
        private var free: [Int] = []

        mutating func push(_ item: Scheduled) {
            let slot: Int
            if let reused = free.popLast() {
                slot = reused
                slots[slot] = item.event
            } else {
                slot = slots.count
                slots.append(item.event)
            }
            heap.append(Key(at: item.at, order: item.order, slot: slot))
            var child = heap.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard heap[child].precedes(heap[parent]) else { break }
                heap.swapAt(child, parent)
                child = parent
            }
        }

        mutating func pop() -> Scheduled? {
            guard !heap.isEmpty else { return nil }
            heap.swapAt(0, heap.count - 1)
            let first = heap.removeLast()
            var parent = 0
            while true {
                let left = 2 * parent + 1, right = left + 1
                var smallest = parent
                if left < heap.count, heap[left].precedes(heap[smallest]) { smallest = left }
                if right < heap.count, heap[right].precedes(heap[smallest]) { smallest = right }
                guard smallest != parent else { break }
                heap.swapAt(parent, smallest)
                parent = smallest
            }
            let event = slots[first.slot].take()!
            free.append(first.slot)
            return Scheduled(at: first.at, order: first.order, event: event)
        }
    }

    // MARK: Nodes

    struct Server: SimulatedProcess {
        var up = true
        var paused = false
        /// Events that reached the server while it was paused, handled when it wakes.
        var held: [Event] = []
        /// Grows at every crash, so late answers for what it held before are dropped.
        var incarnation = 0
        /// The OS process its supervisor spawned, and whether it has registered there.
        var pid = 0
        var registered = false
        /// Its link to the manager, when one is open.
        var link: UInt64?
        var hosts: [MeetingID: HostState] = [:]
        var standbys: [MeetingID: MeetingLog] = [:]
        /// The follower of each standby copy kept here (one per follow order).
        var followers: [MeetingID: Follower] = [:]
        /// The standby servers subscribed to each meeting hosted here, with their subscription.
        var subscribers: [MeetingID: [Int: UInt64]] = [:]
        /// Meetings being opened or promoted here, with the standby copy a promotion started
        /// from: taken when the order came, as `MeetingDirectory.load` takes it, so what the
        /// copy follows meanwhile is not part of it.
        var takingOver: [MeetingID: MeetingLog?] = [:]
        /// Which manager's orders it carries out, as `ZoneAgent` decides it.
        var fence = TermFence()
        /// Heartbeats sent on the current link; every other one, the lease is read too.
        var beats = 0
        /// How far its wall clock is off: it stamps the ops it sequences with it.
        var wallClockOffsetMs: Int64 = 0
        /// Its long-poll sessions, by the connection they carry.
        var polls: [ConnectionKey: PollSession] = [:]
    }

    /// A long-poll session as `PollSessions` keeps it: the frames waiting for a receive, the
    /// numbering of requests, and whether a receive waits.
    struct PollSession {
        var delivery = PollDelivery<ServerFrame>()
        var outbox: [ServerFrame] = []
        var receiving = false
        /// The server closed the connection: once the outbox is read, receives get `gone`.
        var closed = false
        var lastReceive: Int64
    }

    /// The client's end of a long-poll connection, as the SDK's `LongPollTransport` runs it:
    /// one send at a time, one receive at a time.
    struct PollRequests {
        var queued: [ClientFrame] = []
        var sending = false
        /// The session is open (its hello was answered): receives run, sends are numbered.
        var opened = false
        var sent: UInt64 = 0
        var read: UInt64 = 0
        /// Answers to lose on the way, each request then sent again behind the client's
        /// back (libcurl, a browser, a proxy): the `request retried` fault.
        var lostAnswers = 0
    }

    /// A follow order being carried out: the host it names, `StandbyFollower` deciding, and
    /// the numbers that tell its timers, loads and subscriptions from those of earlier orders.
    struct Follower {
        var host: Int
        var machine = StandbyFollower()
        var id: UInt64
        /// The current subscription; what comes on an earlier one is not for this copy.
        var subscription: UInt64 = 0
    }

    struct Manager: SimulatedProcess {
        var up = true
        var paused = false
        var held: [Event] = []
        var incarnation = 0
        var pid = 0
        var registered = false
        /// Manager ticks since its last heartbeat to its supervisor.
        var ticksSinceBeat = 0
        var election: ManagerElection
        /// Non-nil while this manager leads.
        var placement: Placement?
        var term: UInt64 = 0
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
        /// Whether the client still uses it (for long-polling, the server's session may
        /// outlive it, until it expires).
        var open = true
        var transport: Transport
        var poll = PollRequests()
    }

    /// Who ends a connection: a long-poll session ends differently at each.
    enum Closer {
        /// The client session drops it (a long-poll client DELETEs its session).
        case client
        /// The server closes it (a long-poll session is read to its end first).
        case server
        /// It breaks, or never opened: the client's requests fail; the server learns of it
        /// over a WebSocket, and lets a long-poll session expire.
        case network
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
    static let managerTickMs: Int64 = 50
    /// A long-poll receive waits this long for frames; a session with no receive for
    /// `pollExpiryMs` expires (25 s and 30 s for real; shorter, in step with the clients'
    /// shorter heartbeats).
    static let pollWaitMs: Int64 = 1_000
    static let pollExpiryMs: Int64 = 3_000

    let options: SimulationOptions
    let keepTrace: Bool
    let traceLines = TraceLines()
    var rng: SplitMix64
    var now: Int64 = 0
    var queue = EventQueue()
    var nextOrder: UInt64 = 0
    var servers: [Server]
    var managers: [Manager]
    /// One per machine: machine N runs collab-N, and manager-N where there is one.
    var supervisors: [Supervisor]
    var nextPid = 100
    /// Which manager and which server each zone link joins.
    var linkManager: [UInt64: Int] = [:]
    var linkServer: [UInt64: Int] = [:]
    /// When each broken stream broke: what was sent before and arrives after is lost.
    var cuts: [Stream: Int64] = [:]
    var serverPartitions: [Int: Partition] = [:]
    /// A partitioned manager is cut off from everything: servers, the store, the web front.
    var managerPartitions: [Int: Int64] = [:]
    /// Until then every store call is slow (a vacuum, a failing disk, a replica catching up).
    var slowStoreUntil: Int64 = 0
    /// Commits the store is to fail next.
    var commitsToFail = 0
    let plan: [PlannedFault]
    /// The manager lease as the store holds it, timed on the store's clock.
    var storeLease: ManagerLease?
    /// Who led each term: one manager at most.
    var leaders: [UInt64: Int] = [:]
    var clients: [Client] = []
    var connections: [ConnectionKey: Connection] = [:]
    /// Each client numbers its connections from 1: the world's keys tell them apart.
    var keys: [Int: [ConnectionID: ConnectionKey]] = [:]
    var nextKey: ConnectionKey = 1
    var nextLink: UInt64 = 1
    /// Follow orders and subscriptions, numbered across the world.
    var nextFollow: UInt64 = 1
    /// Delivery times stay in order on each stream (one TCP connection each way).
    var streamClock: [Stream: Int64] = [:]
    /// The store: each meeting's committed log and newest claimed epoch.
    var stored: [MeetingID: [LogEntry]] = [:]
    /// The newest checkpoint of each meeting the store holds (the store keeps the highest seq).
    var checkpoints: [MeetingID: Snapshot] = [:]
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
        managers = (0..<options.managers).map { Self.freshManager($0, incarnation: 0) }
        supervisors = Self.supervisors(options)
        meetingIDs = (0..<options.meetings).map { MeetingID("m\($0)") }
        plan = faultPlan(for: options)
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
                // Every other client long-polls, as behind a proxy that blocks WebSockets.
                var policy = policy
                if index % 2 == 1 { policy.transport = .longPolling }
                let configuration = ClientSession.Configuration(token: participant.rawValue, opIDPrefix: "c\(index)-",
                                                                policy: policy, jitterSeed: options.seed &+ UInt64(index))
                clients.append(Client(session: ClientSession(configuration: configuration), participant: participant, meeting: meeting))
            }
        }
    }

    static func name(_ server: Int) -> NodeName { NodeName("collab-\(server)") }
    static func managerName(_ manager: Int) -> NodeName { NodeName("manager-\(manager)") }
    static func managerIndex(_ name: NodeName) -> Int? { number(of: name, after: "manager-") }
    /// A manager process as it starts: standing by, knowing nothing.
    static func freshManager(_ manager: Int, incarnation: Int) -> Manager {
        Manager(incarnation: incarnation, election: ManagerElection(me: managerName(manager), address: "sim://manager-\(manager)"))
    }
    static func index(_ name: NodeName) -> Int? { number(of: name, after: "collab-") }
    /// The N of a name "prefixN" (not of another prefix's: "manager-1" less "collab-" is -1).
    static func number(of name: NodeName, after prefix: String) -> Int? {
        guard name.rawValue.hasPrefix(prefix), let number = Int(name.rawValue.dropFirst(prefix.count)), number >= 0 else { return nil }
        return number
    }
    static func address(_ server: Int) -> ServerAddress {
        ServerAddress(client: "sim://collab-\(server)", zone: "sim://collab-\(server)/zone", machine: "m\(server)")
    }
    static let emptySnapshotEpoch = Epoch(0)

    func emptyLog(_ meeting: MeetingID) -> MeetingLog {
        MeetingLog(meeting: Meeting(id: meeting, title: "Simulated \(meeting)"), epoch: Self.emptySnapshotEpoch,
                   window: options.resumeWindow)
    }

    /// The meeting as the store reads it now.
    func storeRead(_ meeting: MeetingID) -> StoreRead {
        StoreRead(checkpoint: checkpoints[meeting], log: stored[meeting]!)
    }

    /// A copy rebuilt as `MeetingDirectory` rebuilds it: from the newest checkpoint, the log
    /// after it, and the history before it that resuming clients may need; a standby copy
    /// when `epoch` is nil, else a host under `epoch`.
    func rebuild(_ meeting: MeetingID, from read: StoreRead, epoch: Epoch?) throws(MeetingLog.RecoveryError) -> MeetingLog {
        let snapshot = read.checkpoint ?? emptyLog(meeting).snapshot()
        let through = Int(snapshot.seq)
        let entries = Array(read.log[min(through, read.log.count)...])
        let history = Array(read.log[max(0, through - options.resumeWindow.minEntries)..<min(through, read.log.count)])
        guard let epoch else {
            return try MeetingLog(standbyFrom: snapshot, entries: entries, history: history, window: options.resumeWindow)
        }
        return try MeetingLog(recovering: snapshot, entries: entries, history: history, epoch: epoch, window: options.resumeWindow)
    }

    // MARK: Running

    mutating func run() {
        startSupervisors()
        for index in servers.indices { schedule(.heartbeat(index, incarnation: 0), after: Int64(index) * 7) }
        for index in managers.indices { schedule(.managerTick(index, incarnation: 0), after: Int64(index) * 11) }
        for index in clients.indices {
            // Clients arrive once the servers have registered.
            schedule(.clientStart(index), after: 300 + Int64(index) * 10)
            schedule(.clientTick(index), after: Self.tickMs)
            schedule(.clientWork(index), after: Int64.random(in: 400...800, using: &rng))
        }
        for fault in plan where options.faultsKept?.contains(fault.index) ?? true { schedule(.fault(fault.index), at: fault.atMs) }
        let end = options.activeMs + options.settleMs
        while let next = queue.pop() {
            guard next.at <= end else { break }
            now = next.at
            report.events += 1
            handle(next.event)
            // A run with a violation has failed: its trace up to here is what to read.
            if !report.violations.isEmpty || (now > options.activeMs && settled) { break }
        }
        report.simulatedMs = now
        if report.violations.isEmpty { checkAtEnd() }
        report.trace = traceLines.lines
    }

    /// After the active phase: every client live, nothing unanswered.
    var settled: Bool {
        for index in clients.indices {
            guard case .live = clients[index].session.phase, clients[index].session.unacked.isEmpty else { return false }
        }
        return placementMismatches().isEmpty
    }

    /// Where the leading manager's placement and the servers disagree: a meeting placed on a
    /// server that does not host it, or a standby that holds no copy.
    func placementMismatches() -> [String] {
        guard let leader = managers.indices.filter({ managers[$0].up && managers[$0].placement != nil })
            .max(by: { managers[$0].term < managers[$1].term }) else { return ["no manager leads"] }
        var mismatches: [String] = []
        for meeting in meetingIDs {
            guard let place = managers[leader].placement!.places[meeting] else { continue }
            if let host = Self.index(place.host), servers[host].up, servers[host].hosts[meeting] == nil {
                mismatches.append("\(meeting) is placed on collab-\(host), which does not host it")
            }
            if let name = place.standby, let standby = Self.index(name), servers[standby].up, servers[standby].standbys[meeting] == nil {
                mismatches.append("collab-\(standby) is \(meeting)'s standby in the placement, and holds no copy of it")
            }
        }
        return mismatches
    }

    mutating func schedule(_ event: Event, after delay: Int64) { schedule(event, at: now + delay) }

    mutating func schedule(_ event: Event, at time: Int64) {
        nextOrder += 1
        queue.push(Scheduled(at: time, order: nextOrder, event: event))
    }

    /// Schedules `event` on an ordered stream: never before what was sent on it earlier, and
    /// not before a partition between its ends heals.
    mutating func send(_ event: Event, on stream: Stream) {
        var at = max(streamClock[stream] ?? 0, now + delay())
        if let heals = heals(stream) { at = max(at, heals + delay()) }
        streamClock[stream] = at
        schedule(.onStream(stream, sentAt: now, event), at: at)
    }

    /// Breaks a stream: what is in flight on it after `at` is lost.
    mutating func cut(_ stream: Stream, at time: Int64) {
        cuts[stream] = max(cuts[stream] ?? time, time)
    }

    /// When a partition between the ends of `stream` heals, if one separates them now.
    func heals(_ stream: Stream) -> Int64? {
        var until: Int64?
        func partitioned(server: Int?, clients: Bool) {
            guard let server, let partition = serverPartitions[server], partition.until > now else { return }
            if clients, partition.extent == .zone { return }
            until = max(until ?? 0, partition.until)
        }
        switch stream {
        case .toClient(let key), .toServer(let key):
            partitioned(server: connections[key]?.server, clients: true)
        case .up(let link), .down(let link):
            partitioned(server: linkServer[link], clients: false)
            if let manager = linkManager[link], let heal = managerPartitions[manager], heal > now { until = max(until ?? 0, heal) }
        case .replication(let from, let to):
            partitioned(server: from, clients: false)
            partitioned(server: to, clients: false)
        }
        return until
    }

    /// A store call and its answer, from a server: slow while the store is, held while a
    /// partition cuts the server off from it.
    mutating func storeLatency(server: Int) -> Int64 {
        let latency = storeLatency()
        guard let partition = serverPartitions[server], partition.extent == .everything, partition.until > now else { return latency }
        return partition.until - now + latency
    }

    mutating func storeLatency(manager: Int) -> Int64 {
        let latency = storeLatency()
        guard let heal = managerPartitions[manager], heal > now else { return latency }
        return heal - now + latency
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
        case .clientStart(let index):
            perform(client: index, clients[index].session.start())
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
        case .pollSend(let key, let batch, let frames):
            guard let server = connections[key]?.server else { return }
            atServer(server, event) { world in world.pollSent(frames, batch: batch, on: key, at: server) }
        case .pollReceive(let key, let after):
            guard let server = connections[key]?.server else { return }
            atServer(server, event) { world in world.pollReceive(after: after, on: key, at: server) }
        case .pollWaitOver(let key, let server, let incarnation, let after):
            guard servers[server].incarnation == incarnation else { return }
            atServer(server, event) { world in world.pollWaitOver(key, after: after, at: server) }
        case .pollAnswer(let key, let answer):
            pollAnswered(answer, on: key)
        case .pollDelete(let key):
            guard let connection = connections[key], let server = connection.server else { return }
            atServer(server, event) { world in
                guard world.servers[server].polls.removeValue(forKey: key) != nil else { return }
                world.host(world.clients[connection.client].meeting, at: server) { host, now in host.detach(key, at: now) }
            }
        case .toManager(let link, let server, let message):
            guard let manager = linkManager[link] else { return }
            atManager(manager, event) { world in world.managerReceives(message, link: link, from: server, at: manager) }
        case .toCollab(let link, let server, let term, let order):
            atServer(server, event) { world in
                guard world.servers[server].link == link else { return }
                // Orders from a deposed manager are ignored: a newer term has been seen.
                guard world.servers[server].fence.admits(orderOf: term) else { return }
                world.carryOut(order, at: server)
            }
        case .linkClosedAtManager(let link, let server):
            guard let manager = linkManager[link] else { return }
            atManager(manager, event) { world in world.managerLinkClosed(link, server: server, at: manager, reason: "link closed") }
        case .linkClosedAtServer(let link, let server):
            atServer(server, event) { world in
                if world.servers[server].link == link { world.unlink(server) }
            }
        case .subscribe(let meeting, let follower, let host, let after, let subscription):
            atServer(host, event) { world in world.subscribe(meeting, follower: follower, host: host, after: after, subscription) }
        case .unsubscribe(let meeting, let follower, let host, let subscription):
            atServer(host, event) { world in
                if world.servers[host].subscribers[meeting]?[follower] == subscription { world.servers[host].subscribers[meeting]?[follower] = nil }
            }
        case .replica(let meeting, let follower, let host, let subscription, let update):
            atServer(follower, event) { world in world.replica(meeting, follower: follower, host: host, subscription, update) }
        case .replicaClosed(let meeting, let follower, let host, let subscription):
            atServer(follower, event) { world in
                guard let current = world.servers[follower].followers[meeting], current.host == host,
                      current.subscription == subscription else { return }
                world.follow(meeting, at: follower) { $0.linkEnded() }
            }
        case .loadStandby(let meeting, let server, let incarnation, let follow):
            // At the store: read the committed log.
            schedule(.standbyLoaded(meeting, server: server, incarnation: incarnation, follow: follow, storeRead(meeting)),
                     after: storeLatency(server: server))
        case .standbyLoaded(let meeting, let server, let incarnation, let follow, let read):
            guard servers[server].incarnation == incarnation else { return }
            atServer(server, event) { world in world.standbyLoaded(meeting, at: server, follow: follow, read) }
        case .followerRetry(let meeting, let server, let incarnation, let follow):
            guard servers[server].incarnation == incarnation else { return }
            atServer(server, event) { world in
                guard world.servers[server].followers[meeting]?.id == follow else { return }
                let held = world.servers[server].standbys[meeting] != nil
                world.follow(meeting, at: server) { $0.retryDue(copyHeld: held) }
            }
        case .takeOver(let meeting, let server, let incarnation, let promoting):
            // At the store: claim the next epoch (which fences the old host), read the log.
            let epoch = Epoch(storeEpoch[meeting]!.rawValue + 1)
            storeEpoch[meeting] = epoch
            trace("store", "\(meeting) epoch \(epoch) claimed by collab-\(server)")
            schedule(.tookOver(meeting, server: server, incarnation: incarnation, epoch, storeRead(meeting), promoting: promoting),
                     after: storeLatency(server: server))
        case .tookOver(let meeting, let server, let incarnation, let epoch, let read, let promoting):
            guard servers[server].incarnation == incarnation else { return }
            atServer(server, event) { world in world.tookOver(meeting, at: server, epoch, read, promoting: promoting) }
        case .storeApply(let meeting, let server, let incarnation, let entries, let epoch):
            storeApply(meeting, server: server, incarnation: incarnation, entries, epoch)
        case .storeCheckpoint(let meeting, let server, let snapshot):
            storeCheckpoint(meeting, from: server, snapshot)
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
        case .heartbeat(let server, let incarnation):
            // A timer is not held while the process is paused, only skipped: held, each
            // would start a second chain of timers on waking.
            guard servers[server].up, servers[server].incarnation == incarnation else { return }
            if !servers[server].paused {
                heartbeat(server)
                expirePolls(at: server)
                let first = !servers[server].registered
                servers[server].registered = true
                beat(Self.name(server), pid: servers[server].pid, first: first, machine: server)
            }
            schedule(.heartbeat(server, incarnation: incarnation), after: Self.heartbeatMs)
        case .leaseCheck(let server, let incarnation, let link):
            schedule(.leaseChecked(server: server, incarnation: incarnation, link: link, storeLease), after: storeLatency(server: server))
        case .leaseChecked(let server, let incarnation, let link, let lease):
            guard servers[server].incarnation == incarnation else { return }
            atServer(server, event) { world in world.leaseChecked(lease, link: link, at: server) }
        case .managerTick(let manager, let incarnation):
            guard managers[manager].up, managers[manager].incarnation == incarnation else { return }
            if !managers[manager].paused {
                managerTick(manager)
                managers[manager].ticksSinceBeat += 1
                if Int64(managers[manager].ticksSinceBeat) * Self.managerTickMs >= Self.heartbeatMs {
                    managers[manager].ticksSinceBeat = 0
                    let first = !managers[manager].registered
                    managers[manager].registered = true
                    beat(Self.managerName(manager), pid: managers[manager].pid, first: first, machine: manager)
                }
            }
            schedule(.managerTick(manager, incarnation: incarnation), after: Self.managerTickMs)
        case .leaseRead(let manager, let incarnation):
            schedule(.leaseReadResult(manager: manager, incarnation: incarnation, storeLease), after: storeLatency(manager: manager))
        case .leaseReadResult(let manager, let incarnation, let lease):
            guard managers[manager].incarnation == incarnation else { return }
            atManager(manager, event) { world in
                world.electionDid(world.managers[manager].election.observed(lease, nowMs: world.now), at: manager)
            }
        case .leaseClaim(let manager, let incarnation, let expected, let new):
            leaseClaim(manager: manager, incarnation: incarnation, expected: expected, new: new)
        case .leaseClaimResult(let manager, let incarnation, let won):
            guard managers[manager].incarnation == incarnation else { return }
            atManager(manager, event) { world in
                world.electionDid(world.managers[manager].election.claimed(won, nowMs: world.now), at: manager)
            }
        case .fault(let index):
            inject(plan[index])
        case .wake(let server):
            wake(server)
        case .restart(let server, let pid):
            guard !servers[server].up else { return }
            servers[server].up = true
            servers[server].pid = pid
            trace("collab-\(server)", "restarted, holding nothing")
            schedule(.heartbeat(server, incarnation: servers[server].incarnation), after: 0)
        case .managerWake(let manager):
            wake(\.managers[manager], "manager-\(manager)")
        case .supervisorTick(let machine):
            supervisorTick(machine)
        case .supervisorWake(let machine):
            wake(\.supervisors[machine], "supervisor-\(machine)")
        case .supervisorBeat(let machine, let name, let pid, let first):
            handleBeat(name, pid: pid, first: first, machine: machine)
        case .processExited(let machine, let name, let pid):
            exited(name, pid: pid, machine: machine)
        case .onStream(let stream, let sentAt, let inner):
            if let cut = cuts[stream], sentAt <= cut, now > cut, !inner.isCloseNotice {
                report.faults["message lost in a cut", default: 0] += 1
                trace("net", "lost on \(stream): \(inner)")
                return
            }
            handle(inner)
        case .managerRestart(let manager, let pid):
            guard !managers[manager].up else { return }
            let incarnation = managers[manager].incarnation
            managers[manager] = Self.freshManager(manager, incarnation: incarnation)
            managers[manager].pid = pid
            trace("manager-\(manager)", "restarted")
            schedule(.managerTick(manager, incarnation: incarnation), after: 0)
        }
    }

    /// Runs `body` at `manager` now, holds the event while it is paused, drops it when it is down.
    mutating func atManager(_ manager: Int, _ event: Event, _ body: (inout World) -> Void) {
        guard managers[manager].up else { return }
        if managers[manager].paused { return managers[manager].held.append(event) }
        body(&self)
    }

    /// Runs `body` at `server` now, holds the event while it is paused, drops it when it is down.
    /// (Two plain functions rather than one over key paths: this runs for most events.)
    mutating func atServer(_ server: Int, _ event: Event, _ body: (inout World) -> Void) {
        guard servers[server].up else { return }
        if servers[server].paused { return servers[server].held.append(event) }
        body(&self)
    }

    /// A paused process wakes: what reached it meanwhile is handled now, in order.
    mutating func wake<P: SimulatedProcess>(_ process: WritableKeyPath<World, P>, _ name: String) {
        guard self[keyPath: process].up, self[keyPath: process].paused else { return }
        self[keyPath: process].paused = false
        let held = self[keyPath: process].held
        self[keyPath: process].held = []
        trace(name, "woke with \(held.count) held events")
        for event in held { schedule(event, after: 0) }
    }

    mutating func storeLatency() -> Int64 {
        now < slowStoreUntil ? Int64.random(in: 200...1_500, using: &rng) : Int64.random(in: 1...(options.faults ? 30 : 3), using: &rng)
    }
}
