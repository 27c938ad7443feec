import FoundationEssentials
import HTTPTypes
import Logging
import Tracing
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
        let serverMetrics = ServerMetrics(context.metrics)
        let hooks = ZoneHooks(services: { handle in
            context.beforeScrape.set { await handle.sampleMetrics(serverMetrics) }
            context.readyWith(store: handle.store) { agentSlot.withLock { $0 } }
            let node = CollabNode(context: context, handle: handle, credentials: credentials, attendance: attendance) { agent in
                agentSlot.withLock { $0 = agent }
            }
            return [node]
        })
        let clientPort = try ListenPorts.pick(context.configuration.ports, host: context.configuration.host, process: context.name)
        var configuration = try ServerConfiguration(zone: context.configuration, paths: context.paths, port: clientPort)
        configuration.metrics = serverMetrics
        configuration.tracing = context.tracing
        // `/ready` on the client port: the store (checked there), and a manager link.
        configuration.readiness = {
            await agentSlot.withLock({ $0 })?.isRegistered == true ? [] : ["not registered with a manager: no zone link"]
        }
        configuration.poison = PoisonGuard(directory: context.paths.applyingDirectory, process: context.name.rawValue,
                                           afterCrashes: context.configuration.poisonAfterCrashes)
        if let trigger = context.configuration.testFaults?.crashOnChatText {
            context.logger.critical("TEST FAULT INJECTION IS ON: a chat whose text is exactly this crashes this process",
                                    metadata: ["crash_on_chat_text": "\(trigger)"])
            configuration.crashOnChatText = trigger
        }
        if context.configuration.testFaults?.corruptByChat == true {
            let text = "corrupt \(context.name)"
            context.logger.critical("TEST FAULT INJECTION IS ON: a chat whose text is exactly this is kept in this server's state under another text",
                                    metadata: ["corrupt_chat_text": "\(text)"])
            configuration.corruptChatText = text
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
    /// Where clients reach this server (`ctl status` shows it).
    private var clientURL = ""
    private let orders = OrderQueue()
    /// The follower of each standby copy, by generation: a newer follow order replaces it.
    private var following: [MeetingID: UInt64] = [:]
    private var generation: UInt64 = 0
    private var cpu = CPUMeter()
    private let attendance: AttendanceFeed
    private let announce: @Sendable (ZoneAgent) -> Void
    /// Followers of edge copies, started as clients arrive: run beside the orders' work.
    private let edgeStarts: AsyncStream<@Sendable () async -> Void>.Continuation
    /// One replication link to each host this server follows meetings of.
    private let copyLinks: CopyLinks
    private let edgeWork: AsyncStream<@Sendable () async -> Void>

    init(context: NodeContext, handle: ServerHandle, credentials: ZoneCredentials, attendance: AttendanceFeed,
         announce: @escaping @Sendable (ZoneAgent) -> Void) {
        self.context = context
        self.handle = handle
        self.credentials = credentials
        self.attendance = attendance
        self.announce = announce
        directory = handle.directory!
        (edgeWork, edgeStarts) = AsyncStream.makeStream()
        copyLinks = CopyLinks(me: context.name, credentials: credentials, logger: context.logger)
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
            await CollabNode.serveCopies(link, directory: directory, logger: logger)
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
        clientURL = address.client
        let agent = ZoneAgent(name: context.name, role: .collab, address: address,
                              store: handle.store, credentials: credentials, heartbeatMs: context.configuration.heartbeat.intervalMs,
                              supervisor: context.link, delegate: self, logger: context.logger)
        self.agent = agent
        announce(agent)
        if context.configuration.scaling.edges {
            await directory.serveEdges { [weak self] meeting, seq in await self?.startEdge(meeting, holding: seq) }
        }
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
            group.addTask { [copyLinks] in await copyLinks.run() }
            group.addTask { [edgeWork] in
                await withDiscardingTaskGroup { followers in
                    for await follower in edgeWork { followers.addTask { await follower() } }
                }
            }
            if context.configuration.scaling.edges {
                let unusedMs = Int64(context.configuration.scaling.edgeUnusedSeconds) * 1_000
                group.addTask { [directory] in
                    // Looked at four times a period: a copy goes within 1.25 periods of its
                    // last participant.
                    while (try? await Task.sleep(for: .milliseconds(max(250, unusedMs / 4)))) != nil {
                        await directory.dropUnusedEdges(unusedForMs: unusedMs)
                    }
                }
                group.addTask { [directory] in
                    for await meeting in directory.edgesDropped.cancelOnGracefulShutdown() {
                        await agent.send(.edgeDropped(meeting: meeting))
                    }
                }
            }
            group.addTask { [directory] in
                // A copy here found the host's state wrong: the manager demotes the host.
                for await vote in directory.hostsOutvoted.cancelOnGracefulShutdown() {
                    await agent.send(.hostOutvoted(meeting: vote.meeting, seq: vote.seq, hostDigest: vote.host.hex, copyDigest: vote.copy.hex))
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
            edgeStarts.finish()
            await copyLinks.finish()
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

    /// Meetings whose participants and seq the status report carries (`activity`).
    static let activityReported = 500

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
            // Copies serving participants here of meetings hosted elsewhere.
            "edges": .array(await directory.edges().map { .string($0.rawValue) }),
            // Every copy kept here, used or not (an unused edge copy is dropped after
            // `scaling.edgeUnusedSeconds`).
            "copies": .array(await directory.copiesKept().map { .string($0.rawValue) }),
            // Per meeting hosted here: participants connected anywhere, and its last seq (the
            // zone page turns two of these into an op rate).
            // The busiest only, so that a server hosting thousands of meetings keeps its report
            // (one line of the supervisor's status reply) small.
            "activity": .object(Dictionary(uniqueKeysWithValues: await directory.hostedActivity()
                .sorted { $0.participants > $1.participants }.prefix(Self.activityReported).map { activity in
                    (activity.meeting.rawValue, JSONValue.object(["participants": .number(Double(activity.participants)),
                                                                  "seq": .number(Double(activity.seq))]))
                })),
            // When those were read: the zone page measures op rates between two reports.
            "activityAtMs": .number(Double(wallClockMs())),
            "client": .string(clientURL),
        ])
    }

    // MARK: Orders

    /// Carries out one order, or returns the work to run for it: taking meetings over runs
    /// concurrently (after a server dies, all its meetings move at once), and a follower
    /// runs for as long as the order stands.
    private func carryOut(_ order: ZoneMessage) async -> (@Sendable () async -> Void)? {
        switch order {
        case .open(let meeting, _, _):
            following[meeting] = nil
            return { await self.host(meeting, promoting: false, trace: nil) }
        case .promote(let meeting, _, _, let trace):
            following[meeting] = nil
            return { await self.host(meeting, promoting: true, trace: trace) }
        case .follow(let meeting, let host, let address, _):
            let mine = nextFollower(of: meeting)
            return { await self.follow(meeting, from: .ordered(host, url: address.zone), standby: true, holding: nil, generation: mine) }
        case .release(let meeting, _):
            following[meeting] = nil
            let keptForClients = await directory.release(meeting, reason: "the manager moved it")
            context.link.reportNow()
            // Its participants stay: the copy follows whoever hosts the meeting now, as an edge.
            return keptForClients ? await edgeFollower(meeting, holding: nil) : nil
        default:
            return nil
        }
    }

    /// A new follower of `meeting`'s copy here; the one before it (if any) stops.
    private func nextFollower(of meeting: MeetingID) -> UInt64 {
        generation += 1
        following[meeting] = generation
        return generation
    }

    /// The work of following `meeting`'s copy here as an edge: it finds the host through
    /// the manager, each time its link ends.
    private func edgeFollower(_ meeting: MeetingID, holding seq: Seq?) async -> @Sendable () async -> Void {
        let mine = nextFollower(of: meeting)
        let held = if let seq { seq } else { await directory.copyLastSeq(meeting) }
        return { await self.follow(meeting, from: .located, standby: false, holding: held, generation: mine) }
    }

    /// A copy opened here for participants of a meeting hosted elsewhere: follow it.
    func startEdge(_ meeting: MeetingID, holding seq: Seq) async {
        edgeStarts.yield(await edgeFollower(meeting, holding: seq))
    }

    /// Opens or promotes `meeting` here and tells the manager how that went. If the manager
    /// released it meanwhile, its answer to `hosting` is another release.
    /// `trace`: the manager's failover span, under which this server's `parley.promotion`
    /// span (from the order to the first ack) is recorded.
    private func host(_ meeting: MeetingID, promoting: Bool, trace: [String: String]?) async {
        let tracing = context.tracing
        var span: (any Span)?
        if promoting, tracing.isOn {
            let promotion = tracing.tracer.startSpan("parley.promotion", context: tracing.tracer.context(from: trace), ofKind: .consumer)
            promotion.attributes["parley.meeting"] = meeting.rawValue
            promotion.attributes["parley.server"] = context.name.rawValue
            span = promotion
        }
        do {
            let epoch = promoting ? try await directory.promote(meeting, span: span) : try await directory.open(meeting)
            span?.addEvent(SpanEvent(name: "hosting", attributes: ["parley.epoch": .int(Int64(epoch.rawValue))]))
            // `ctl status` lists it from now on, not from the next heartbeat.
            context.link.reportNow()
            await agent?.send(.hosting(meeting: meeting, epoch: epoch))
            // Participants attached to the copy here keep their connections: the copy goes on,
            // following the host here.
            if await directory.copyServesClients(meeting) { edgeStarts.yield(await edgeFollower(meeting, holding: nil)) }
        } catch {
            span?.setStatus(SpanStatus(code: .error, message: error.message))
            span?.end()
            context.logger.error("cannot host", metadata: ["meeting": "\(meeting)", "error": "\(error)"])
            await agent?.send(.failedToHost(meeting: meeting, reason: error.message))
        }
    }

    /// Whether the follower of `generation` still stands (not replaced, released or promoted).
    private func isCurrent(_ meeting: MeetingID, _ generation: UInt64) -> Bool {
        following[meeting] == generation
    }

    /// Where a copy here finds its host.
    private enum HostSource {
        /// The manager's follow order named it (a standby): followed until another order.
        case ordered(NodeName, url: String)
        /// Asked of the manager each time a link ends (an edge).
        case located
    }

    /// Where the host is for one subscription.
    private enum HostPlace {
        case here
        case remote(NodeName, url: String)
    }

    private func place(of meeting: MeetingID, from source: HostSource) async -> HostPlace? {
        if await directory.isHosting(meeting) { return .here }
        switch source {
        case .ordered(let host, let url):
            return .remote(host, url: url)
        case .located:
            guard let agent, case .at(let name, let address)? = try? await agent.findHost(meeting, timeout: .seconds(5)),
                  name != context.name else { return nil }
            return .remote(name, url: address.zone)
        }
    }

    /// Keeps the copy of `meeting` here current while this follower stands, as
    /// `StandbyFollower` decides: load it from the store, subscribe to the host's committed
    /// stream after its last seq, apply what arrives, and subscribe again or reload when the
    /// stream ends. An edge's follower stops when its copy is dropped.
    private func follow(_ meeting: MeetingID, from source: HostSource, standby: Bool, holding seq: Seq?, generation: UInt64) async {
        let logger = context.logger
        var follower = StandbyFollower()
        var actions = seq.map { follower.holding($0) } ?? follower.start()
        while !Task.isCancelled, isCurrent(meeting, generation), !actions.isEmpty {
            switch actions.removeFirst() {
            case .load:
                if !standby, !(await directory.isFollowing(meeting)) { return }
                do {
                    actions += follower.loaded(through: try await directory.startCopy(meeting, standby: standby))
                } catch {
                    logger.debug("copy could not be loaded; retrying", metadata: ["meeting": "\(meeting)", "error": "\(error)"])
                    actions += follower.loadFailed()
                }
            case .subscribe(let after):
                guard let place = await place(of: meeting, from: source) else {
                    actions += follower.linkEnded()
                    continue
                }
                let stillWanted: @Sendable () async -> Bool = { await self.isCurrent(meeting, generation) }
                let (reload, last) = switch place {
                case .here:
                    await Self.subscribeHere(meeting, after: after, directory: directory, stillWanted: stillWanted)
                case .remote(let host, let url):
                    await Self.subscribe(meeting, after: after, host: host, at: url, links: copyLinks, directory: directory,
                                         stillWanted: stillWanted)
                }
                follower.applied(through: last)
                actions += reload ? follower.reloadAsked() : follower.linkEnded()
            case .closeLink:
                break  // `subscribe` has returned: its link is closed
            case .wait(let ms):
                try? await Task.sleep(for: .milliseconds(ms))
                let held = await directory.isFollowing(meeting)
                if !standby, !held { return }
                actions += follower.retryDue(copyHeld: held)
            }
        }
    }

    /// What one subscription ended with: whether the copy must be reloaded from the store,
    /// and the last seq applied.
    private final class Outcome: Sendable {
        let state: Mutex<(reload: Bool, last: Seq)>
        init(after: Seq) { state = Mutex((false, after)) }
        var value: (Bool, Seq) { state.withLock { ($0.reload, $0.last) } }
        func reload() { state.withLock { $0.reload = true } }
        func applied(through seq: Seq) { state.withLock { $0.last = seq } }
    }

    /// Applies one update from the host to the copy here; false when the subscription must end.
    private static func take(_ update: ReplicaUpdate, _ meeting: MeetingID, directory: MeetingDirectory, outcome: Outcome) async -> Bool {
        switch update {
        case .entries(let entries):
            guard await directory.replicate(meeting, entries) else {
                outcome.reload()
                return false
            }
            if let last = entries.last?.seq { outcome.applied(through: last) }
        case .reload:
            outcome.reload()
            return false
        case .notice(let notice):
            await directory.copyNotice(meeting, notice)
        case .digest(let seq, let digest):
            guard await directory.copyDigest(meeting, digest, at: seq) else {
                outcome.reload()
                return false
            }
        }
        return true
    }

    /// One subscription to a host on another server, over the link to it that every copy
    /// here of that host's meetings shares (``CopyLinks``).
    private static func subscribe(_ meeting: MeetingID, after: Seq, host: NodeName, at url: String, links: CopyLinks,
                                  directory: MeetingDirectory, stillWanted: @escaping @Sendable () async -> Bool) async -> (Bool, Seq) {
        let outcome = Outcome(after: after)
        guard let (requests, number) = await directory.copyLinkStarted(meeting) else { return outcome.value }
        await links.follow(meeting, after: after, host: host, url: url, requests: requests) { update in
            guard await stillWanted() else { return false }
            return await take(update, meeting, directory: directory, outcome: outcome)
        }
        await directory.copyLinkEnded(meeting, link: number)
        return outcome.value
    }

    /// One subscription to the meeting hosted on this server: a copy here that had clients
    /// when this server took the meeting over keeps them, following the host in-process.
    private static func subscribeHere(_ meeting: MeetingID, after: Seq, directory: MeetingDirectory,
                                      stillWanted: @escaping @Sendable () async -> Bool) async -> (Bool, Seq) {
        let outcome = Outcome(after: after)
        guard let feed = await directory.subscribe(meeting, after: after) else { return outcome.value }
        let link = await directory.copyLinkStarted(meeting)
        if let (requests, _) = link {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await request in requests { await directory.copyRequest(meeting, over: feed, request) }
                }
                group.addTask {
                    for await update in feed.updates {
                        guard await stillWanted(), await take(update, meeting, directory: directory, outcome: outcome) else { return }
                    }
                }
                await group.next()
                group.cancelAll()
            }
        }
        feed.finish()
        await directory.copyGone(meeting, over: feed)
        if let (_, number) = link { await directory.copyLinkEnded(meeting, link: number) }
        return outcome.value
    }

    /// The host side of one link from a collaboration server that keeps copies (standbys,
    /// edges) of meetings hosted here: any number of subscriptions, one per meeting, each
    /// with its own flow-control window (``CopyLinks``), and the copies' requests.
    /// Entries per message to a copy: an entry holds at most one client frame (64 KiB by
    /// default), so a message stays near 2 MiB, well below `ZoneLink.maxMessageBytes`.
    static let entriesPerMessage = 32

    /// One subscription served on a link.
    private struct Served {
        var subscription: UInt64
        var feed: ReplicaFeed
        var credits: CopyCredits
    }

    static func serveCopies(_ link: ZoneLink, directory: MeetingDirectory?, logger: Logger) async {
        guard let directory else { return }
        let (outgoing, outbox) = AsyncStream<ZoneMessage>.makeStream()
        await withDiscardingTaskGroup { group in
            group.addTask {
                do {
                    for await message in outgoing { try await link.send(message) }
                } catch {
                    logger.debug("copy link closed", metadata: ["copy": "\(link.peer)", "error": "\(error)"])
                }
            }
            var served: [MeetingID: Served] = [:]
            // Keep reading: the copies' requests and credits come this way, the WebSocket's
            // pongs go unread otherwise, and this notices at once when the copy server goes.
            do {
                for try await message in link.messages() {
                    switch message {
                    case .subscribe(let meeting, let after, let subscription):
                        if let previous = served.removeValue(forKey: meeting) { end(previous) }
                        outbox.yield(.subscribed(meeting: meeting, subscription: subscription))
                        guard let feed = await directory.subscribe(meeting, after: after) else {
                            outbox.yield(.unsubscribe(meeting: meeting, subscription: subscription))
                            continue
                        }
                        let credits = CopyCredits(window: CopyLinks.window)
                        served[meeting] = Served(subscription: subscription, feed: feed, credits: credits)
                        logger.info("copy subscribed", metadata: ["meeting": "\(meeting)", "copy": "\(link.peer)", "after": "\(after)"])
                        group.addTask {
                            await pump(meeting, subscription, feed, credits, outbox: outbox)
                            await directory.copyGone(meeting, over: feed)
                        }
                    case .copyRequest(let meeting, let request):
                        guard let subscription = served[meeting] else { continue }
                        await directory.copyRequest(meeting, over: subscription.feed, request)
                    case .credit(let meeting, let count):
                        served[meeting]?.credits.grant(count)
                    case .unsubscribe(let meeting, let subscription):
                        if served[meeting]?.subscription == subscription, let ended = served.removeValue(forKey: meeting) { end(ended) }
                    default:
                        continue
                    }
                }
            } catch {}
            for subscription in served.values { end(subscription) }
            outbox.finish()
        }
    }

    /// Nothing more of it goes out: its pump stops and the copy is gone from the host.
    private static func end(_ served: Served) {
        served.credits.close()
        served.feed.finish()
    }

    /// One meeting's committed stream onto the link, within its window. When the feed ends
    /// by the host's doing (it stopped hosting, or cut off a copy that fell behind), the copy
    /// is told, and subscribes again.
    private static func pump(_ meeting: MeetingID, _ subscription: UInt64, _ feed: ReplicaFeed, _ credits: CopyCredits,
                             outbox: AsyncStream<ZoneMessage>.Continuation) async {
        for await update in feed.updates {
            var messages: [ZoneMessage] = []
            switch update {
            case .entries(let entries):
                // A catch-up can be the whole resume window: cut it so that every message
                // stays far below the link's frame limit.
                for start in stride(from: 0, to: entries.count, by: Self.entriesPerMessage) {
                    messages.append(.entries(meeting: meeting, Array(entries[start..<min(start + Self.entriesPerMessage, entries.count)])))
                }
            case .reload: messages = [.reload(meeting: meeting)]
            case .notice(let notice): messages = [.copyNotice(meeting: meeting, notice)]
            case .digest(let seq, let digest): messages = [.digest(meeting: meeting, seq: seq, digest: digest.hex)]
            }
            for message in messages {
                guard await credits.send(message, with: { outbox.yield($0) }) else { return }
            }
        }
        _ = await credits.send(.unsubscribe(meeting: meeting, subscription: subscription), with: { outbox.yield($0) })
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
