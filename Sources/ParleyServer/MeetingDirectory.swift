import Logging
import ParleyCore
import ParleyProtocol
import ParleyStore
import ServiceLifecycle

/// The meetings this server hosts. A meeting is loaded from the store on first use, under a
/// new epoch, and its host loop runs inside ``run()``'s task group, so every host is owned
/// and shut down with the server.
actor MeetingDirectory: Service {
    private let store: any Store
    private let commitLog: GroupCommitLog
    private let configuration: ServerConfiguration
    private let clock: @Sendable () -> Millis
    private let logger: Logger
    private var hosts: [MeetingID: MeetingHost] = [:]
    private var loading: [MeetingID: [CheckedContinuation<MeetingHost, any Error>]] = [:]
    private var accepting = true
    private let started: AsyncStream<MeetingHost>
    private let start: AsyncStream<MeetingHost>.Continuation

    init(store: any Store, commitLog: GroupCommitLog, configuration: ServerConfiguration,
         clock: @escaping @Sendable () -> Millis, logger: Logger) {
        self.store = store
        self.commitLog = commitLog
        self.configuration = configuration
        self.clock = clock
        self.logger = logger
        (started, start) = AsyncStream.makeStream()
    }

    var hostedCount: Int { hosts.count }

    /// Runs every host loop until graceful shutdown, then lets each host commit and
    /// checkpoint before returning.
    func run() async throws {
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
        if hosts[host.id] === host { hosts[host.id] = nil }
        logger.info("meeting unloaded", metadata: ["meeting": "\(host.id)"])
    }

    /// The host of `id`, loading the meeting from the store if it is not running yet.
    func host(for id: MeetingID) async throws(ProtocolError) -> MeetingHost {
        guard accepting else { throw ProtocolError(.serverBusy, "the server is shutting down; reconnect shortly", fatal: true) }
        if let host = hosts[id] { return host }
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
        do {
            result = .success(try await load(id))
        } catch {
            result = .failure(error)
        }
        let waiters = loading.removeValue(forKey: id) ?? []
        switch result {
        case .success(let host):
            hosts[id] = host
            start.yield(host)
            for waiter in waiters { waiter.resume(returning: host) }
            return host
        case .failure(let error):
            for waiter in waiters { waiter.resume(throwing: error) }
            throw error
        }
    }

    /// Rebuilds the meeting from its newest good checkpoint plus the log, and fences every
    /// earlier host by moving to a new epoch before accepting anything.
    private func load(_ id: MeetingID) async throws(ProtocolError) -> MeetingHost {
        let recovered: RecoveredMeeting
        do {
            guard try await store.meeting(id) != nil else {
                throw ProtocolError(.unknownMeeting, "there is no meeting \(id)", fatal: true)
            }
            recovered = try await store.recover(id, historyLimit: configuration.resumeWindow.minEntries)
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
        let newest = max(recovered.epoch, recovered.entries.last?.epoch ?? Epoch(0), snapshot.epoch)
        let epoch = newest.next
        do {
            try await store.advanceEpoch(id, to: epoch)
            let log = try MeetingLog(recovering: snapshot, entries: recovered.entries, history: recovered.history,
                                     epoch: epoch, window: configuration.resumeWindow)
            logger.info("meeting loaded", metadata: [
                "meeting": "\(id)", "epoch": "\(epoch)", "snapshot_seq": "\(snapshot.seq)",
                "replayed": "\(recovered.entries.count)", "last_seq": "\(log.lastSeq)",
            ])
            return MeetingHost(log: log, store: store, commitLog: commitLog, configuration: configuration,
                               clock: clock, logger: logger)
        } catch {
            logger.error("cannot rebuild meeting", metadata: ["meeting": "\(id)", "error": "\(error)"])
            throw ProtocolError(.internalError, "the meeting could not be rebuilt; see the server log", fatal: true)
        }
    }
}
