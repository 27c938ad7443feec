import FoundationEssentials
import HTTPTypes
import Logging
import ParleyCore
import ParleyProtocol
import ParleyServer
import ParleyZone
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A collaboration server: a ``ParleyServer`` that hosts the meetings the manager places
/// here, keeps standby copies of meetings hosted elsewhere, and streams its own meetings'
/// committed entries to their standbys.
struct CollabService: Service {
    let context: NodeContext
    /// How long a join waits for the license service before it is admitted anyway.
    static let admissionTimeout: Duration = .milliseconds(500)

    func run() async throws {
        let credentials = try ZoneCredentials.load(paths: context.paths, configuration: context.configuration)
        let context = context
        let agentSlot = Mutex<ZoneAgent?>(nil)
        let attendance = AttendanceFeed()
        let hooks = ZoneHooks(services: { handle in
            let node = CollabNode(context: context, handle: handle, credentials: credentials, attendance: attendance) { agent in
                agentSlot.withLock { $0 = agent }
            }
            return [node]
        })
        let clientPort = try ListenPorts.pick(context.configuration.ports, host: context.configuration.host, process: context.name)
        var configuration = try ServerConfiguration(zone: context.configuration, paths: context.paths, port: clientPort)
        configuration.poison = PoisonGuard(directory: context.paths.applyingDirectory, process: context.name.rawValue,
                                           afterCrashes: context.configuration.poisonAfterCrashes)
        if let trigger = context.configuration.testFaults?.crashOnChatText {
            context.logger.critical("TEST FAULT INJECTION IS ON: a chat whose text is exactly this crashes this process",
                                    metadata: ["crashOnChatText": "\(trigger)"])
            configuration.crashOnChatText = trigger
        }
        let logger = context.logger
        configuration.admission = { meeting, participant in
            guard let agent = agentSlot.withLock({ $0 }) else { return .admit }
            // Leaves committed here before this join reach the license service first.
            await attendance.handedOver(before: CollabService.admissionTimeout)
            do {
                let reply = try await agent.admit(meeting, participant, timeout: CollabService.admissionTimeout)
                return reply.ok ? .admit : .refuse(reply.reason)
            } catch {
                // A meeting must not stop because the license service is away: admit, loudly.
                logger.warning("license service did not answer; admitting", metadata: ["participant": "\(participant)", "error": "\(error)"])
                return .admit
            }
        }
        configuration.attendance = { record in
            var record = record
            record.server = context.name.rawValue
            if !attendance.committed(record) {
                logger.warning("attendance feed full; record dropped", metadata: ["record": "\(record)"])
            }
        }
        try await ParleyServer(configuration: configuration, mode: .zoneHost(hooks), logger: context.logger).run()
    }
}

/// The collab server's zone side: its agent, the manager's orders, and the followers that
/// keep standby copies current.
actor CollabNode: Service, ZoneAgentDelegate {
    private let context: NodeContext
    private let handle: ServerHandle
    private let credentials: ZoneCredentials
    nonisolated let directory: MeetingDirectory
    private var agent: ZoneAgent?
    private let orders = OrderQueue()
    /// The follower of each standby copy, by generation: a newer follow order replaces it.
    private var following: [MeetingID: UInt64] = [:]
    private var generation: UInt64 = 0
    private var cpu = CPUMeter()
    private let attendance: AttendanceFeed
    private let announce: @Sendable (ZoneAgent) -> Void

    init(context: NodeContext, handle: ServerHandle, credentials: ZoneCredentials, attendance: AttendanceFeed,
         announce: @escaping @Sendable (ZoneAgent) -> Void) {
        self.context = context
        self.handle = handle
        self.credentials = credentials
        self.attendance = attendance
        self.announce = announce
        directory = handle.directory!
    }

    func run() async throws {
        let host = context.configuration.host
        let clientBase = "\(context.configuration.clientScheme)://\(host):\(try await handle.boundPort())"
        // Standbys subscribe on a port of their own, apart from clients (in a cluster, over
        // the cluster's TLS).
        let zonePort = PortAnnouncement()
        let (directory, logger, scheme) = (directory, context.logger, credentials.scheme)
        // Taken after the client port is bound, so the two never coincide.
        let bind = try ListenPorts.pick(context.configuration.ports, host: host, process: NodeName(context.name.rawValue + "/zone"))
        let zoneLinks = ZoneListener.application(host: host, bind: bind, credentials: credentials, serverName: "parley-collab",
                                                 port: zonePort, logger: logger) { link in
            await CollabNode.serveStandby(link, directory: directory, logger: logger)
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            // A listener that fails ends the process (the supervisor starts another): a host
            // its standbys cannot reach would have no failover.
            group.addTask { try await zoneLinks.run() }
            group.addTask {
                let zoneBase = "\(scheme)://\(host):\(try await zonePort.value())"
                await self.serve(as: ServerAddress(client: clientBase, zone: zoneBase, machine: self.context.configuration.machine))
            }
            try await group.next()
            group.cancelAll()
        }
    }

    /// The agent and the manager's orders, until shutdown.
    private func serve(as address: ServerAddress) async {
        let agent = ZoneAgent(name: context.name, role: .collab, address: address,
                              store: handle.store, credentials: credentials, heartbeatMs: context.configuration.heartbeat.intervalMs,
                              supervisor: context.link, delegate: self, logger: context.logger)
        self.agent = agent
        announce(agent)
        await context.link.reportLoad { [weak self] in await self?.statusLoad() }
        let attendance = attendance
        await withDiscardingTaskGroup { group in
            group.addTask { try? await agent.run() }
            group.addTask { [directory] in
                // A host that stopped by itself (a commit failed, or it was fenced): the manager
                // opens the meeting again, elsewhere if it can. A fenced host's report is
                // ignored there, since the meeting is already placed on the server that fenced it.
                for await meeting in directory.stoppedByThemselves.cancelOnGracefulShutdown() {
                    await agent.send(.failedToHost(meeting: meeting, reason: "its host stopped by itself (a commit failed or was fenced)"))
                }
            }
            group.addTask {
                // Joins and leaves go to the log service as they are committed.
                for await record in attendance.records.cancelOnGracefulShutdown() {
                    await agent.send(.attendance(record))
                    attendance.handedOver()
                }
            }
            for await order in orders.stream.cancelOnGracefulShutdown() where orders.isCurrent(order) {
                if let work = await self.carryOut(order.message) {
                    group.addTask { await work() }
                }
            }
            await directory.endReplicaFeeds()
            group.cancelAll()
        }
    }

    // MARK: ZoneAgentDelegate

    /// Asked as the agent registers with a manager, on every new link: orders that arrive
    /// from now on are carried out again, even after the order queue overflowed.
    nonisolated func holding() async -> [HeldMeeting] {
        orders.registering()
        return await directory.held().map { HeldMeeting(meeting: $0.meeting, role: $0.hosting ? .host : .standby, epoch: $0.epoch) }
    }

    func load() async -> ServerLoad {
        let (meetings, depth) = await directory.load()
        return ServerLoad(connections: handle.connectionCount, meetings: meetings, queueDepth: depth,
                          cpuPercent: cpu.sample(nowMs: wallClockMs()))
    }

    nonisolated func received(_ message: ZoneMessage) async {
        guard orders.add(message) == .overflowed else { return }
        await dropManagerLink(because: "\(OrderQueue.capacity) orders from the manager were waiting to be carried out; the queued ones are discarded")
    }

    private func dropManagerLink(because reason: String) async {
        await agent?.dropManagerLink(because: reason)
    }

    /// What `parley ctl status` shows for this process.
    private func statusLoad() async -> JSONValue? {
        let load = await load()
        let held = await directory.held()
        return .object([
            "connections": .number(Double(load.connections)),
            "meetings": .number(Double(load.meetings)),
            "queueDepth": .number(Double(load.queueDepth)),
            "cpuPercent": .number(load.cpuPercent.rounded()),
            "hosting": .array(held.filter(\.hosting).map { .string($0.meeting.rawValue) }.sorted { "\($0)" < "\($1)" }),
            "standby": .array(held.filter { !$0.hosting }.map { .string($0.meeting.rawValue) }.sorted { "\($0)" < "\($1)" }),
        ])
    }

    // MARK: Orders

    /// Carries out one order, or returns the work to run for it: taking meetings over runs
    /// concurrently (after a server dies, all its meetings move at once), and a follower
    /// runs for as long as the order stands.
    private func carryOut(_ order: ZoneMessage) async -> (@Sendable () async -> Void)? {
        switch order {
        case .open(let meeting, _, _), .promote(let meeting, _, _):
            let promoting = if case .promote = order { true } else { false }
            following[meeting] = nil
            return { await self.host(meeting, promoting: promoting) }
        case .follow(let meeting, let host, let address, _):
            generation += 1
            let mine = generation
            following[meeting] = mine
            return { await self.follow(meeting, host: host, at: address.zone, generation: mine) }
        case .release(let meeting, _):
            following[meeting] = nil
            await directory.release(meeting, reason: "the manager moved it")
            context.link.reportNow()
            return nil
        default:
            return nil
        }
    }

    /// Opens or promotes `meeting` here and tells the manager how that went. If the manager
    /// released it meanwhile, its answer to `hosting` is another release.
    private func host(_ meeting: MeetingID, promoting: Bool) async {
        do {
            let epoch = promoting ? try await directory.promote(meeting) : try await directory.open(meeting)
            // `ctl status` lists it from now on, not from the next heartbeat.
            context.link.reportNow()
            await agent?.send(.hosting(meeting: meeting, epoch: epoch))
        } catch {
            context.logger.error("cannot host", metadata: ["meeting": "\(meeting)", "error": "\(error)"])
            await agent?.send(.failedToHost(meeting: meeting, reason: error.message))
        }
    }

    /// Whether the follow order of `generation` still stands (not replaced, released or promoted).
    private func isCurrent(_ meeting: MeetingID, _ generation: UInt64) -> Bool {
        following[meeting] == generation
    }

    /// Keeps the standby copy of `meeting` current while the order stands, as `StandbyFollower`
    /// decides: load it from the store, subscribe to the host's committed stream after its last
    /// seq, apply what arrives, and subscribe again or reload when the stream ends.
    private func follow(_ meeting: MeetingID, host: NodeName, at url: String, generation: UInt64) async {
        let logger = context.logger
        var follower = StandbyFollower()
        var actions = follower.start()
        while !Task.isCancelled, isCurrent(meeting, generation), !actions.isEmpty {
            switch actions.removeFirst() {
            case .load:
                do {
                    actions += follower.loaded(through: try await directory.startStandby(meeting))
                } catch {
                    logger.debug("standby copy could not be loaded; retrying", metadata: ["meeting": "\(meeting)", "error": "\(error)"])
                    actions += follower.loadFailed()
                }
            case .subscribe(let after):
                do {
                    let directory = directory
                    let (reload, last) = try await Self.subscribe(meeting, after: after, host: host, at: url, me: context.name,
                                                                   credentials: credentials, directory: directory, logger: logger) {
                        await self.isCurrent(meeting, generation)
                    }
                    follower.applied(through: last)
                    actions += reload ? follower.reloadAsked() : follower.linkEnded()
                } catch {
                    logger.debug("standby link to host failed; retrying", metadata: ["meeting": "\(meeting)", "error": "\(error)"])
                    actions += follower.linkEnded()
                }
            case .closeLink:
                break  // `subscribe` has returned: its link is closed
            case .wait(let ms):
                try? await Task.sleep(for: .milliseconds(ms))
                actions += follower.retryDue(copyHeld: await directory.isFollowing(meeting))
            }
        }
    }

    /// One subscription over one link. Returns whether the copy must be reloaded from the
    /// store, and the last seq applied.
    private static func subscribe(_ meeting: MeetingID, after: Seq, host: NodeName, at url: String, me: NodeName,
                                  credentials: ZoneCredentials, directory: MeetingDirectory, logger: Logger,
                                  stillWanted: @escaping @Sendable () async -> Bool) async throws -> (Bool, Seq) {
        // (reload from the store?, last seq applied), written by the link body only.
        let outcome = Mutex((reload: false, last: after))
        try await ZoneLink.connect(to: url, as: me, peer: host, credentials: credentials, nowMs: wallClockMs(), logger: logger) { link in
            try await link.send(.subscribe(meeting: meeting, after: after))
            for try await message in link.messages() {
                guard await stillWanted() else { return }
                switch message {
                case .entries(let id, let entries) where id == meeting:
                    guard await directory.replicate(meeting, entries) else {
                        outcome.withLock { $0.reload = true }
                        return
                    }
                    if let last = entries.last?.seq { outcome.withLock { $0.last = last } }
                case .reload(let id) where id == meeting:
                    outcome.withLock { $0.reload = true }
                    return
                default:
                    continue
                }
            }
        }
        return outcome.withLock { ($0.reload, $0.last) }
    }

    /// The host side: a standby subscribed to one of the meetings hosted here.
    /// Entries per message to a standby: an entry holds at most one client frame (64 KiB by
    /// default), so a message stays near 2 MiB, well below `ZoneLink.maxMessageBytes`.
    static let entriesPerMessage = 32

    static func serveStandby(_ link: ZoneLink, directory: MeetingDirectory?, logger: Logger) async {
        guard let directory else { return }
        let (requests, request) = AsyncStream<(MeetingID, Seq)>.makeStream(bufferingPolicy: .bufferingOldest(1))
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                // Keep reading after the subscription too, or the WebSocket's pongs go unread and
                // an idle link is dropped; this also notices at once when the standby goes away.
                do {
                    for try await message in link.messages() {
                        if case .subscribe(let meeting, let after) = message { request.yield((meeting, after)) }
                    }
                } catch {}
                request.finish()
            }
            group.addTask {
                guard let (meeting, after) = await requests.first(where: { _ in true }),
                      let feed = await directory.subscribe(meeting, after: after) else { return }
                logger.info("standby subscribed", metadata: ["meeting": "\(meeting)", "standby": "\(link.peer)", "after": "\(after)"])
                do {
                    for await update in feed.updates {
                        switch update {
                        case .entries(let entries):
                            // A catch-up can be the whole resume window: cut it so that every
                            // message stays far below the link's frame limit.
                            for start in stride(from: 0, to: entries.count, by: Self.entriesPerMessage) {
                                let batch = Array(entries[start..<min(start + Self.entriesPerMessage, entries.count)])
                                try await link.send(.entries(meeting: meeting, batch))
                            }
                        case .reload: try await link.send(.reload(meeting: meeting))
                        }
                    }
                } catch {
                    logger.debug("standby link closed", metadata: ["standby": "\(link.peer)", "error": "\(error)"])
                }
            }
            await group.next()
            group.cancelAll()
        }
    }
}

/// The manager's orders waiting to be carried out here, in the order they came.
///
/// Bounded at ``capacity``. When it is full this server has stopped keeping up with its
/// manager, and dropping one order would leave the two disagreeing about where meetings
/// live (a lost `release` leaves two hosts; a lost `promote`, none). So the queue refuses
/// the rest instead: every order waiting is discarded, and so is every order until the
/// agent registers again (``registering()``), and the caller drops the link to the
/// manager. The agent then registers with what this server really holds, from which the
/// manager rebuilds its view and orders again.
final class OrderQueue: Sendable {
    /// As many as the manager's outbox to this server holds (``ZoneOutbox/capacity``), so
    /// whatever the manager can have queued for it, a failover's burst included, fits.
    static let capacity = ZoneOutbox.capacity

    struct Order: Sendable {
        let message: ZoneMessage
        /// Orders from before an overflow belong to an older batch and are skipped.
        fileprivate let batch: UInt64
    }

    enum Added: Equatable, Sendable {
        case queued
        /// The queue was full: it now discards what is queued and refuses orders until the
        /// agent registers again; the caller drops the link to the manager.
        case overflowed
        /// Refused: the queue overflowed and the agent has not registered again yet.
        case discarded
    }

    private struct State {
        var batch: UInt64 = 0
        var refusing = false
    }

    let stream: AsyncStream<Order>
    private let sink: AsyncStream<Order>.Continuation
    private let state = Mutex(State())

    init(capacity: Int = OrderQueue.capacity) {
        (stream, sink) = AsyncStream.makeStream(bufferingPolicy: .bufferingOldest(capacity))
    }

    func add(_ message: ZoneMessage) -> Added {
        state.withLock { state in
            guard !state.refusing else { return .discarded }
            switch sink.yield(Order(message: message, batch: state.batch)) {
            case .enqueued: return .queued
            case .dropped:
                state.batch += 1
                state.refusing = true
                return .overflowed
            case .terminated: return .discarded
            @unknown default: return .discarded
            }
        }
    }

    /// Whether `order` is still to be carried out (it came after the last overflow).
    func isCurrent(_ order: Order) -> Bool {
        state.withLock { order.batch == $0.batch }
    }

    /// The agent registers with a manager: orders on the new link are taken again.
    func registering() {
        state.withLock { $0.refusing = false }
    }
}

#if canImport(Glibc)
private let RUSAGE_SELF_WHO = __rusage_who_t(RUSAGE_SELF.rawValue)
#else
private let RUSAGE_SELF_WHO = RUSAGE_SELF
#endif

/// Process CPU use between two samples, in percent of one core.
struct CPUMeter {
    private var last: (ms: Int64, cpuMicros: Int64)?

    mutating func sample(nowMs: Int64) -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF_WHO, &usage)
        let micros = Int64(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1_000_000
            + Int64(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec)
        defer { last = (nowMs, micros) }
        guard let last, nowMs > last.ms else { return 0 }
        return Double(micros - last.cpuMicros) / 10 / Double(nowMs - last.ms)
    }
}
