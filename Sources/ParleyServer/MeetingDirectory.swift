import Logging
import Tracing
import ParleyCore
import ParleyProtocol
import ParleyStore
import ServiceLifecycle

/// The meetings this server hosts, and the copies it keeps of meetings hosted elsewhere
/// (standbys, and edges that serve participants here). Host and copy loops run inside
/// ``run()``'s task group, so every one is owned and shut down with the server.
///
/// A single server loads a meeting on its first hello. In a zone the manager decides:
/// ``open(_:)`` and ``promote(_:)`` make this server the host, ``startCopy(_:standby:)``
/// keeps a standby copy up to date, ``release(_:reason:)`` lets go. A hello for a meeting
/// hosted elsewhere is served from a copy here when the zone has edges on
/// (``serveEdges(follow:)``), and gets `moved` otherwise.
public actor MeetingDirectory: Service {
    private let store: any Store
    private let commitLog: GroupCommitLog
    private let configuration: ServerConfiguration
    private let clock: @Sendable () -> Millis
    private let logger: Logger
    private let loadsOnDemand: Bool
    private var hosts: [MeetingID: MeetingHost] = [:]
    private var loading: [MeetingID: [CheckedContinuation<MeetingHost, any Error>]] = [:]
    /// Copies of meetings hosted elsewhere: the host's committed stream applied to a replica
    /// log, serving the participants attached here.
    private var copies: [MeetingID: MeetingCopy] = [:]
    private var openingCopies: [MeetingID: [CheckedContinuation<MeetingCopy, any Error>]] = [:]
    /// Set when this server serves participants of meetings hosted elsewhere: starts
    /// following a copy opened for them.
    private var followEdge: (@Sendable (MeetingID, Seq) async -> Void)?
    private var accepting = true
    private var streaming = true
    private enum Loop: Sendable {
        case host(MeetingHost)
        case copy(MeetingCopy)
    }
    private let started: AsyncStream<Loop>
    private let start: AsyncStream<Loop>.Continuation
    /// Meetings whose host stopped by itself (a commit failed, or it was fenced), not
    /// because the manager released it. The zone must hear of it: the manager still places
    /// the meeting here, and every client it sends here would be told `moved`, forever.
    /// Found by `parley sim` (seed 8).
    public nonisolated let stoppedByThemselves: AsyncStream<MeetingID>
    private let stoppedByItself: AsyncStream<MeetingID>.Continuation
    /// Copies here that outvoted their host (see ``DigestVerdict``): the zone demotes it.
    public nonisolated let hostsOutvoted: AsyncStream<HostOutvoted>
    private let hostOutvoted: AsyncStream<HostOutvoted>.Continuation
    /// Meetings whose edge copy here was dropped, unused: the locator stops counting this
    /// server among the meeting's copies.
    public nonisolated let edgesDropped: AsyncStream<MeetingID>
    private let edgeDropped: AsyncStream<MeetingID>.Continuation

    init(store: any Store, commitLog: GroupCommitLog, configuration: ServerConfiguration, loadsOnDemand: Bool,
         clock: @escaping @Sendable () -> Millis, logger: Logger) {
        self.store = store
        self.commitLog = commitLog
        self.configuration = configuration
        self.loadsOnDemand = loadsOnDemand
        self.clock = clock
        self.logger = logger
        (started, start) = AsyncStream.makeStream()
        // At most one per meeting hosted here is waiting at a time in practice; bounded anyway.
        (stoppedByThemselves, stoppedByItself) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1_024))
        (hostsOutvoted, hostOutvoted) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1_024))
        (edgesDropped, edgeDropped) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1_024))
    }

    var hostedCount: Int { hosts.count }

    /// Runs every host loop until graceful shutdown, then lets each host commit and
    /// checkpoint before returning.
    public func run() async throws {
        await withDiscardingTaskGroup { group in
            for await loop in started.cancelOnGracefulShutdown() {
                switch loop {
                case .host(let host):
                    group.addTask {
                        await host.run()
                        await self.forget(host)
                    }
                case .copy(let copy):
                    group.addTask {
                        await copy.run()
                        await self.forget(copy)
                    }
                }
            }
            // Graceful shutdown: the group waits for each host to commit and checkpoint.
            shutDown()
        }
    }

    private func shutDown() {
        accepting = false
        for host in hosts.values { _ = host.submit(.shutdown) }
        // Closed without an error: the server is stopping, and the clients resume elsewhere.
        for copy in copies.values { copy.stop(failing: nil) }
        start.finish()
    }

    private func forget(_ copy: MeetingCopy) {
        guard copies[copy.id] === copy else { return }
        copies[copy.id] = nil
        if accepting, !copy.isStandby { edgeDropped.yield(copy.id) }
    }

    /// Drops every edge copy no participant has used for `unusedForMs`. Each copy decides in
    /// its own loop, after the attaches already queued to it.
    public func dropUnusedEdges(unusedForMs: Int64) {
        let now = clock()
        for copy in copies.values where !copy.isStandby {
            if let unused = copy.unusedFor(now: now), unused >= unusedForMs { copy.stopIfUnused() }
        }
    }

    private func forget(_ host: MeetingHost) {
        if hosts[host.id] === host {
            // Still listed: nobody released it, it stopped by itself.
            hosts[host.id] = nil
            if accepting { stoppedByItself.yield(host.id) }
        }
        logger.info("meeting unloaded", metadata: ["meeting": "\(host.id)"])
    }

    /// Where a client of `id` attaches here: the host, or a copy. A single server loads the
    /// meeting from the store if it is not running yet; a zone server only hosts what the
    /// manager placed here, and serves other meetings from copies when edges are on.
    func entrance(for id: MeetingID) async throws(ProtocolError) -> any MeetingEntrance {
        guard accepting else { throw ProtocolError(.serverBusy, "the server is shutting down; reconnect shortly", fatal: true) }
        if let host = hosts[id] { return host }
        if loadsOnDemand { return try await load(id, promoting: false) }
        // Without edges, a standby copy serves nobody: its clients would never be told
        // where the meeting is hosted.
        guard followEdge != nil else {
            throw ProtocolError(.moved, "meeting \(id) is not hosted on this server; ask the locator again", fatal: true)
        }
        if let copy = copies[id] { return copy }
        return try await openEdge(id)
    }

    /// Serve participants of meetings hosted elsewhere from copies kept here; `follow`
    /// starts keeping a new one current.
    public func serveEdges(follow: @escaping @Sendable (MeetingID, _ holding: Seq) async -> Void) {
        followEdge = follow
    }

    /// A copy for the participants attached here, loaded from the store and then followed.
    private func openEdge(_ id: MeetingID) async throws(ProtocolError) -> MeetingCopy {
        if openingCopies[id] != nil {
            do {
                return try await withCheckedThrowingContinuation { openingCopies[id, default: []].append($0) }
            } catch let error as ProtocolError {
                throw error
            } catch {
                throw ProtocolError(.internalError, "\(error)", fatal: true)
            }
        }
        openingCopies[id] = []
        let result: Result<MeetingCopy, ProtocolError>
        var held: Seq = 0
        do {
            held = try await startCopy(id, standby: false)
            if let copy = copies[id] {
                result = .success(copy)
            } else {
                result = .failure(ProtocolError(.serverBusy, "the copy of meeting \(id) was dropped as it opened; reconnect", fatal: true))
            }
        } catch {
            result = .failure(error)
        }
        for waiter in openingCopies.removeValue(forKey: id) ?? [] { waiter.resume(with: result) }
        let copy = try result.get()
        logger.info("edge copy opened for participants here", metadata: ["meeting": "\(id)"])
        await followEdge?(id, held)
        return copy
    }

    // MARK: The zone's orders

    /// What this server holds: the meetings it hosts and its standby copies, with epochs.
    public func held() -> [(meeting: MeetingID, hosting: Bool, epoch: Epoch)] {
        hosts.values.map { ($0.id, true, $0.epoch) } + copies.values.filter(\.isStandby).map { ($0.id, false, $0.epoch) }
    }

    /// The meetings hosted elsewhere whose participants are served here, from a copy
    /// (the standby's, or an edge's), sorted.
    public func edges() -> [MeetingID] {
        copies.values.filter { $0.clientCount > 0 }.map(\.id).sorted()
    }

    /// For each meeting hosted here: participants connected to it (on any server) and its
    /// last sequence number, for the operator's zone page.
    public func hostedActivity() -> [(meeting: MeetingID, participants: Int, seq: Seq)] {
        hosts.values.map { host in
            let observed = host.observed
            return (host.id, observed.participants, observed.seq)
        }
    }

    /// Meetings hosted here, standby copies, and other copies (edges).
    public func heldCounts() -> (hosted: Int, standbys: Int, edges: Int) {
        let standbys = copies.values.filter(\.isStandby).count
        return (hosts.count, standbys, copies.count - standbys)
    }

    /// Every meeting a copy is kept of here (standbys and edges, used or not), sorted.
    public func copiesKept() -> [MeetingID] { copies.keys.sorted() }

    /// Load figures for the zone's placement.
    public func load() -> (meetings: Int, queueDepth: Int) {
        (hosts.count, hosts.values.map(\.inbox.depth).max() ?? 0)
    }

    /// Hosts the meeting from the store under a new epoch. Returns the epoch.
    public func open(_ id: MeetingID) async throws(ProtocolError) -> Epoch {
        if let host = hosts[id] { return host.epoch }
        return try await load(id, promoting: false).epoch
    }

    /// Takes the meeting over from its standby copy here (or from the store without one)
    /// under a new epoch, which fences the previous host. Returns the epoch.
    /// `span` (the `parley.promotion` span), when given, gets a `first ack` event and ends
    /// when the new host first acknowledges an op.
    public func promote(_ id: MeetingID, span: (any Span)? = nil) async throws(ProtocolError) -> Epoch {
        if let host = hosts[id] {
            span?.end()
            return host.epoch
        }
        let host = try await load(id, promoting: true)
        // Before anyone is told it hosts the meeting, so no ack can come first.
        if let span { host.endAtFirstAck(span) }
        return host.epoch
    }

    /// Stops hosting the meeting, or keeping it as a standby. Clients of the host are sent
    /// to the locator. Returns true when a copy stays here for the participants attached
    /// to it (it is an edge from now on, and must be followed as one).
    public func release(_ id: MeetingID, reason: String) -> Bool {
        if let host = hosts.removeValue(forKey: id) { _ = host.submit(.release(reason: reason)) }
        guard let copy = copies[id] else { return false }
        copy.standby.store(false, ordering: .relaxed)
        if copy.clientCount > 0 { return true }
        copies[id] = nil
        copy.stop(failing: ProtocolError(.moved, "meeting \(id) moved (\(reason)); ask the locator again", fatal: true))
        logger.info("copy dropped", metadata: ["meeting": "\(id)", "reason": "\(reason)"])
        return false
    }

    /// Starts a copy from the store, or rebuilds the one kept here (its clients stay
    /// attached). Returns the seq to subscribe after.
    public func startCopy(_ id: MeetingID, standby: Bool) async throws(ProtocolError) -> Seq {
        if hosts[id] != nil, copies[id] == nil {
            throw ProtocolError(.internalError, "meeting \(id) is hosted here; it needs no copy")
        }
        let recovered = try await recover(id)
        let log: MeetingLog
        do {
            log = try MeetingLog(standbyFrom: recovered.snapshot, entries: recovered.entries, history: recovered.history,
                                 window: configuration.resumeWindow)
        } catch {
            throw ProtocolError(.internalError, "cannot rebuild a copy of \(id): \(error)")
        }
        if let copy = copies[id] {
            if standby { copy.standby.store(true, ordering: .relaxed) }
            copy.rebuilt(log)
        } else {
            let copy = MeetingCopy(log: log, standby: standby, configuration: configuration, clock: clock, logger: logger,
                                   outvoted: hostOutvoted)
            copies[id] = copy
            start.yield(.copy(copy))
        }
        return log.lastSeq
    }

    /// Whether a copy of `id` is kept here.
    public func isFollowing(_ id: MeetingID) -> Bool { copies[id] != nil }

    /// The last seq the copy of `id` here holds.
    public func copyLastSeq(_ id: MeetingID) async -> Seq? { await copies[id]?.currentLog()?.lastSeq }

    /// Whether participants are attached to the copy of `id` kept here.
    public func copyServesClients(_ id: MeetingID) -> Bool { (copies[id]?.clientCount ?? 0) > 0 }

    /// Whether `id` is hosted here.
    public func isHosting(_ id: MeetingID) -> Bool { hosts[id] != nil }

    /// Applies entries the host streamed. False if the copy cannot take them (a gap, or it
    /// was dropped): the follower reloads or stops.
    public func replicate(_ id: MeetingID, _ entries: [LogEntry]) async -> Bool {
        guard let copy = copies[id] else { return false }
        return await copy.replicate(entries)
    }

    /// The host's digest at checkpoint `seq`, for the copy of `id` here to vote on. False if
    /// the copy must be rebuilt from the store (it was outvoted, or no two votes agreed).
    public func copyDigest(_ id: MeetingID, _ digest: MeetingDigest, at seq: Seq) async -> Bool {
        guard let copy = copies[id] else { return false }
        return await copy.hostDigest(digest, at: seq)
    }

    /// A link to the host of `id` is up: what the copy here passes up on it, and the link's
    /// number for ``copyLinkEnded(_:link:)``. Nil without a copy.
    public func copyLinkStarted(_ id: MeetingID) -> (requests: AsyncStream<CopyRequest>, link: UInt64)? { copies[id]?.linkStarted() }
    public func copyLinkEnded(_ id: MeetingID, link: UInt64) { copies[id]?.linkEnded(link) }
    public func copyNotice(_ id: MeetingID, _ notice: CopyNotice) { copies[id]?.notice(notice) }

    /// A copy elsewhere, following `id` over `feed`, passed up a request.
    public func copyRequest(_ id: MeetingID, over feed: ReplicaFeed, _ request: CopyRequest) {
        // Never refused for a full queue: an arrival or departure lost would leave presence
        // wrong, and an op answered "busy" may be one an earlier host committed. What a
        // copy can pass up is bounded by its link's buffer.
        _ = hosts[id]?.submit(.copyRequest(feed, request))
    }

    /// The copy following `id` over `feed` is gone.
    public func copyGone(_ id: MeetingID, over feed: ReplicaFeed) {
        _ = hosts[id]?.submit(.copyGone(feed))
    }

    /// A standby elsewhere subscribes to the committed stream of a meeting hosted here.
    public func subscribe(_ id: MeetingID, after: Seq) -> ReplicaFeed? {
        guard streaming, let host = hosts[id] else { return nil }
        let feed = ReplicaFeed()
        guard case .queued = host.submit(.subscribe(feed, after: after)) else { return nil }
        return feed
    }

    /// Ends every standby's stream and takes no new subscriptions: the zone side calls this
    /// when the server stops, so no link waits on a meeting that outlives it.
    public func endReplicaFeeds() {
        streaming = false
        for host in hosts.values { _ = host.submit(.endReplicaFeeds) }
    }

    // MARK: Loading

    private func load(_ id: MeetingID, promoting: Bool) async throws(ProtocolError) -> MeetingHost {
        if loading[id] != nil {
            do {
                return try await withCheckedThrowingContinuation { loading[id, default: []].append($0) }
            } catch let error as ProtocolError {
                throw error
            } catch {
                throw ProtocolError(.internalError, "\(error)", fatal: true)
            }
        }
        loading[id] = []
        let result: Result<MeetingHost, ProtocolError>
        let started = ContinuousClock.now
        do {
            let standby = promoting ? await copies[id]?.currentLog() : nil
            result = .success(try await build(id, from: standby))
        } catch {
            result = .failure(error)
        }
        let took = ContinuousClock.now - started
        logger.info("meeting ready to host", metadata: [
            "meeting": "\(id)", "promoted": "\(promoting)",
            "took_ms": "\(took.wholeMilliseconds)",
        ])
        let waiters = loading.removeValue(forKey: id) ?? []
        switch result {
        case .success(let host):
            // A copy with participants attached stays, as an edge of the host here: its
            // clients keep their connections.
            if let copy = copies[id] {
                copy.standby.store(false, ordering: .relaxed)
                if copy.clientCount == 0 {
                    copies[id] = nil
                    copy.stop(failing: nil)
                }
            }
            hosts[id] = host
            start.yield(.host(host))
            for waiter in waiters { waiter.resume(returning: host) }
            return host
        case .failure(let error):
            for waiter in waiters { waiter.resume(throwing: error) }
            throw error
        }
    }

    /// The meeting as the store has it, checked.
    /// - Parameter standbyHolds: the seq a standby copy holds everything through: then only
    ///   the log after it is read. Reading the checkpoint and the history before it (what
    ///   clients may resume from) grows with the meeting, and the standby has both.
    private func recover(_ id: MeetingID, standbyHolds: Seq? = nil) async throws(ProtocolError)
        -> (record: MeetingRecord, snapshot: Snapshot, entries: [LogEntry], history: [LogEntry])
    {
        let recovered: RecoveredMeeting
        do {
            guard try await store.meeting(id) != nil else {
                throw ProtocolError(.unknownMeeting, "there is no meeting \(id)", fatal: true)
            }
            if let standbyHolds {
                recovered = try await store.recover(id, after: standbyHolds)
            } else {
                recovered = try await store.recover(id, historyLimit: configuration.resumeWindow.minEntries)
            }
        } catch let error as ProtocolError {
            throw error
        } catch {
            logger.error("cannot load meeting", metadata: ["meeting": "\(id)", "error": "\(error)"])
            throw ProtocolError(.internalError, "the meeting could not be loaded; try again", fatal: true)
        }
        for warning in recovered.warnings {
            logger.warning("recovery: \(warning)", metadata: ["meeting": "\(id)"])
        }
        let record = recovered.record
        let snapshot = recovered.snapshot ?? Snapshot(
            meeting: Meeting(id: record.id, title: record.title, settings: record.settings),
            seq: 0, epoch: Epoch(0), outcomes: OpOutcomes(capacity: configuration.resumeWindow.minEntries))
        return (record, snapshot, recovered.entries, recovered.history)
    }

    /// Claims the next epoch (from then on the previous host can commit nothing), then
    /// rebuilds the meeting from the standby copy plus what the store has beyond it, or from
    /// the newest good checkpoint plus the log.
    private func build(_ id: MeetingID, from standby: MeetingLog?) async throws(ProtocolError) -> MeetingHost {
        let epoch: Epoch
        do {
            epoch = try await store.claimNextEpoch(id)
        } catch .unknownMeeting {
            throw ProtocolError(.unknownMeeting, "there is no meeting \(id)", fatal: true)
        } catch {
            logger.error("cannot claim the meeting", metadata: ["meeting": "\(id)", "error": "\(error)"])
            throw ProtocolError(.internalError, "the meeting could not be loaded; try again", fatal: true)
        }
        // Read after the claim: everything the previous host committed is in the store now.
        var recovered = try await recover(id, standbyHolds: standby?.lastSeq)
        var poisoned: Set<OpOutcomes.Key> = []
        if let poison = configuration.poison {
            poisoned = await ApplyingNote.collectCrashes(id, guard: poison, store: store, now: clock(), logger: logger)
        }
        if var log = standby, log.lastSeq >= recovered.snapshot.seq {
            do {
                try log.promote(to: epoch, catchingUp: recovered.entries)
                logger.info("meeting promoted from its standby copy", metadata: [
                    "meeting": "\(id)", "epoch": "\(epoch)", "last_seq": "\(log.lastSeq)",
                ])
                return MeetingHost(log: log, store: store, commitLog: commitLog, configuration: configuration,
                                   poisoned: poisoned, checkpointAtOnce: true, clock: clock, logger: logger)
            } catch {
                logger.warning("standby copy unusable; loading from the store", metadata: ["meeting": "\(id)", "error": "\(error)"])
            }
        }
        if standby != nil { recovered = try await recover(id) }
        do {
            let log = try MeetingLog(recovering: recovered.snapshot, entries: recovered.entries, history: recovered.history,
                                     epoch: epoch, window: configuration.resumeWindow)
            logger.info("meeting loaded", metadata: [
                "meeting": "\(id)", "epoch": "\(epoch)", "snapshot_seq": "\(recovered.snapshot.seq)",
                "replayed": "\(recovered.entries.count)", "last_seq": "\(log.lastSeq)",
            ])
            return MeetingHost(log: log, store: store, commitLog: commitLog, configuration: configuration,
                               poisoned: poisoned, clock: clock, logger: logger)
        } catch {
            logger.error("cannot rebuild meeting", metadata: ["meeting": "\(id)", "error": "\(error)"])
            throw ProtocolError(.internalError, "the meeting could not be rebuilt; see the server log", fatal: true)
        }
    }
}
