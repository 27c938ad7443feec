import ParleyClient
import ParleyCore
import ParleyProtocol
import ParleyServer

/// One seeded run of a meeting's failover core in a simulated world: the real pure
/// machines (``MeetingHostState`` on the servers, the SDK's ``ClientSession`` in the
/// clients, ``MeetingLog`` in both) wired through a simulated network, store and clock.
/// One thread, no I/O, no wall clock: the same seed replays the same run, event for event.
///
/// This first world hosts one meeting on one of several servers. The zone's placement is
/// stood in for by one rule (a host that is down or paused past the detection time is
/// replaced by another server under the next epoch, recovered from the store); the real
/// `Placement` and `ManagerElection` join it in a later step.
public struct SimulationOptions: Sendable, Equatable {
    public var seed: UInt64
    public var servers = 3
    public var clients = 3
    /// Simulated time during which clients send and faults are injected.
    public var activeMs: Int64 = 20_000
    /// Simulated time after the faults stop for every client to resume and every op to be answered.
    public var settleMs: Int64 = 30_000
    public var faults = true
    /// A rule broken on purpose, to show the checker catches it.
    public var brokenRule: BrokenRule?

    public init(seed: UInt64) { self.seed = seed }
}

/// Rules the simulator can break on purpose: each must be caught by an invariant.
public enum BrokenRule: String, Sendable, CaseIterable {
    /// The store appends whatever epoch a commit carries: a deposed host keeps committing.
    case skipEpochCheck = "skip-epoch-check"
    /// The client is told its op is done before the store has it.
    case ackBeforeCommit = "ack-before-commit"
}

public struct SimulationReport: Sendable {
    public var seed: UInt64
    public var events = 0
    public var simulatedMs: Int64 = 0
    public var opsSent = 0
    public var opsAcked = 0
    public var failovers = 0
    public var faults: [String: Int] = [:]
    public var violations: [String] = []
    /// The events of the run, in order, with time and node (kept when asked for).
    public var trace: [String] = []
}

/// Runs one seed. `keepTrace` keeps the readable event trace (for a failing seed).
public func simulate(_ options: SimulationOptions, keepTrace: Bool = false) -> SimulationReport {
    var world = World(options: options, keepTrace: keepTrace)
    world.run()
    return world.report
}

// MARK: - The world

private typealias ConnectionKey = UInt64

/// The trace, appended to from non-mutating code (one run, one thread).
private final class TraceLines {
    var lines: [String] = []
}

private struct World {
    enum Event {
        case clientTick(Int)
        case clientBackoff(Int)
        case clientWork(Int)
        case toServer(ConnectionKey, ClientFrame)
        case toClient(ConnectionKey, ServerFrame)
        case opened(ConnectionKey)
        case closedToClient(ConnectionKey)
        case closedToServer(ConnectionKey)
        case storeApply(server: Int, incarnation: Int, entries: [LogEntry], epoch: Epoch)
        case commitResult(server: Int, incarnation: Int, CommitResult)
        case fault
        case wake(Int)
        case restart(Int)
        case zoneCheck
    }

    enum CommitResult { case stored, fenced(Epoch), failed }

    struct Scheduled {
        var at: Int64
        var order: UInt64
        var event: Event
    }

    struct Server {
        var up = true
        var paused = false
        /// Events that reached the server while it was paused, delivered when it wakes.
        var held: [Event] = []
        var host: MeetingHostState<ConnectionKey>?
        /// Grows at every restart and every new host, so late answers for an old one are dropped.
        var incarnation = 0
        var downSinceMs: Int64?
    }

    struct Connection {
        var client: Int
        /// The client session's own name for it.
        var id: ConnectionID
        var server: Int
        var open = true
        /// Delivery times stay in order on a connection (it is one TCP stream).
        var lastToServerMs: Int64 = 0
        var lastToClientMs: Int64 = 0
    }

    struct Client {
        var session: ClientSession
        var participant: ParticipantID
        /// Seq of every entry this client applied, in order, and where it started after a snapshot.
        var lastApplied: Seq = 0
        var acked: [OpID: Ack] = [:]
        var sent: [OpID: String] = [:]
    }

    let options: SimulationOptions
    let keepTrace: Bool
    var rng: SplitMix64
    var now: Int64 = 0
    var queue: [Scheduled] = []
    var nextOrder: UInt64 = 0
    var servers: [Server]
    var clients: [Client] = []
    var connections: [ConnectionKey: Connection] = [:]
    /// Each client numbers its connections from 1: the world's keys tell them apart.
    var keys: [Int: [ConnectionID: ConnectionKey]] = [:]
    var nextConnection: ConnectionKey = 1
    /// The store: the committed log and the newest claimed epoch (commits under older ones are fenced).
    var stored: [LogEntry] = []
    var storeEpoch = Epoch(1)
    /// Which host incarnation committed under each epoch: at most one may.
    var committers: [Epoch: String] = [:]
    /// The server the zone sends clients to.
    var designated: Int = 0
    let initial: Meeting
    var report: SimulationReport
    let traceLines = TraceLines()

    static let detectionMs: Int64 = 1_000
    static let tickMs: Int64 = 100

    init(options: SimulationOptions, keepTrace: Bool) {
        self.options = options
        self.keepTrace = keepTrace
        rng = SplitMix64(seed: options.seed)
        servers = Array(repeating: Server(), count: options.servers)
        initial = Meeting(id: "sim", title: "Simulated")
        report = SimulationReport(seed: options.seed)
        servers[0].host = MeetingHostState(log: MeetingLog(meeting: initial, epoch: storeEpoch), limits: ConnectionLimits(),
                                           asksAdmission: false, snapshotEveryEntries: 1_000_000)
        let policy = ConnectionPolicy(transport: .webSocket, backoffInitial: .milliseconds(50), backoffMax: .seconds(1),
                                      heartbeatInterval: .milliseconds(500), heartbeatTimeout: .milliseconds(1_500),
                                      connectTimeout: .seconds(1), opAnswerTimeout: .seconds(5), maxAttemptsBeforeFirstWelcome: 1_000)
        for index in 0..<options.clients {
            let participant = ParticipantID("p\(index)")
            let configuration = ClientSession.Configuration(token: participant.rawValue, opIDPrefix: "c\(index)-", policy: policy,
                                                            jitterSeed: options.seed &+ UInt64(index))
            clients.append(Client(session: ClientSession(configuration: configuration), participant: participant))
        }
    }

    // MARK: Running

    mutating func run() {
        for index in clients.indices {
            perform(client: index, clients[index].session.start())
            schedule(.clientTick(index), after: Self.tickMs)
            schedule(.clientWork(index), after: Int64.random(in: 50...300, using: &rng))
        }
        if options.faults { schedule(.fault, after: Int64.random(in: 500...1_500, using: &rng)) }
        schedule(.zoneCheck, after: Self.tickMs)
        let end = options.activeMs + options.settleMs
        while let next = popNext(), next.at <= end {
            now = next.at
            report.events += 1
            handle(next.event)
            if settled { break }
        }
        report.simulatedMs = now
        checkAtEnd()
        report.trace = traceLines.lines
    }

    /// After the active phase: every client live, nothing unanswered.
    var settled: Bool {
        now > options.activeMs && clients.allSatisfy { client in
            if case .live = client.session.phase { return client.session.unacked.isEmpty }
            return false
        }
    }

    mutating func schedule(_ event: Event, after delay: Int64) {
        schedule(event, at: now + delay)
    }

    mutating func schedule(_ event: Event, at time: Int64) {
        nextOrder += 1
        let item = Scheduled(at: time, order: nextOrder, event: event)
        // Kept sorted by (time, order): the same seed always runs the same order.
        var low = 0, high = queue.count
        while low < high {
            let mid = (low + high) / 2
            if (queue[mid].at, queue[mid].order) < (time, nextOrder) { low = mid + 1 } else { high = mid }
        }
        queue.insert(item, at: low)
    }

    mutating func popNext() -> Scheduled? { queue.isEmpty ? nil : queue.removeFirst() }

    /// Lines are only built when the trace is kept: most runs pass and need none.
    func trace(_ node: String, _ text: @autoclosure () -> String) {
        if keepTrace { traceLines.lines.append("\(now) \(node): \(text())") }
    }

    mutating func violation(_ text: String) {
        report.violations.append("at \(now) ms: \(text)")
        trace("CHECK", "VIOLATION \(text)")
    }

    /// Network delay of one message on a connection.
    mutating func delay() -> Int64 { Int64.random(in: 1...(options.faults ? 40 : 5), using: &rng) }

    // MARK: Events

    mutating func handle(_ event: Event) {
        switch event {
        case .clientTick(let index):
            perform(client: index, clients[index].session.tick(nowMs: now))
            schedule(.clientTick(index), after: Self.tickMs)
        case .clientBackoff(let index):
            perform(client: index, clients[index].session.backoffElapsed())
        case .clientWork(let index):
            guard now <= options.activeMs else { return }
            let text = "c\(index)-\(report.opsSent)"
            if let (id, actions) = try? clients[index].session.send(.chat(text: text)) {
                report.opsSent += 1
                clients[index].sent[id] = text
                trace("client \(index)", "send \(id) \(text)")
                perform(client: index, actions)
            }
            schedule(.clientWork(index), after: Int64.random(in: 50...400, using: &rng))
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
            guard let connection = connections[key] else { return }
            atServer(connection.server, event) { world in world.serverReceives(frame, on: key) }
        case .closedToServer(let key):
            guard let connection = connections[key] else { return }
            atServer(connection.server, event) { world in
                world.host(connection.server) { host, now in host.detach(key, at: now) }
            }
        case .storeApply(let server, let incarnation, let entries, let epoch):
            storeApply(server: server, incarnation: incarnation, entries: entries, epoch: epoch)
        case .commitResult(let server, let incarnation, let result):
            guard servers[server].incarnation == incarnation else { return }
            atServer(server, event) { world in
                world.host(server) { host, now in
                    switch result {
                    case .stored: host.committed(at: now)
                    case .fenced(let current): host.fenced(current: current)
                    case .failed: host.commitFailed("simulated store failure")
                    }
                }
            }
        case .fault:
            injectFault()
            if now < options.activeMs { schedule(.fault, after: Int64.random(in: 700...2_500, using: &rng)) }
        case .wake(let server):
            wake(server)
        case .restart(let server):
            guard !servers[server].up else { return }
            servers[server].up = true
            servers[server].downSinceMs = nil
            trace("server \(server)", "restarted (holds nothing)")
        case .zoneCheck:
            zoneCheck()
            schedule(.zoneCheck, after: Self.tickMs)
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

    /// Feeds the server's host one input and carries out what it returns.
    mutating func host(_ server: Int, _ input: (inout MeetingHostState<ConnectionKey>, Int64) -> [MeetingHostState<ConnectionKey>.Action]) {
        guard var host = servers[server].host else { return }
        let actions = input(&host, now)
        servers[server].host = host
        perform(server: server, actions)
        // A batch ends with one commit of what it sequenced, as in the server.
        if var host = servers[server].host, !host.stopped {
            let flush = host.flush()
            servers[server].host = host
            perform(server: server, flush)
        }
    }

    mutating func serverReceives(_ frame: ClientFrame, on key: ConnectionKey) {
        guard let connection = connections[key], connection.open else { return }
        let server = connection.server
        guard servers[server].host != nil, !(servers[server].host?.stopped ?? true) else {
            // Not hosting this meeting (any more): the client asks the zone again.
            closeConnection(key)
            return
        }
        switch frame {
        case .hello(let token, let resume):
            let joiner = MeetingHostState<ConnectionKey>.Joiner(participant: ParticipantID(token), name: token, role: .attendee)
            host(server) { host, now in host.attach(key, joiner, resume: resume, at: now) }
        case .op(let id, let operation):
            host(server) { host, now in host.op(key, id, operation, at: now) }
        case .leave:
            host(server) { host, now in host.leave(key, at: now) }
        case .ping(let nonce):
            send(.pong(nonce: nonce), on: key)
        case .signal:
            break
        }
    }

    // MARK: Server actions

    mutating func perform(server: Int, _ actions: [MeetingHostState<ConnectionKey>.Action]) {
        for action in actions {
            switch action {
            case .send(let key, let frame):
                send(frame, on: key)
            case .fail(let key, let error):
                send(.error(error), on: key)
                if error.fatal { closeConnection(key) }
            case .welcome(let key, let participant, let welcome, let replay):
                send(.welcome(welcome), on: key)
                for entry in replay { send(.event(DeliveredEntry(entry, for: participant)), on: key) }
            case .close(let key):
                closeConnection(key)
            case .askAdmission(let key, _):
                host(server) { host, now in host.admission(key, .admit, at: now) }
            case .commit(let entries):
                let epoch = servers[server].host!.log.epoch
                let incarnation = servers[server].incarnation
                trace("server \(server)", "commit \(entries.map(\.seq)) under \(epoch)")
                schedule(.storeApply(server: server, incarnation: incarnation, entries: entries, epoch: epoch),
                         after: Int64.random(in: 1...(options.faults ? 30 : 3), using: &rng))
                if options.brokenRule == .ackBeforeCommit {
                    // Broken on purpose: acknowledged as if stored, before the store has it.
                    host(server) { host, now in host.committed(at: now) }
                }
            case .deliver(let entries, let recipients, let acks):
                for entry in entries {
                    for (key, participant) in recipients { send(.event(DeliveredEntry(entry, for: participant)), on: key) }
                    for (key, id) in acks[entry.seq] ?? [] { send(.ack(id: id, epoch: entry.epoch, seq: entry.seq), on: key) }
                }
            case .relay, .attendance, .replicate, .checkpoint, .finalCheckpoint, .log:
                break
            case .stop(let closing):
                trace("server \(server)", "host stopped")
                for key in closing { closeConnection(key) }
            }
        }
    }

    mutating func send(_ frame: ServerFrame, on key: ConnectionKey) {
        guard var connection = connections[key], connection.open else { return }
        let at = max(connection.lastToClientMs, now + delay())
        connection.lastToClientMs = at
        connections[key] = connection
        schedule(.toClient(key, frame), at: at)
    }

    /// Either side closes: each learns of it after a network delay.
    mutating func closeConnection(_ key: ConnectionKey) {
        guard var connection = connections[key], connection.open else { return }
        connection.open = false
        connections[key] = connection
        schedule(.closedToClient(key), at: max(connection.lastToClientMs, now) + delay())
        schedule(.closedToServer(key), at: max(connection.lastToServerMs, now) + delay())
    }

    // MARK: The store

    mutating func storeApply(server: Int, incarnation: Int, entries: [LogEntry], epoch: Epoch) {
        let result: CommitResult
        if options.faults, Int.random(in: 0..<100, using: &rng) < 2 {
            result = .failed
            report.faults["commit failed", default: 0] += 1
        } else if epoch < storeEpoch, options.brokenRule != .skipEpochCheck {
            result = .fenced(storeEpoch)
        } else {
            let committer = "server \(server) incarnation \(incarnation)"
            if let other = committers[epoch], other != committer {
                violation("two hosts committed under \(epoch): \(other) and \(committer)")
            }
            committers[epoch] = committer
            for entry in entries {
                if entry.seq <= Seq(stored.count) {
                    violation("seq \(entry.seq) stored twice: \(stored[Int(entry.seq) - 1].epoch) then \(entry.epoch)")
                } else if entry.seq != Seq(stored.count) + 1 {
                    violation("gap in the store: seq \(entry.seq) after \(stored.count)")
                } else {
                    stored.append(entry)
                }
            }
            result = .stored
        }
        trace("store", "\(entries.map(\.seq)) under \(epoch): \(result)")
        schedule(.commitResult(server: server, incarnation: incarnation, result), after: Int64.random(in: 1...(options.faults ? 30 : 3), using: &rng))
    }

    // MARK: The zone

    /// The stand-in for placement: the designated host, down or paused past the detection
    /// time (or stopped), is replaced by another server that is up, under the next epoch.
    mutating func zoneCheck() {
        let current = servers[designated]
        let failed: Bool
        if let since = current.downSinceMs {
            failed = now - since >= Self.detectionMs      // crashed or paused: noticed after a while
        } else {
            failed = current.host?.stopped ?? true        // its host stopped (fenced, store failure)
        }
        guard failed else { return }
        let candidates = servers.indices.filter { servers[$0].up && !servers[$0].paused }
        guard !candidates.isEmpty else { return }
        let chosen = candidates[Int.random(in: 0..<candidates.count, using: &rng)]
        storeEpoch = Epoch(storeEpoch.rawValue + 1)
        do {
            let log = try MeetingLog(recovering: MeetingLog(meeting: initial, epoch: Epoch(0)).snapshot(), entries: stored, epoch: storeEpoch)
            servers[chosen].incarnation += 1
            servers[chosen].host = MeetingHostState(log: log, limits: ConnectionLimits(), asksAdmission: false,
                                                    snapshotEveryEntries: 1_000_000)
            designated = chosen
            report.failovers += 1
            trace("zone", "meeting hosted on server \(chosen) under \(storeEpoch), recovered through seq \(stored.count)")
        } catch {
            violation("the store's log does not rebuild the meeting: \(error)")
        }
    }

    mutating func injectFault() {
        let roll = Int.random(in: 0..<100, using: &rng)
        let server = Int.random(in: 0..<servers.count, using: &rng)
        switch roll {
        case 0..<30:
            guard servers[server].up else { return }
            crash(server)
            schedule(.restart(server), after: Int64.random(in: 200...2_000, using: &rng))
        case 30..<55:
            guard servers[server].up, !servers[server].paused else { return }
            servers[server].paused = true
            servers[server].downSinceMs = now
            report.faults["pause", default: 0] += 1
            trace("server \(server)", "paused")
            schedule(.wake(server), after: Int64.random(in: 100...3_000, using: &rng))
        default:
            let open = connections.keys.sorted().filter { connections[$0]!.open }
            guard !open.isEmpty else { return }
            let key = open[Int.random(in: 0..<open.count, using: &rng)]
            report.faults["connection dropped", default: 0] += 1
            trace("net", "connection \(key) dropped")
            closeConnection(key)
        }
    }

    mutating func crash(_ server: Int) {
        report.faults["crash", default: 0] += 1
        trace("server \(server)", "crashed")
        servers[server].up = false
        servers[server].paused = false
        servers[server].held = []
        servers[server].host = nil
        servers[server].incarnation += 1
        servers[server].downSinceMs = now
        for key in connections.keys.sorted() where connections[key]!.server == server { closeConnection(key) }
    }

    mutating func wake(_ server: Int) {
        guard servers[server].up, servers[server].paused else { return }
        servers[server].paused = false
        servers[server].downSinceMs = nil
        trace("server \(server)", "woke with \(servers[server].held.count) held events")
        let held = servers[server].held
        servers[server].held = []
        for event in held { schedule(event, after: 0) }
    }

    // MARK: Clients

    mutating func perform(client index: Int, _ actions: [ClientSession.Action]) {
        for action in actions {
            switch action {
            case .connect(let id, _):
                // The locator's answer: the designated server.
                let key = nextConnection
                nextConnection += 1
                keys[index, default: [:]][id] = key
                connections[key] = Connection(client: index, id: id, server: designated)
                trace("client \(index)", "connect \(key) to server \(designated)")
                if servers[designated].up {
                    schedule(.opened(key), after: delay())
                } else {
                    closeConnection(key)                       // refused: nothing listens there
                }
            case .send(let frame, let id):
                guard let key = keys[index]?[id], var connection = connections[key], connection.open else { continue }
                let at = max(connection.lastToServerMs, now + delay())
                connection.lastToServerMs = at
                connections[key] = connection
                schedule(.toServer(key, frame), at: at)
            case .disconnect(let id, _):
                if let key = keys[index]?[id] { closeConnection(key) }
            case .scheduleReconnect(let afterMs):
                schedule(.clientBackoff(index), after: Int64(afterMs))
            case .complete(let id, let outcome):
                if case .acked(let ack) = outcome {
                    clients[index].acked[id] = ack
                    report.opsAcked += 1
                    trace("client \(index)", "acked \(id) at seq \(ack.seq) \(ack.epoch)")
                }
            case .emit(.entry(let entry)):
                if entry.seq != clients[index].lastApplied + 1 {
                    violation("client \(index) applied seq \(entry.seq) after \(clients[index].lastApplied)")
                }
                clients[index].lastApplied = entry.seq
            case .emit(.welcome(let mode)):
                trace("client \(index)", "welcome (\(mode.rawValue)) at seq \(clients[index].session.lastSeq)")
                if mode == .snapshot { clients[index].lastApplied = clients[index].session.lastSeq }
            case .emit, .renewToken, .probeWebSocket, .finished:
                break
            }
        }
    }

    // MARK: Checks at the end

    mutating func checkAtEnd() {
        // Every acknowledged op is in the store exactly once, at its acknowledged seq.
        var bySeq: [Seq: LogEntry] = [:]
        for entry in stored { bySeq[entry.seq] = entry }
        for (index, client) in clients.enumerated() {
            for (id, ack) in client.acked.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
                guard let entry = bySeq[ack.seq] else {
                    violation("client \(index)'s op \(id), acked at seq \(ack.seq), is not in the store")
                    continue
                }
                if entry.opID != id || entry.issuer != .participant(client.participant) {
                    violation("client \(index)'s op \(id), acked at seq \(ack.seq), is not the entry stored there")
                }
            }
            let storedCount = stored.filter { $0.issuer == .participant(client.participant) && $0.opID != nil }
            let distinct = Set(storedCount.compactMap(\.opID))
            if distinct.count != storedCount.count { violation("client \(index) has an op stored twice") }
        }
        // Liveness: after the faults stop, every client is live again with every op answered.
        for (index, client) in clients.enumerated() {
            guard case .live = client.session.phase else {
                violation("client \(index) is not live \(options.settleMs) ms after the faults stopped (\(client.session.phase))")
                continue
            }
            if !client.session.unacked.isEmpty {
                violation("client \(index) still waits for \(client.session.unacked.count) ops")
            }
        }
        // The host's state is what the store rebuilds.
        if let host = servers[designated].host, !host.stopped, !host.hasUncommitted,
           let rebuilt = try? MeetingLog(recovering: MeetingLog(meeting: initial, epoch: Epoch(0)).snapshot(), entries: stored,
                                         epoch: Epoch(storeEpoch.rawValue + 1)),
           rebuilt.meeting != host.log.meeting {
            violation("the meeting rebuilt from the store differs from the host's")
        }
    }
}
