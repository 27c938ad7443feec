import FoundationEssentials
import Logging
import ParleyCore
import ParleyStore
import ParleyZone
import ServiceLifecycle

/// What a role does with the zone: what it reports, and how it follows the manager's orders.
public protocol ZoneAgentDelegate: Sendable {
    /// The meetings held here, reported on every (re-)registration.
    func holding() async -> [HeldMeeting]
    /// The load, sent with every heartbeat.
    func load() async -> ServerLoad
    /// An order from the current manager (already checked against the newest term seen).
    func received(_ message: ZoneMessage) async
}

/// The zone agent every process runs: it finds the primary manager through its lease in the
/// store (no address is configured), registers, sends heartbeats with its load, passes the
/// manager's orders to its role, and carries requests that wait for answers (the locator).
/// When the link drops it reads the lease again and re-registers with whatever it holds,
/// so a new manager rebuilds its view from the servers.
public actor ZoneAgent: Service {
    public nonisolated let name: NodeName
    public nonisolated let role: NodeRole
    private let address: ServerAddress?
    private let store: any Store
    private let credentials: ZoneCredentials
    private let heartbeatMs: Int
    private let delegate: any ZoneAgentDelegate
    private let logger: Logger
    /// What waits to be written to the manager; nil while no manager link is up.
    private var outbox: ZoneOutbox?
    private var locates = PendingReplies<LocateResult>()
    private var admits = PendingReplies<AdmitReply>()
    /// Which manager's orders are carried out (see `TermFence`).
    private var fence = TermFence()
    private let supervisor: SupervisorLink?
    /// The manager's `startCollab` orders; one waiting is enough.
    private let spawnRequests: AsyncStream<Void>
    private let spawnRequested: AsyncStream<Void>.Continuation

    public static let managerLease = "manager"

    /// - Parameter supervisor: this machine's supervisor, which starts a collab server here
    ///   when the manager asks (in a cluster); nil where nobody may ask.
    public init(name: NodeName, role: NodeRole, address: ServerAddress?, store: any Store, credentials: ZoneCredentials,
                heartbeatMs: Int, supervisor: SupervisorLink?, delegate: any ZoneAgentDelegate, logger: Logger) {
        self.supervisor = supervisor
        (spawnRequests, spawnRequested) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
        self.name = name
        self.role = role
        self.address = address
        self.store = store
        self.credentials = credentials
        self.heartbeatMs = heartbeatMs
        self.delegate = delegate
        self.logger = logger
        locates.close("not connected to a manager yet")
        admits.close("not connected to a manager yet")
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.startCollabs() }
                await self.connectLoop()
                group.cancelAll()
            }
        }
    }

    /// The manager chose this machine for a new collab server: this machine's supervisor
    /// starts it (the name and the limit are its own).
    private func startCollabs() async {
        for await _ in spawnRequests {
            guard let supervisor else { continue }
            do {
                let started = try await supervisor.requestSpawn(role: .collab)
                logger.notice("the manager asked for another collab server here; the supervisor started it", metadata: ["name": "\(started)"])
            } catch {
                logger.warning("the manager asked for another collab server here; the supervisor did not start it", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Sends to the manager; dropped (and logged at debug) when no manager is connected.
    /// A manager that does not read has the link cut (see ``ZoneOutbox``).
    public func send(_ message: ZoneMessage) {
        guard let outbox else {
            logger.debug("no manager link; message dropped", metadata: ["message": "\(message)"])
            return
        }
        Self.queue(message, on: outbox, logger: logger)
    }

    private static func queue(_ message: ZoneMessage, on outbox: ZoneOutbox, logger: Logger) {
        if outbox.send(message) == .full {
            logger.error("link to the manager cut: \(ZoneOutbox.capacity) messages were waiting unwritten, so the manager is not reading; reconnecting and registering again")
        }
    }

    /// Closes the link to the manager now, dropping what waits to be written; the agent
    /// reconnects and registers again with what this process holds, from which the manager
    /// rebuilds its view. For a role that can no longer trust that it carried out every
    /// order of this link.
    public func dropManagerLink(because reason: String) {
        guard let outbox else { return }
        logger.error("dropping the link to the manager; reconnecting and registering again", metadata: ["reason": "\(reason)"])
        outbox.cut()
    }

    /// Where should clients of `meeting` connect? Asks the manager, waiting at most `timeout`.
    public func locate(_ meeting: MeetingID, timeout: Duration) async throws -> LocateResult {
        let pending = locates
        return try await pending.call(timeout: timeout) { id in
            await self.send(.locate(request: id, meeting: meeting))
        }
    }

    /// Where is the host of `meeting`? For a copy of it here that follows the host.
    public func findHost(_ meeting: MeetingID, timeout: Duration) async throws -> LocateResult {
        let pending = locates
        return try await pending.call(timeout: timeout) { id in
            await self.send(.findHost(request: id, meeting: meeting))
        }
    }

    /// Asks the license service (through the manager) whether `participant` may join.
    public func admit(_ meeting: MeetingID, _ participant: ParticipantID, timeout: Duration) async throws -> AdmitReply {
        let pending = admits
        return try await pending.call(timeout: timeout) { id in
            await self.send(.admit(request: id, meeting: meeting, participant: participant))
        }
    }

    public var manager: NodeName? { fence.link?.manager }

    // MARK: Link

    private func connectLoop() async {
        var lastProblem = ""
        while !Task.isCancelled {
            do {
                let lease = try await store.lease(Self.managerLease)
                if let lease, lease.isLive {
                    let manager = NodeName(lease.holder)
                    try await ZoneLink.connect(to: lease.address, as: name, peer: manager, credentials: credentials,
                                               nowMs: wallClockMs(), logger: logger) { link in
                        await self.session(link, term: lease.term)
                    }
                    lastProblem = ""
                } else if lastProblem != "no manager" {
                    lastProblem = "no manager"
                    logger.info("waiting for a manager to hold the lease")
                }
            } catch {
                let problem = "\(error)"
                if problem != lastProblem {
                    logger.notice("cannot reach the manager; retrying", metadata: ["error": "\(problem)"])
                    lastProblem = problem
                }
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Whether this process is registered with a manager now (its link is up).
    public var isRegistered: Bool { outbox != nil }

    private func session(_ link: ZoneLink, term: UInt64) async {
        // Asked before the outbox opens: nothing may be sent ahead of the registration (the
        // manager ends a link whose first message is not one).
        let holding = await delegate.holding()
        let outbox = ZoneOutbox()
        self.outbox = outbox
        locates = PendingReplies()
        admits = PendingReplies()
        fence.linked(to: link.peer, term: term)
        let linkTerm = TermFence.Link(manager: link.peer, term: term)
        outbox.send(.register(name: name, role: role, address: address, holding: holding))
        logger.info("registered with the manager", metadata: ["manager": "\(link.peer)", "term": "\(term)"])
        await withTaskGroup(of: Void.self) { group in
            // Ends the session when the link fails or the outbox is cut.
            group.addTask { await outbox.write { try await link.send($0) } }
            group.addTask { [heartbeatMs, delegate, logger] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(heartbeatMs))
                    Self.queue(.load(await delegate.load()), on: outbox, logger: logger)
                }
            }
            group.addTask {
                do {
                    for try await message in link.messages() { await self.handle(message) }
                } catch {
                    self.logger.notice("manager link broke", metadata: ["error": "\(error)"])
                }
            }
            // A partition may leave the link open and silent: the lease decides (`TermFence`).
            group.addTask { [store, heartbeatMs, logger] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(max(250, heartbeatMs * 2)))
                    guard let lease = try? await store.lease(Self.managerLease) else { continue }
                    if linkTerm.isOutlived(byLeaseOf: NodeName(lease.holder), term: lease.term, live: lease.isLive) {
                        logger.notice("the manager lease moved on; leaving this manager", metadata: [
                            "manager": "\(link.peer)", "term": "\(term)", "lease": "\(lease.holder) (term \(lease.term))",
                        ])
                        return
                    }
                }
            }
            await group.next()
            group.cancelAll()
        }
        outbox.finish()
        self.outbox = nil
        fence.unlinked()
        locates.close("the link to the manager closed")
        admits.close("the link to the manager closed")
        logger.info("manager link closed", metadata: ["manager": "\(link.peer)"])
    }

    private func handle(_ message: ZoneMessage) async {
        if let orderTerm = message.term, !fence.admits(orderOf: orderTerm) {
            logger.notice("order from a deposed manager ignored", metadata: ["term": "\(orderTerm)", "current": "\(fence.newestTerm)"])
            return
        }
        switch message {
        case .located(let request, let answer):
            locates.resolve(request, with: answer)
            return
        case .admitted(let request, let ok, let reason):
            admits.resolve(request, with: AdmitReply(ok: ok, reason: reason))
            return
        case .startCollab:
            // Asked outside this loop: the supervisor may take a while, and orders go on.
            spawnRequested.yield()
            return
        default:
            break
        }
        await delegate.received(message)
    }
}

/// The license service's answer to ``ZoneAgent/admit(_:_:timeout:)``.
public struct AdmitReply: Sendable {
    public var ok: Bool
    public var reason: String
}

extension ZoneMessage {
    /// The manager term an order carries.
    var term: UInt64? {
        switch self {
        case .open(_, _, let term), .promote(_, _, let term, _), .follow(_, _, _, let term), .release(_, let term): term
        default: nil
        }
    }
}

/// Milliseconds since 1970 on this machine's clock: leases and link headers use wall time
/// because they are compared across processes.
func wallClockMs() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }
