import Logging
import ParleyCore
import ParleyServer
import ParleyZone
import Synchronization

/// The replication links of one collaboration server: one zone link to each host it follows
/// meetings of, shared by every copy (standby or edge) it keeps of that host's meetings. A
/// thousand meetings followed between two servers make one link, not a thousand.
///
/// Each meeting on a link has a flow-control window: the host sends at most
/// ``window`` messages of a meeting that the copy has not taken yet, and the copy grants one
/// more (`credit`) for each it takes. A copy that is slow to take its meeting's entries
/// holds up that meeting only: its host's feed fills and is cut off (the copy subscribes
/// again from its last seq), while the other meetings on the link go on.
actor CopyLinks {
    /// Messages of one meeting in flight on a link before the copy has taken them.
    static let window = 8

    private let me: NodeName
    private let credentials: ZoneCredentials
    private let logger: Logger
    private var peers: [NodeName: PeerLink] = [:]
    private var lastSubscription: UInt64 = 0
    private let started: AsyncStream<PeerLink>
    private let start: AsyncStream<PeerLink>.Continuation

    init(me: NodeName, credentials: ZoneCredentials, logger: Logger) {
        self.me = me
        self.credentials = credentials
        self.logger = logger
        (started, start) = AsyncStream.makeStream()
    }

    /// Runs every link until cancelled.
    func run() async {
        await withDiscardingTaskGroup { group in
            for await peer in started {
                group.addTask {
                    await peer.run()
                    await self.forget(peer)
                }
            }
        }
    }

    func finish() { start.finish() }

    private func forget(_ peer: PeerLink) {
        if peers[peer.host] === peer { peers[peer.host] = nil }
    }

    /// The link to `host` at `url`, opened if there is none yet (or the host moved).
    private func link(to host: NodeName, at url: String) -> PeerLink {
        if let peer = peers[host], peer.url == url, peer.isUsable { return peer }
        let peer = PeerLink(host: host, url: url, me: me, credentials: credentials, logger: logger)
        peers[host] = peer
        start.yield(peer)
        return peer
    }

    private func nextSubscription() -> UInt64 {
        lastSubscription += 1
        return lastSubscription
    }

    /// One subscription of the copy of `meeting` to its host, over the shared link: every
    /// committed entry after `after`, then the live stream, each handed to `take` (false:
    /// stop); the copy's requests go up the same link. Returns when the subscription ends:
    /// `take` stopped it, the host ended it, or the link closed.
    func follow(_ meeting: MeetingID, after: Seq, host: NodeName, url: String, requests: AsyncStream<CopyRequest>,
                take: @escaping @Sendable (ReplicaUpdate) async -> Bool) async {
        let peer = link(to: host, at: url)
        let subscription = nextSubscription()
        let updates = peer.open(meeting, subscription)
        peer.send(.subscribe(meeting: meeting, after: after, subscription: subscription))
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await request in requests { peer.send(.copyRequest(meeting: meeting, request)) }
            }
            group.addTask {
                for await update in updates {
                    guard await take(update) else { return }
                    peer.send(.credit(meeting: meeting, 1))
                }
            }
            await group.next()
            group.cancelAll()
        }
        if peer.close(meeting, subscription) { peer.send(.unsubscribe(meeting: meeting, subscription: subscription)) }
    }
}

/// One link to one host, and the subscriptions on it.
final class PeerLink: Sendable {
    let host: NodeName
    let url: String
    private let me: NodeName
    private let credentials: ZoneCredentials
    private let logger: Logger
    /// What goes out, in order; one writer sends it.
    private let outbox: AsyncStream<ZoneMessage>.Continuation
    private let outgoing: AsyncStream<ZoneMessage>

    private struct Route {
        var subscription: UInt64
        var updates: AsyncStream<ReplicaUpdate>.Continuation
        /// Set once the host said it serves this subscription: what came before was for an
        /// earlier one.
        var confirmed = false
    }

    private struct State {
        var routes: [MeetingID: Route] = [:]
        var closed = false
    }

    private let state = Mutex(State())

    init(host: NodeName, url: String, me: NodeName, credentials: ZoneCredentials, logger: Logger) {
        self.host = host
        self.url = url
        self.me = me
        self.credentials = credentials
        self.logger = logger
        (outgoing, outbox) = AsyncStream.makeStream()
    }

    /// Whether new subscriptions may use it (it has not closed).
    var isUsable: Bool { state.withLock { !$0.closed } }

    func send(_ message: ZoneMessage) { outbox.yield(message) }

    /// The updates of a new subscription of `meeting`; one before it on this link ends.
    func open(_ meeting: MeetingID, _ subscription: UInt64) -> AsyncStream<ReplicaUpdate> {
        // The window bounds what can be in flight; twice that leaves room for the host's end.
        let (updates, continuation) = AsyncStream<ReplicaUpdate>.makeStream(bufferingPolicy: .bufferingOldest(CopyLinks.window * 2))
        let previous = state.withLock { state -> Route? in
            if state.closed {
                continuation.finish()
                return nil
            }
            defer { state.routes[meeting] = Route(subscription: subscription, updates: continuation) }
            return state.routes[meeting]
        }
        previous?.updates.finish()
        return updates
    }

    /// Ends the subscription here; true if it was still the meeting's (the host must be told).
    func close(_ meeting: MeetingID, _ subscription: UInt64) -> Bool {
        let route = state.withLock { state -> Route? in
            guard state.routes[meeting]?.subscription == subscription else { return nil }
            return state.routes.removeValue(forKey: meeting)
        }
        route?.updates.finish()
        return route != nil && isUsable
    }

    /// Connects and carries messages both ways until the link closes; then every
    /// subscription on it ends (their followers subscribe again, over a new link).
    func run() async {
        do {
            try await ZoneLink.connect(to: url, as: me, peer: host, credentials: credentials, nowMs: wallClockMs(), logger: logger) { link in
                self.logger.info("replication link opened", metadata: ["host": "\(self.host)"])
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for await message in self.outgoing { try await link.send(message) }
                    }
                    group.addTask {
                        for try await message in link.messages() { self.route(message) }
                    }
                    try await group.next()
                    group.cancelAll()
                }
            }
        } catch {
            logger.debug("replication link closed", metadata: ["host": "\(host)", "error": "\(error)"])
        }
        let routes = state.withLock { state in
            state.closed = true
            defer { state.routes.removeAll() }
            return Array(state.routes.values)
        }
        outbox.finish()
        for route in routes { route.updates.finish() }
    }

    /// Hands a message from the host to its meeting's subscription.
    private func route(_ message: ZoneMessage) {
        let (meeting, update): (MeetingID, ReplicaUpdate?)
        switch message {
        case .subscribed(let id, let subscription):
            state.withLock { state in
                if state.routes[id]?.subscription == subscription { state.routes[id]?.confirmed = true }
            }
            return
        case .unsubscribe(let id, let subscription):
            let ended = state.withLock { state -> Route? in
                guard state.routes[id]?.subscription == subscription, state.routes[id]?.confirmed == true else { return nil }
                return state.routes.removeValue(forKey: id)
            }
            ended?.updates.finish()
            return
        case .entries(let id, let entries): (meeting, update) = (id, .entries(entries))
        case .reload(let id): (meeting, update) = (id, .reload)
        case .copyNotice(let id, let notice): (meeting, update) = (id, .notice(notice))
        case .digest(let id, let seq, let digest): (meeting, update) = (id, .digest(seq: seq, MeetingDigest(hex: digest)))
        default: return
        }
        guard let update else { return }
        let overflowed = state.withLock { state -> Route? in
            guard let route = state.routes[meeting], route.confirmed else { return nil }
            if case .enqueued = route.updates.yield(update) { return nil }
            // More than the window allows: the host is not ours to trust with this
            // subscription any more; it ends, and the copy subscribes again.
            return state.routes.removeValue(forKey: meeting)
        }
        if let overflowed {
            overflowed.updates.finish()
            send(.unsubscribe(meeting: meeting, subscription: overflowed.subscription))
        }
    }
}

/// A meeting's flow-control window on the host's side of a link: a message goes out only
/// with a credit, and the copy grants them as it takes what it was sent. Taking a credit
/// and queueing the message happen under one lock with closing, so nothing of a
/// subscription is queued after it was closed (a new subscription of the same meeting may
/// follow it on the link at once).
final class CopyCredits: Sendable {
    private struct State {
        var credits: Int
        var closed = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state: Mutex<State>

    init(window: Int) { state = Mutex(State(credits: window)) }

    /// Queues `message` with `send` once a credit is there; false (nothing queued) once closed.
    func send(_ message: ZoneMessage, with send: (ZoneMessage) -> Void) async -> Bool {
        while true {
            let outcome = state.withLock { state -> Bool? in
                if state.closed { return false }
                guard state.credits > 0 else { return nil }
                state.credits -= 1
                send(message)
                return true
            }
            if let outcome { return outcome }
            await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { state -> Bool in
                    if state.closed || state.credits > 0 { return true }
                    state.waiter = waiter
                    return false
                }
                if ready { waiter.resume() }
            }
        }
    }

    func grant(_ count: Int) {
        state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.credits += max(0, count)
            defer { state.waiter = nil }
            return state.waiter
        }?.resume()
    }

    func close() {
        state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.closed = true
            defer { state.waiter = nil }
            return state.waiter
        }?.resume()
    }
}
