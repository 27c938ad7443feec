import Logging
import ParleyCore
import ParleyProtocol
import ParleyStore
import ServiceLifecycle

/// The meetings this server hosts, and the standby copies it keeps of meetings hosted
/// elsewhere. A host loop runs inside ``run()``'s task group, so every host is owned and
/// shut down with the server.
///
/// A single server loads a meeting on its first hello. In a zone the manager decides:
/// ``open(_:)`` and ``promote(_:)`` make this server the host, ``follow`` keeps a standby
/// copy up to date, ``release(_:)`` lets go; a hello for anything else gets `moved`.
public actor MeetingDirectory: Service {
    private let store: any Store
    private let commitLog: GroupCommitLog
    private let configuration: ServerConfiguration
    private let clock: @Sendable () -> Millis
    private let logger: Logger
    private let loadsOnDemand: Bool
    private var hosts: [MeetingID: MeetingHost] = [:]
    private var loading: [MeetingID: [CheckedContinuation<MeetingHost, any Error>]] = [:]
    /// Standby copies: the host's committed stream applied to a replica log.
    private var standbys: [MeetingID: MeetingLog] = [:]
    private var accepting = true
    private var streaming = true
    private let started: AsyncStream<MeetingHost>
    private let start: AsyncStream<MeetingHost>.Continuation
    /// Meetings whose host stopped by itself (a commit failed, or it was fenced), not
    /// because the manager released it. The zone must hear of it: the manager still places
    /// the meeting here, and every client it sends here would be told `moved`, forever.
    /// Found by `parley sim` (seed 8).
    public nonisolated let stoppedByThemselves: AsyncStream<MeetingID>
    private let stoppedByItself: AsyncStream<MeetingID>.Continuation

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
    }

    var hostedCount: Int { hosts.count }

    /// Runs every host loop until graceful shutdown, then lets each host commit and
    /// checkpoint before returning.
    public func run() async throws {
        await withDiscardingTaskGroup { group in
            for await host in started.cancelOnGracefulShutdown() {
                group.addTask {
                    await host.run()
                    await self.forget(host)
                }
            }
            // Graceful shutdown: the group waits for each host to commit and checkpoint.
            shutDown()
        }
    }

    private func shutDown() {
        accepting = false
        for host in hosts.values { _ = host.submit(.shutdown) }
        start.finish()
    }

    private func forget(_ host: MeetingHost) {
        if hosts[host.id] === host {
            // Still listed: nobody released it, it stopped by itself.
            hosts[host.id] = nil
            if accepting { stoppedByItself.yield(host.id) }
        }
        logger.info("meeting unloaded", metadata: ["meeting": "\(host.id)"])
    }

    /// The host of `id`. A single server loads the meeting from the store if it is not
    /// running yet; a zone server only hosts what the manager placed here.
    func host(for id: MeetingID) async throws(ProtocolError) -> MeetingHost {
        guard accepting else { throw ProtocolError(.serverBusy, "the server is shutting down; reconnect shortly", fatal: true) }
        if let host = hosts[id] { return host }
        guard loadsOnDemand else {
            throw ProtocolError(.moved, "meeting \(id) is not hosted on this server; ask the locator again", fatal: true)
        }
        return try await load(id, promoting: false)
    }

    // MARK: The zone's orders

    /// What this server holds: the meetings it hosts and its standby copies, with epochs.
    public func held() -> [(meeting: MeetingID, hosting: Bool, epoch: Epoch)] {
        hosts.values.map { ($0.id, true, $0.epoch) } + standbys.map { ($0.key, false, $0.value.epoch) }
    }

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
    public func promote(_ id: MeetingID) async throws(ProtocolError) -> Epoch {
        if let host = hosts[id] { return host.epoch }
        return try await load(id, promoting: true).epoch
    }

    /// Stops hosting or following the meeting. Clients are sent to the locator.
    public func release(_ id: MeetingID, reason: String) {
        if let host = hosts.removeValue(forKey: id) { _ = host.submit(.release(reason: reason)) }
        if standbys.removeValue(forKey: id) != nil {
            logger.info("standby copy dropped", metadata: ["meeting": "\(id)", "reason": "\(reason)"])
        }
    }

    /// Starts (or restarts) a standby copy from the store. Returns the seq to subscribe after.
    public func startStandby(_ id: MeetingID) async throws(ProtocolError) -> Seq {
        if hosts[id] != nil { throw ProtocolError(.internalError, "meeting \(id) is hosted here; it cannot also be a standby") }
        let recovered = try await recover(id)
        do {
            let log = try MeetingLog(standbyFrom: recovered.snapshot, entries: recovered.entries, history: recovered.history,
                                     window: configuration.resumeWindow)
            standbys[id] = log
            return log.lastSeq
        } catch {
            throw ProtocolError(.internalError, "cannot rebuild a standby copy of \(id): \(error)")
        }
    }

    /// Whether a standby copy of `id` is kept here.
    public func isFollowing(_ id: MeetingID) -> Bool { standbys[id] != nil }

    /// Applies entries the host streamed. False if the copy cannot take them (a gap, or it
    /// was dropped): the follower reloads or stops.
    public func replicate(_ id: MeetingID, _ entries: [LogEntry]) -> Bool {
        // Taken out of the dictionary, the copy is the only owner of its storage, so applying
        // the entries does not first copy the whole meeting (tail, chat, outcomes).
        guard var log = standbys.removeValue(forKey: id) else { return false }
        do {
            try log.replicate(entries)
            standbys[id] = log
            return true
        } catch {
            // Left out: it may hold part of the batch, so it is no copy of the host any more.
            logger.warning("standby copy out of step; reloading", metadata: ["meeting": "\(id)", "error": "\(error)"])
            return false
        }
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
            result = .success(try await build(id, from: promoting ? standbys[id] : nil))
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
            standbys[id] = nil
            hosts[id] = host
            start.yield(host)
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
                                   poisoned: poisoned, clock: clock, logger: logger)
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
