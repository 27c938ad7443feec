import FoundationEssentials
import Hummingbird
import HummingbirdWebSocket
import Logging
import ParleyCore
import ParleyServer
import ParleyStore
import ParleyZone
import ServiceLifecycle

/// A manager process: it takes part in the election through the lease in the store and,
/// while it leads, accepts the zone's links and carries out ``Placement``'s decisions.
///
/// The rules are the pure ``ManagerElection`` and ``Placement``; this actor only moves
/// their inputs and outputs between the store, the links and the clock.
actor ZoneManager {
    private let name: NodeName
    private let configuration: ZoneConfiguration
    private let supervisor: SupervisorLink
    private let logger: Logger
    /// Non-nil while this manager leads.
    private var placement: Placement?
    private var term: UInt64 = 0
    private var links: [NodeName: Link] = [:]
    private var nextLinkID: UInt64 = 0
    /// Locate questions in flight: placement's request id → who asked, under which id.
    private var askers: [LocateRequest: (NodeName, UInt64)] = [:]
    /// Ids for the questions this manager passes on (locates and admissions).
    private var nextRequest: UInt64 = 0
    /// License questions in flight: the id sent to the services process → who asked, under which id.
    private var admitAskers: [UInt64: (NodeName, UInt64)] = [:]
    /// Operators' links waiting for a drain to finish.
    private var drainWaiters: [NodeName: [AsyncStream<ZoneMessage>.Continuation]] = [:]
    private let chores: AsyncStream<Chore>.Continuation
    let choreStream: AsyncStream<Chore>

    private struct Link {
        let id: UInt64
        let role: NodeRole
        let outbox: AsyncStream<ZoneMessage>.Continuation
    }

    /// Work that waits on someone else, done outside the actor's turn.
    enum Chore: Sendable {
        case requestServer
    }

    init(name: NodeName, configuration: ZoneConfiguration, supervisor: SupervisorLink, logger: Logger) {
        self.name = name
        self.configuration = configuration
        self.supervisor = supervisor
        self.logger = logger
        (choreStream, chores) = AsyncStream.makeStream()
    }

    var isLeading: Bool { placement != nil }

    /// What `parley ctl status` shows for a manager: whether it leads, and the term of the
    /// lease it leads (or last led) under.
    func statusLoad() -> JSONValue {
        .object(["leader": .bool(placement != nil), "term": .number(Double(term))])
    }

    // MARK: Election

    func lead(term: UInt64) {
        self.term = term
        let collabCount = configuration.processes.count { $0.role == .collab }
        placement = Placement(tuning: .init(
            heartbeatTimeoutMs: Int64(configuration.heartbeat.timeoutMs),
            connectionsPerServer: configuration.scaling.connectionsPerServer,
            maxServers: max(configuration.scaling.maxCollabServers, collabCount)))
        logger.notice("leading the zone", metadata: ["term": "\(term)"])
        supervisor.reportNow()
    }

    func stepDown(reason: String) {
        guard placement != nil else { return }
        logger.warning("stepping down", metadata: ["reason": "\(reason)"])
        placement = nil
        supervisor.reportNow()
        for link in links.values { link.outbox.finish() }
        links.removeAll()
        askers.removeAll()
    }

    // MARK: Links

    /// Serves one agent's link until it closes. Refused while this manager does not lead.
    func serve(_ link: ZoneLink) async {
        guard placement != nil else {
            logger.debug("link refused: not leading", metadata: ["peer": "\(link.peer)"])
            return
        }
        let (messages, outbox) = AsyncStream<ZoneMessage>.makeStream()
        nextLinkID += 1
        let id = nextLinkID
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await message in messages {
                    do { try await link.send(message) } catch { return }
                }
            }
            group.addTask {
                do {
                    for try await message in link.messages() {
                        guard await self.received(message, from: link.peer, linkID: id, outbox: outbox) else { return }
                    }
                } catch {}
            }
            await group.next()
            group.cancelAll()
        }
        outbox.finish()
        // Only the peer's current link counts: a replaced one has been dealt with already.
        if links[link.peer]?.id == id { closed(link.peer, reason: "link closed") }
    }

    /// False ends the link.
    private func received(_ message: ZoneMessage, from peer: NodeName, linkID: UInt64,
                          outbox: AsyncStream<ZoneMessage>.Continuation) -> Bool {
        guard placement != nil else { return false }
        let now = wallClockMs()
        if case .register(let name, let role, let address, let holding) = message {
            guard name == peer else {
                logger.warning("link refused: registered under another name", metadata: ["peer": "\(peer)", "name": "\(name)"])
                return false
            }
            if let old = links[peer] {
                old.outbox.finish()
                if old.role == .collab { perform(placement!.lost(peer, reason: "registered again", nowMs: now)) }
            }
            links[peer] = Link(id: linkID, role: role, outbox: outbox)
            logger.info("registered", metadata: ["peer": "\(peer)", "role": "\(role.rawValue)", "holding": "\(holding.count)"])
            if role == .collab, let address {
                perform(placement!.register(peer, at: address, holding: holding, nowMs: now))
            }
            return true
        }
        if case .drain(let server) = message {
            // From an operator's link, which does not register.
            guard let known = placement!.servers[server] else {
                outbox.yield(.drained(server: server, ok: false, detail: "\(server) is not a collab server this manager knows"))
                return true
            }
            logger.notice("drain requested", metadata: ["server": "\(server)", "meetings": "\(known.load.meetings)"])
            drainWaiters[server, default: []].append(outbox)
            perform(placement!.drain(server, nowMs: now))
            return true
        }
        guard let link = links[peer], link.id == linkID else { return false }  // must register first
        switch message {
        case .load(let load):
            perform(placement!.heard(peer, load: load, nowMs: now))
        case .hosting(let meeting, let epoch):
            logger.info("hosting confirmed", metadata: ["meeting": "\(meeting)", "on": "\(peer)", "epoch": "\(epoch)"])
            perform(placement!.hosting(meeting, on: peer, epoch: epoch))
        case .failedToHost(let meeting, let reason):
            logger.warning("could not host", metadata: ["meeting": "\(meeting)", "on": "\(peer)", "reason": "\(reason)"])
            perform(placement!.failedToHost(meeting, on: peer, nowMs: now))
        case .locate(let request, let meeting):
            nextRequest += 1
            let key = LocateRequest(nextRequest)
            askers[key] = (peer, request)
            perform(placement!.locate(meeting, request: key, nowMs: now))
        case .attendance:
            // The log service stores it; the license service counts who is present by it.
            let receivers = Set([serviceNode(.log), serviceNode(.license)].compactMap { $0 })
            if serviceNode(.log) == nil {
                logger.warning("no log service is registered; attendance record not stored", metadata: ["record": "\(message)"])
            }
            for receiver in receivers { send(message, to: receiver) }
        case .admit(let request, let meeting, let participant):
            guard let license = serviceNode(.license) else {
                // Meetings must not stop because the license service is away: admit, loudly.
                logger.warning("no license service is registered; admitting", metadata: ["participant": "\(participant)"])
                send(.admitted(request: request, ok: true, reason: "no license service reachable"), to: peer)
                break
            }
            nextRequest += 1
            admitAskers[nextRequest] = (peer, request)
            send(.admit(request: nextRequest, meeting: meeting, participant: participant), to: license)
        case .admitted(let request, let ok, let reason):
            guard let (asker, id) = admitAskers.removeValue(forKey: request) else { break }
            send(.admitted(request: id, ok: ok, reason: reason), to: asker)
        default:
            logger.debug("unexpected message ignored", metadata: ["peer": "\(peer)", "message": "\(message)"])
        }
        return true
    }

    /// The registered process that runs `service`.
    private func serviceNode(_ service: ZoneService) -> NodeName? {
        links.first { $0.value.role == .services && configuration.process(named: $0.key)?.runs.contains(service) == true }?.key
    }

    private func closed(_ peer: NodeName, reason: String) {
        guard let link = links.removeValue(forKey: peer) else { return }
        logger.notice("link lost", metadata: ["peer": "\(peer)", "reason": "\(reason)"])
        if link.role == .collab, placement != nil { perform(placement!.lost(peer, reason: reason, nowMs: wallClockMs())) }
    }

    func tick() {
        guard placement != nil else { return }
        perform(placement!.tick(nowMs: wallClockMs()))
    }

    // MARK: Actions

    private func perform(_ actions: [Placement.Action]) {
        for action in actions {
            switch action {
            case .open(let meeting, let server, let standby):
                logger.info("open", metadata: ["meeting": "\(meeting)", "on": "\(server)", "standby": "\(standby.map(\.rawValue) ?? "-")"])
                send(.open(meeting: meeting, standby: standby, term: term), to: server)
            case .promote(let meeting, let server, let standby):
                logger.notice("promote standby", metadata: ["meeting": "\(meeting)", "on": "\(server)"])
                send(.promote(meeting: meeting, standby: standby, term: term), to: server)
            case .follow(let meeting, let server, let host):
                guard let address = placement?.servers[host]?.address else { continue }
                send(.follow(meeting: meeting, host: host, hostAddress: address, term: term), to: server)
            case .release(let meeting, let server):
                send(.release(meeting: meeting, term: term), to: server)
            case .answer(let request, let answer):
                guard let (asker, id) = askers.removeValue(forKey: request) else { continue }
                send(.located(request: id, answer: LocateResult(answer)), to: asker)
            case .requestServer:
                requestServer()
            case .disconnect(let server, let reason):
                logger.warning("server lost; its meetings move", metadata: ["server": "\(server)", "reason": "\(reason)"])
                links.removeValue(forKey: server)?.outbox.finish()
            case .drained(let server):
                logger.notice("drained", metadata: ["server": "\(server)"])
                for waiter in drainWaiters.removeValue(forKey: server) ?? [] {
                    waiter.yield(.drained(server: server, ok: true, detail: "every meeting moved off \(server)"))
                }
            }
        }
    }

    /// One more collab server, on the machine with the most room: through this manager's own
    /// supervisor, or in a cluster through a process on the chosen machine, which asks its own.
    private func requestServer() {
        guard !configuration.machines.isEmpty, let placement else {
            chores.yield(.requestServer)
            return
        }
        let machineOf = { (peer: NodeName) in placement.servers[peer]?.address.machine ?? self.configuration.machine(of: peer) }
        var up: Set<String> = configuration.machine.map { [$0] } ?? []
        for peer in links.keys { if let machine = machineOf(peer) { up.insert(machine) } }
        guard let target = placement.machineForNewServer(up: up), target != configuration.machine,
              let messenger = links.keys.sorted(by: { $0.rawValue < $1.rawValue }).first(where: { machineOf($0) == target }) else {
            chores.yield(.requestServer)
            return
        }
        logger.notice("asking for another collab server on the machine with the most room", metadata: [
            "machine": "\(target)", "through": "\(messenger)",
        ])
        send(.startCollab, to: messenger)
    }

    private func send(_ message: ZoneMessage, to peer: NodeName) {
        guard let link = links[peer] else {
            logger.debug("no link; message dropped", metadata: ["peer": "\(peer)"])
            return
        }
        link.outbox.yield(message)
    }

    func finishChores() { chores.finish() }
}

/// The manager process: its zone-link endpoint, the election loop and the placement clock.
struct ManagerService: Service {
    let context: NodeContext

    func run() async throws {
        let logger = context.logger
        let configuration = context.configuration
        // The manager writes only its lease, which lapses within a second and means nothing
        // after a power loss. An fsync per renewal would let a busy disk (a full test suite
        // with a browser running, seen once) delay renewals past the lease, and then no
        // manager could lead. WAL with synchronous=NORMAL still commits atomically and is
        // seen at once by every process.
        let location = try configuration.storeLocation()
        let store = try await location.open(dataDirectory: context.paths.data, synchronous: .normal, logger: logger)
        let credentials = try ZoneCredentials.load(paths: context.paths, configuration: configuration)
        let manager = ZoneManager(name: context.name, configuration: configuration, supervisor: context.link, logger: logger)
        await context.link.reportLoad { await manager.statusLoad() }
        let port = PortAnnouncement()
        let bind = try ListenPorts.pick(configuration.ports, host: configuration.host, process: context.name)
        let app = ZoneListener.application(host: configuration.host, bind: bind, credentials: credentials, serverName: "parley-manager",
                                           port: port, logger: logger) { link in await manager.serve(link) }

        try await withThrowingTaskGroup(of: Void.self) { group in
            if let pools = store as? PostgresStore { group.addTask { await pools.run() } }
            group.addTask { try await app.run() }
            group.addTask {
                let address = "\(credentials.scheme)://\(configuration.host):\(try await port.value())"
                await Self.elect(manager: manager, store: store, me: context.name, address: address, logger: logger)
            }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(50))
                    await manager.tick()
                }
            }
            group.addTask {
                for await chore in manager.choreStream {
                    switch chore {
                    case .requestServer:
                        do {
                            let name = try await context.link.requestSpawn(role: .collab)
                            logger.notice("asked the supervisor for another collab server", metadata: ["name": "\(name)"])
                        } catch {
                            logger.warning("the supervisor did not add a collab server", metadata: ["error": "\(error)"])
                        }
                    }
                }
            }
            group.addTask { try? await gracefulShutdown() }
            // Shutdown, or the zone-link server failing: either way this manager stops leading.
            // A failure is rethrown, so the process exits and the supervisor restarts it.
            defer { group.cancelAll() }
            do {
                try await group.next()
            } catch {
                await manager.stepDown(reason: "the zone-link server failed: \(error)")
                await manager.finishChores()
                throw error
            }
            await manager.stepDown(reason: "shutting down")
            await manager.finishChores()
        }
    }

    /// The election loop: the pure rules, the lease in the store, and the wall clock.
    private static func elect(manager: ZoneManager, store: any Store, me: NodeName, address: String, logger: Logger) async {
        var election = ManagerElection(me: me, address: address)
        var actions = election.tick(nowMs: wallClockMs())
        while !Task.isCancelled {
            while !actions.isEmpty {
                let action = actions.removeFirst()
                switch action {
                case .read:
                    do {
                        let stored = try await leaseCall(election, manager) { try await store.lease(ZoneAgent.managerLease) }
                        let now = wallClockMs()
                        actions += election.observed(stored.map { ManagerLease($0, readAtMs: now) }, nowMs: now)
                    } catch {
                        logger.warning("cannot read the manager lease", metadata: ["error": "\(error)"])
                        actions += election.claimed(nil, nowMs: wallClockMs())
                    }
                case .claim(let expected, let new):
                    do {
                        // The store times the lease on its own clock; ours only measures how
                        // long we may trust it (see ManagerElection).
                        let claim = LeaseClaim(holder: new.holder.rawValue, address: new.address, term: new.term,
                                               durationMs: election.timing.leaseMs)
                        let version = expected.map { LeaseVersion(holder: $0.holder.rawValue, term: $0.term) }
                        let won = try await leaseCall(election, manager) {
                            try await store.replaceLease(ZoneAgent.managerLease, expected: version, with: claim)
                        }
                        actions += election.claimed(won ? new : nil, nowMs: wallClockMs())
                    } catch {
                        logger.warning("cannot write the manager lease", metadata: ["error": "\(error)"])
                        actions += election.claimed(nil, nowMs: wallClockMs())
                    }
                case .lead(let term):
                    await manager.lead(term: term)
                case .stepDown(let reason):
                    await manager.stepDown(reason: reason)
                }
            }
            try? await Task.sleep(for: .milliseconds(25))
            actions = election.tick(nowMs: wallClockMs())
        }
        await manager.stepDown(reason: "shutting down")
    }
}

/// Runs one of the election's store calls. A leader's certainty runs out at a fixed time
/// whether or not the store answers: if the call is still out then (a database that hangs,
/// a machine cut off from it), the manager stops leading at that moment, not when the call
/// finally fails. The election learns the outcome when the call returns.
private func leaseCall<T: Sendable>(_ election: ManagerElection, _ manager: ZoneManager,
                                    _ call: @escaping @Sendable () async throws -> T) async throws -> T {
    guard case .leader(_, let validUntilMs) = election.role else { return try await call() }
    return try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await call() }
        group.addTask {
            try await Task.sleep(for: .milliseconds(max(0, validUntilMs - wallClockMs())))
            await manager.stepDown(reason: "the store did not answer the lease renewal before the lease could lapse")
            return nil
        }
        defer { group.cancelAll() }
        while let next = try await group.next() {
            if let value = next { return value }
        }
        throw CancellationError()
    }
}

extension ManagerLease {
    /// A lease read from the store, its expiry moved onto this process's clock: `readAtMs`
    /// plus what the store said remained.
    init(_ stored: StoredLease, readAtMs: Int64) {
        self.init(holder: NodeName(stored.holder), address: stored.address, term: stored.term,
                  expiresAtMs: readAtMs + stored.remainingMs)
    }
}
