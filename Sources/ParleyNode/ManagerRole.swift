import CoreMetrics
import FoundationEssentials
import Hummingbird
import HummingbirdWebSocket
import Logging
import Tracing
import ParleyCore
import ParleyServer
import ParleyStore
import ParleyTelemetry
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
    /// What ``Placement``'s timeouts run on (see ``MonotonicClockMs``).
    private let clock: MonotonicClockMs
    /// Non-nil while this manager leads.
    private var placement: Placement?
    private var term: UInt64 = 0
    /// Registered processes, by name: the link each registered on last.
    private var links: [NodeName: Link] = [:]
    /// Every open link, registered or an operator's, by the id its relayed questions name.
    private var openLinks: [ManagerRelays.LinkID: (peer: NodeName, outbox: ZoneOutbox)] = [:]
    private var nextLinkID: UInt64 = 0
    /// Locates, admissions and drains in flight; kept across terms (it is emptied on every
    /// step-down), so the ids it gives questions never repeat.
    private var relays = ManagerRelays()
    private let chores: AsyncStream<Chore>.Continuation
    let choreStream: AsyncStream<Chore>
    private let metrics: ManagerMetrics
    /// Each promotion in flight, until its `hosting` arrives: when it was ordered (clock ms),
    /// to which server, and its `parley.failover` span when tracing is on (from the loss that
    /// caused it, if any, to the new host's confirmation).
    private var promoting: [MeetingID: Promotion] = [:]
    private struct Promotion {
        var sinceMs: Int64
        var to: NodeName
        var span: (any Span)?
    }
    /// The last failovers this manager saw through, newest last, for the operator's zone page.
    private var recentFailovers: [(meeting: MeetingID, to: NodeName, sinceMs: Int64, tookMs: Int64)] = []
    /// The server lost in the actions being performed, if one was: its failovers start there.
    private var lossBeingHandled: (server: NodeName, reason: String, atMs: Int64)?
    private let tracing: ProcessTracing
    static let recentFailoversKept = 20

    private struct Link {
        let id: ManagerRelays.LinkID
        let role: NodeRole
        let outbox: ZoneOutbox
    }

    /// Work that waits on someone else, done outside the actor's turn.
    enum Chore: Sendable {
        case requestServer
    }

    init(name: NodeName, configuration: ZoneConfiguration, supervisor: SupervisorLink, clock: MonotonicClockMs,
         metrics: ProcessMetrics = .off, tracing: ProcessTracing = .off, logger: Logger) {
        self.metrics = ManagerMetrics(metrics)
        self.tracing = tracing
        self.name = name
        self.configuration = configuration
        self.supervisor = supervisor
        self.clock = clock
        self.logger = logger
        // One chore of each kind waiting is enough: a second request for a server adds nothing.
        (choreStream, chores) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    var isLeading: Bool { placement != nil }

    /// What `parley ctl status` shows for a manager: whether it leads, and the term of the
    /// lease it leads (or last led) under.
    func statusLoad() -> JSONValue {
        .object(["leader": .bool(placement != nil), "term": .number(Double(term)), "failovers": .array(recentFailovers.map { failover in
            // The clock is monotonic: the page is told how long ago, not when.
            .object(["meeting": .string(failover.meeting.rawValue), "to": .string(failover.to.rawValue),
                     "agoMs": .number(Double(clock.nowMs() - failover.sinceMs)), "durationMs": .number(Double(failover.tookMs))])
        })])
    }

    // MARK: Election

    func lead(term: UInt64) {
        self.term = term
        let collabCount = configuration.processes.count { $0.role == .collab }
        placement = Placement(tuning: .init(
            heartbeatTimeoutMs: Int64(configuration.heartbeat.timeoutMs),
            connectionsPerServer: configuration.scaling.connectionsPerServer,
            maxServers: max(configuration.scaling.maxCollabServers, collabCount),
            connectionsPerCopy: configuration.scaling.edges ? configuration.scaling.connectionsPerCopy : nil))
        logger.notice("leading the zone", metadata: ["term": "\(term)"])
        metrics.led(term: term)
        supervisor.reportNow()
    }

    /// Stops leading: every question in flight is answered (see
    /// ``ManagerRelays/steppedDown(reason:)``), then every link closes once its answers are
    /// written; the processes find the next leader through the lease.
    func stepDown(reason: StepDownReason) {
        guard placement != nil else { return }
        logger.warning("stepping down", metadata: ["reason": "\(reason)", "waiting": "\(relays.waiting)"])
        placement = nil
        for span in promoting.values.compactMap(\.span) {
            span.setStatus(SpanStatus(code: .error, message: "the manager stepped down"))
            span.end()
        }
        promoting.removeAll()
        metrics.steppedDown()
        supervisor.reportNow()
        relay(relays.steppedDown(reason: reason))
        for open in openLinks.values { open.outbox.finish() }
        links.removeAll()
    }

    // MARK: Links

    /// Serves one agent's link until it closes. Refused while this manager does not lead.
    func serve(_ link: ZoneLink) async {
        guard placement != nil else {
            logger.debug("link refused: not leading", metadata: ["peer": "\(link.peer)"])
            return
        }
        let outbox = ZoneOutbox()
        nextLinkID += 1
        let id = ManagerRelays.LinkID(nextLinkID)
        openLinks[id] = (link.peer, outbox)
        // The link ends when its outbox is done: finished (by a step-down, a newer link of
        // the same peer, or the reader below) and written out, or cut. Answers queued before
        // the end (a step-down's) are written first.
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    for try await message in link.messages() {
                        guard await self.received(message, from: link.peer, linkID: id) else { break }
                    }
                } catch {}
                outbox.finish()
            }
            await outbox.write { try await link.send($0) }
            group.cancelAll()
        }
        openLinks[id] = nil
        relay(relays.linkClosed(id))
        // Only the peer's current link counts: a replaced one has been dealt with already.
        if links[link.peer]?.id == id { closed(link.peer, reason: outbox.isCut ? "link cut: its outbox was full" : "link closed") }
    }

    /// False ends the link.
    private func received(_ message: ZoneMessage, from peer: NodeName, linkID: ManagerRelays.LinkID) -> Bool {
        guard placement != nil, let outbox = openLinks[linkID]?.outbox else { return false }
        let now = clock.nowMs()
        if case .register(let name, let role, let address, let holding) = message {
            guard name == peer else {
                logger.warning("link refused: registered under another name", metadata: ["peer": "\(peer)", "name": "\(name)"])
                return false
            }
            if let old = links[peer] {
                old.outbox.finish()
                if old.role == .collab { perform(placement!.lost(peer, reason: .registeredAgain, nowMs: now)) }
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
                deliver(.drained(server: server, ok: false, detail: "\(server) is not a collab server this manager knows"), on: outbox, to: peer)
                return true
            }
            logger.notice("drain requested", metadata: ["server": "\(server)", "meetings": "\(known.load.meetings)"])
            relays.drainAsked(server, by: linkID)
            perform(placement!.drain(server, nowMs: now))
            return true
        }
        guard let link = links[peer], link.id == linkID else { return false }  // must register first
        switch message {
        case .load(let load):
            perform(placement!.heard(peer, load: load, nowMs: now))
        case .hosting(let meeting, let epoch):
            logger.info("hosting confirmed", metadata: ["meeting": "\(meeting)", "on": "\(peer)", "epoch": "\(epoch)"])
            if let promotion = promoting.removeValue(forKey: meeting) {
                let tookMs = clock.nowMs() - promotion.sinceMs
                metrics.promotionDuration.record(duration: .milliseconds(tookMs))
                recentFailovers.append((meeting, peer, promotion.sinceMs, tookMs))
                if recentFailovers.count > Self.recentFailoversKept { recentFailovers.removeFirst() }
                if let span = promotion.span {
                    span.attributes["parley.hosted_by"] = peer.rawValue
                    span.addEvent(SpanEvent(name: "hosting confirmed", attributes: ["parley.epoch": .int(Int64(epoch.rawValue))]))
                    span.end()
                }
            }
            perform(placement!.hosting(meeting, on: peer, epoch: epoch))
        case .failedToHost(let meeting, let reason):
            logger.warning("could not host", metadata: ["meeting": "\(meeting)", "on": "\(peer)", "reason": "\(reason)"])
            // The failover's span, if the promotion was to this server, ends here (a new promotion
            // starts its own); the promotion's duration runs on until the meeting is hosted.
            if let promotion = promoting[meeting], promotion.to == peer, let span = promotion.span {
                promoting[meeting]?.span = nil
                span.setStatus(SpanStatus(code: .error, message: "\(peer) could not host it: \(reason)"))
                span.end()
            }
            perform(placement!.failedToHost(meeting, on: peer, nowMs: now))
        case .locate(let request, let meeting):
            let key = relays.locateAsked(by: linkID, request: request)
            // In a cluster, participants go to servers on the machine of the front they asked
            // first, when edges let them (region affinity).
            perform(placement!.locate(meeting, request: key, near: configuration.machine(of: peer), nowMs: now))
        case .hostOutvoted(let meeting, let seq, let hostDigest, let copyDigest):
            logger.error("a copy outvoted the meeting's host: its state disagreed at a checkpoint; promoting the standby", metadata: [
                "meeting": "\(meeting)", "seq": "\(seq)", "reported_by": "\(peer)",
                "host_digest": "\(hostDigest)", "copy_digest": "\(copyDigest)",
            ])
            perform(placement!.hostOutvoted(meeting, nowMs: now))
        case .edgeDropped(let meeting):
            logger.info("edge copy dropped, unused", metadata: ["meeting": "\(meeting)", "on": "\(peer)"])
            placement!.edgeDropped(meeting, on: peer)
        case .findHost(let request, let meeting):
            let key = relays.locateAsked(by: linkID, request: request)
            perform(placement!.locate(meeting, request: key, forClient: false, nowMs: now))
        case .attendance:
            // The log service stores it; the license service counts who is present by it.
            let receivers = Set([serviceNode(.log), serviceNode(.license)].compactMap { $0 })
            if serviceNode(.log) == nil {
                logger.warning("no log service is registered; attendance record not stored", metadata: ["record": "\(message)"])
            }
            for receiver in receivers { send(message, to: receiver) }
        case .admit(let request, let meeting, let participant):
            let license = serviceNode(.license).flatMap { links[$0]?.id }
            relay(relays.admitAsked(by: linkID, request: request, meeting: meeting, participant: participant, licenseService: license))
        case .admitted(let request, let ok, let reason):
            relay(relays.admitted(request, ok: ok, reason: reason))
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
        if link.role == .collab, placement != nil { perform(placement!.lost(peer, reason: .linkClosed(reason), nowMs: clock.nowMs())) }
    }

    func tick() {
        guard placement != nil else { return }
        perform(placement!.tick(nowMs: clock.nowMs()))
    }

    /// The `parley.failover` span of a promotion just ordered, when tracing is on: started at
    /// the loss being handled (its detection), if the promotion comes of one.
    private func startFailoverSpan(_ meeting: MeetingID, to server: NodeName) -> (any Span)? {
        guard tracing.isOn else { return nil }
        let nowMs = clock.nowMs()
        let lostAgoMs = lossBeingHandled.map { max(0, nowMs - $0.atMs) } ?? 0
        // The manager's clock is monotonic; a span's instants are wall-clock nanoseconds.
        let started = DefaultTracerClock.now.nanosecondsSinceEpoch - UInt64(lostAgoMs) * 1_000_000
        let span = tracing.tracer.startSpan("parley.failover", ofKind: .producer, at: TraceInstant(nanosecondsSinceEpoch: started))
        span.attributes["parley.meeting"] = meeting.rawValue
        span.attributes["parley.to"] = server.rawValue
        if let loss = lossBeingHandled {
            span.attributes["parley.from"] = loss.server.rawValue
            span.addEvent(SpanEvent(name: "server lost", at: TraceInstant(nanosecondsSinceEpoch: started),
                                    attributes: ["parley.reason": .string(loss.reason)]))
        }
        span.addEvent("promote ordered")
        return span
    }

    // MARK: Actions

    private func perform(_ actions: [Placement.Action]) {
        defer { lossBeingHandled = nil }
        for action in actions {
            switch action {
            case .open(let meeting, let server, let standby):
                logger.info("open", metadata: ["meeting": "\(meeting)", "on": "\(server)", "standby": "\(standby.map(\.rawValue) ?? "-")"])
                send(.open(meeting: meeting, standby: standby, term: term), to: server)
                metrics.placements.increment()
            case .promote(let meeting, let server, let standby):
                logger.notice("promote standby", metadata: ["meeting": "\(meeting)", "on": "\(server)"])
                metrics.failovers.increment()
                // A promotion ordered again replaces the one in flight, and its span.
                promoting[meeting]?.span?.end()
                let span = startFailoverSpan(meeting, to: server)
                promoting[meeting] = Promotion(sinceMs: clock.nowMs(), to: server, span: span)
                send(.promote(meeting: meeting, standby: standby, term: term, trace: span.flatMap { tracing.tracer.fields(of: $0) }),
                     to: server)
            case .follow(let meeting, let server, let host):
                guard let address = placement?.servers[host]?.address else { continue }
                send(.follow(meeting: meeting, host: host, hostAddress: address, term: term), to: server)
            case .release(let meeting, let server):
                send(.release(meeting: meeting, term: term), to: server)
            case .answer(let request, let answer):
                relay(relays.located(request, answer))
            case .requestServer:
                requestServer()
            case .disconnect(let server, let reason):
                logger.warning("server lost; its meetings move", metadata: ["server": "\(server)", "reason": "\(reason)"])
                lossBeingHandled = (server, "\(reason)", clock.nowMs())
                links.removeValue(forKey: server)?.outbox.finish()
            case .drained(let server):
                logger.notice("drained", metadata: ["server": "\(server)"])
                relay(relays.drained(server))
            }
        }
    }

    /// Sends the relays' answers, each on the link its question came in on.
    private func relay(_ actions: [ManagerRelays.Action]) {
        for action in actions {
            switch action {
            case .send(let message, let link):
                guard let open = openLinks[link] else { continue }  // closed since; nobody to tell
                deliver(message, on: open.outbox, to: open.peer)
            case .admitUnlicensed(let request, let link, let reason):
                // Meetings must not stop because the license service is away: admit, loudly.
                logger.warning("admitting a join without the license service", metadata: ["reason": "\(reason)"])
                guard let open = openLinks[link] else { continue }
                deliver(.admitted(request: request, ok: true, reason: reason), on: open.outbox, to: open.peer)
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
        deliver(message, on: link.outbox, to: peer)
    }

    /// Queues `message` on a link. A full outbox cuts the link (see ``ZoneOutbox``): its
    /// serve loop then ends and cleans up as for any closed link.
    private func deliver(_ message: ZoneMessage, on outbox: ZoneOutbox, to peer: NodeName) {
        if outbox.send(message) == .full {
            logger.error("zone link cut: \(ZoneOutbox.capacity) messages were waiting unwritten, so the peer is not reading; it reconnects and registers again", metadata: [
                "peer": "\(peer)",
            ])
        }
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
        let store = try await location.open(dataDirectory: context.paths.data, synchronous: .normal, logger: logger,
                                            metrics: context.metrics)
        let credentials = try ZoneCredentials.load(paths: context.paths, configuration: configuration)
        // One monotonic clock for every duration this manager measures (see MonotonicClockMs).
        let clock = MonotonicClockMs()
        let manager = ZoneManager(name: context.name, configuration: configuration, supervisor: context.link, clock: clock,
                                  metrics: context.metrics, tracing: context.tracing, logger: logger)
        await context.link.reportLoad { await manager.statusLoad() }
        // A manager that cannot reach the store can neither lead nor take the lease over.
        let probe = StoreProbe(store: store)
        context.readiness.set { await probe.problem().map { [$0] } ?? [] }
        let port = PortAnnouncement()
        let bind = try ListenPorts.pick(configuration.ports, host: configuration.host, process: context.name)
        let app = ZoneListener.application(host: configuration.host, bind: bind, credentials: credentials, serverName: "parley-manager",
                                           port: port, logger: logger) { link in await manager.serve(link) }

        try await withThrowingTaskGroup(of: Void.self) { group in
            if let pools = store as? PostgresStore { group.addTask { await pools.run() } }
            group.addTask { try await app.run() }
            group.addTask {
                let address = "\(credentials.scheme)://\(configuration.host):\(try await port.value())"
                await Self.elect(manager: manager, store: store, me: context.name, address: address, clock: clock, logger: logger)
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
                await manager.stepDown(reason: .zoneLinkServerFailed("\(error)"))
                await manager.finishChores()
                throw error
            }
            await manager.stepDown(reason: .shuttingDown)
            await manager.finishChores()
        }
    }

    /// The election loop: the pure rules, the lease in the store, and this process's
    /// monotonic clock. No time of ours reaches the store: it times the lease on its own
    /// clock and answers how long it still runs (see docs/zone.md, "Whose clock"), so the
    /// election only measures durations here, and a wall-clock step backwards cannot make a
    /// leader trust its lease for longer than the store holds it.
    private static func elect(manager: ZoneManager, store: any Store, me: NodeName, address: String, clock: MonotonicClockMs,
                              logger: Logger) async {
        var election = ManagerElection(me: me, address: address)
        var actions = election.tick(nowMs: clock.nowMs())
        while !Task.isCancelled {
            while !actions.isEmpty {
                let action = actions.removeFirst()
                switch action {
                case .read:
                    do {
                        let stored = try await leaseCall(election, manager, clock) { try await store.lease(ZoneAgent.managerLease) }
                        let now = clock.nowMs()
                        actions += election.observed(stored.map { ManagerLease($0, readAtMs: now) }, nowMs: now)
                    } catch {
                        logger.warning("cannot read the manager lease", metadata: ["error": "\(error)"])
                        actions += election.claimed(nil, nowMs: clock.nowMs())
                    }
                case .claim(let expected, let new):
                    do {
                        // The store times the lease on its own clock; ours only measures how
                        // long we may trust it (see ManagerElection).
                        let claim = LeaseClaim(holder: new.holder.rawValue, address: new.address, term: new.term,
                                               durationMs: election.timing.leaseMs)
                        let version = expected.map { LeaseVersion(holder: $0.holder.rawValue, term: $0.term) }
                        let won = try await leaseCall(election, manager, clock) {
                            try await store.replaceLease(ZoneAgent.managerLease, expected: version, with: claim)
                        }
                        actions += election.claimed(won ? new : nil, nowMs: clock.nowMs())
                    } catch {
                        logger.warning("cannot write the manager lease", metadata: ["error": "\(error)"])
                        actions += election.claimed(nil, nowMs: clock.nowMs())
                    }
                case .lead(let term):
                    await manager.lead(term: term)
                case .stepDown(let reason):
                    await manager.stepDown(reason: reason)
                }
            }
            try? await Task.sleep(for: .milliseconds(25))
            actions = election.tick(nowMs: clock.nowMs())
        }
        await manager.stepDown(reason: .shuttingDown)
    }
}

/// Runs one of the election's store calls. A leader's certainty runs out at a fixed time
/// whether or not the store answers: if the call is still out then (a database that hangs,
/// a machine cut off from it), the manager stops leading at that moment, not when the call
/// finally fails. The election learns the outcome when the call returns.
private func leaseCall<T: Sendable>(_ election: ManagerElection, _ manager: ZoneManager, _ clock: MonotonicClockMs,
                                    _ call: @escaping @Sendable () async throws -> T) async throws -> T {
    guard case .leader(_, let validUntilMs) = election.role else { return try await call() }
    return try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await call() }
        group.addTask {
            try await Task.sleep(for: .milliseconds(max(0, validUntilMs - clock.nowMs())))
            await manager.stepDown(reason: .storeSilent)
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
    /// A lease read from the store, its expiry moved onto this process's monotonic clock:
    /// `readAtMs` plus what the store said remained.
    init(_ stored: StoredLease, readAtMs: Int64) {
        self.init(holder: NodeName(stored.holder), address: stored.address, term: stored.term,
                  expiresAtMs: readAtMs + stored.remainingMs)
    }
}

/// Milliseconds on this process's monotonic clock, counted from when it was made: what the
/// manager measures every duration with (heartbeat silence, moves not confirmed, locates
/// unanswered, how long its lease can be trusted). A wall-clock step (NTP, an operator)
/// must neither fail servers over nor stall moves. Its readings mean nothing outside this
/// process, so none is ever sent, stored, or compared with a wall-clock time.
struct MonotonicClockMs: Sendable {
    private let start = ContinuousClock.now

    func nowMs() -> Int64 {
        let elapsed = (ContinuousClock.now - start).components
        return elapsed.seconds * 1_000 + elapsed.attoseconds / 1_000_000_000_000_000
    }
}

/// What a manager records (docs/operations.md, "Metrics").
struct ManagerMetrics: Sendable {
    let placements: CoreMetrics.Counter
    let failovers: CoreMetrics.Counter
    let promotionDuration: CoreMetrics.Timer
    private let acquired: CoreMetrics.Counter
    private let lost: CoreMetrics.Counter
    private let term: CoreMetrics.Meter
    private let leading: CoreMetrics.Meter

    init(_ metrics: ProcessMetrics) {
        placements = metrics.counter(.placements)
        failovers = metrics.counter(.failovers)
        promotionDuration = metrics.timer(.promotionDuration)
        acquired = metrics.counter(.leaseChanges, [("change", "acquired")])
        lost = metrics.counter(.leaseChanges, [("change", "lost")])
        term = metrics.gauge(.managerTerm)
        leading = metrics.gauge(.managerLeading)
        leading.set(0)
    }

    func led(term: UInt64) {
        acquired.increment()
        self.term.set(Int64(term))
        leading.set(1)
    }

    func steppedDown() {
        lost.increment()
        leading.set(0)
    }
}

/// A wall-clock instant for a span that started before it was created.
struct TraceInstant: TracerInstant {
    var nanosecondsSinceEpoch: UInt64
    static func < (lhs: Self, rhs: Self) -> Bool { lhs.nanosecondsSinceEpoch < rhs.nanosecondsSinceEpoch }
}
