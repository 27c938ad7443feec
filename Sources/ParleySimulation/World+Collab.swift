import ParleyClient
import ParleyCore
import ParleyProtocol
import ParleyServer
import ParleyZone

/// The collab servers' shell, as `CollabRole` and `MeetingHost` do it: orders from the
/// manager, hosting (with ``MeetingHostState``), standby copies, replication.
extension World {
    // MARK: The link to the manager

    mutating func heartbeat(_ server: Int) {
        guard let link = servers[server].link else {
            // No link: connect to the manager the lease names, and register with what it holds.
            guard let manager = leaseHolder else { return }
            let link = nextLink
            nextLink += 1
            servers[server].link = link
            servers[server].fence.linked(to: Self.managerName(manager), term: storeLease!.term)
            servers[server].beats = 0
            linkManager[link] = manager
            linkServer[link] = server
            trace("collab-\(server)", "registers on link \(link) holding \(holdings(server).map { "\($0.meeting) \($0.role.rawValue) \($0.epoch)" })")
            toManager(.register(holdings(server)), link: link, from: server)
            return
        }
        toManager(.load, link: link, from: server)
        servers[server].beats += 1
        if servers[server].beats % 2 == 0 {
            schedule(.leaseCheck(server: server, incarnation: servers[server].incarnation, link: link), after: storeLatency(server: server))
        }
    }

    /// The lease as the store has it: a link it has moved on from is over (a partition may
    /// keep it open and silent), and the server looks for the leader again.
    mutating func leaseChecked(_ lease: ManagerLease?, link: UInt64, at server: Int) {
        guard servers[server].link == link, let linked = servers[server].fence.link else { return }
        let outlived = lease.map { linked.isOutlived(byLeaseOf: $0.holder, term: $0.term, live: $0.expiresAtMs >= now) } ?? true
        guard outlived else { return }
        trace("collab-\(server)", "the manager lease moved on; leaving \(linked.manager)")
        unlink(server)
        send(.linkClosedAtManager(link: link, server: server), on: .up(link))
    }

    mutating func unlink(_ server: Int) {
        servers[server].link = nil
        servers[server].fence.unlinked()
    }

    func holdings(_ server: Int) -> [HeldMeeting] {
        let hosted = servers[server].hosts.filter { !$0.value.stopped }
            .map { HeldMeeting(meeting: $0.key, role: .host, epoch: $0.value.log.epoch) }
        let copies = servers[server].standbys.map { HeldMeeting(meeting: $0.key, role: .standby, epoch: $0.value.epoch) }
        return (hosted + copies).sorted { ($0.meeting, $0.role.rawValue) < ($1.meeting, $1.role.rawValue) }
    }

    mutating func toManager(_ message: Upward, link: UInt64, from server: Int) {
        send(.toManager(link: link, server: server, message), on: .up(link))
    }

    // MARK: Orders

    mutating func carryOut(_ order: Placement.Action, at server: Int) {
        trace("collab-\(server)", "order \(order)")
        switch order {
        case .open(let meeting, _, _), .promote(let meeting, _, _):
            if let host = servers[server].hosts[meeting], !host.stopped {
                if let link = servers[server].link { toManager(.hosting(meeting, host.log.epoch), link: link, from: server) }
                return
            }
            guard servers[server].takingOver[meeting] == nil else { return }
            let promoting = if case .promote = order { true } else { false }
            servers[server].takingOver[meeting] = .some(promoting ? servers[server].standbys[meeting] : nil)
            stopFollowing(meeting, at: server)
            schedule(.takeOver(meeting, server: server, incarnation: servers[server].incarnation, promoting: promoting), after: storeLatency(server: server))
        case .follow(let meeting, _, let hostName):
            guard let host = Self.index(hostName) else { return }
            // A newer order replaces the follower, as in `CollabRole`.
            stopFollowing(meeting, at: server)
            servers[server].followers[meeting] = Follower(host: host, id: nextFollow)
            nextFollow += 1
            follow(meeting, at: server) { $0.start() }
        case .release(let meeting, _):
            stopFollowing(meeting, at: server)
            servers[server].standbys[meeting] = nil
            // Unlisted first: a released host's stop is not one it came to by itself.
            if var state = servers[server].hosts.removeValue(forKey: meeting) {
                perform(state.release(reason: "the manager moved it"), of: meeting, at: server)
            }
        case .answer, .requestServer, .disconnect, .drained:
            break
        }
    }

    /// The store claimed the next epoch for this server and read the log: host the meeting,
    /// from the standby copy caught up with the store, or rebuilt from the store.
    mutating func tookOver(_ meeting: MeetingID, at server: Int, _ epoch: Epoch, _ read: StoreRead, promoting: Bool) {
        let started = servers[server].takingOver.removeValue(forKey: meeting) ?? nil
        var log: MeetingLog
        do {
            if promoting, var copy = started {
                // Only the log after the copy is read (`Store.recover(_:after:)`), not the checkpoint.
                try copy.promote(to: epoch, catchingUp: read.log[min(Int(copy.lastSeq), read.log.count)...])
                log = copy
            } else {
                log = try rebuild(meeting, from: read, epoch: epoch)
            }
        } catch {
            violation("collab-\(server) cannot take \(meeting) over under \(epoch): \(error)")
            if let link = servers[server].link { toManager(.failedToHost(meeting), link: link, from: server) }
            return
        }
        servers[server].standbys[meeting] = nil
        stopFollowing(meeting, at: server)
        servers[server].hosts[meeting] = HostState(log: log, limits: ConnectionLimits(), asksAdmission: false,
                                                   snapshotEveryEntries: options.checkpointEveryEntries)
        report.hostings += 1
        trace("collab-\(server)", "hosts \(meeting) under \(epoch) through seq \(log.committedSeq)")
        if let link = servers[server].link { toManager(.hosting(meeting, epoch), link: link, from: server) }
    }

    // MARK: Standby copies

    /// Feeds the meeting's follower one input and carries out what `StandbyFollower` decides,
    /// as `CollabRole.follow` does.
    mutating func follow(_ meeting: MeetingID, at server: Int, _ input: (inout StandbyFollower) -> [StandbyFollower.Action]) {
        guard var follower = servers[server].followers[meeting] else { return }
        let actions = input(&follower.machine)
        servers[server].followers[meeting] = follower
        let incarnation = servers[server].incarnation
        for action in actions {
            guard let current = servers[server].followers[meeting] else { return }
            switch action {
            case .load:
                schedule(.loadStandby(meeting, server: server, incarnation: incarnation, follow: current.id), after: storeLatency(server: server))
            case .subscribe(let after):
                let subscription = nextFollow
                nextFollow += 1
                servers[server].followers[meeting]!.subscription = subscription
                send(.subscribe(meeting, follower: server, host: current.host, after: after, subscription: subscription),
                     on: .replication(from: server, to: current.host))
            case .closeLink:
                send(.unsubscribe(meeting, follower: server, host: current.host, subscription: current.subscription),
                     on: .replication(from: server, to: current.host))
                servers[server].followers[meeting]!.subscription = 0
            case .wait(let ms):
                schedule(.followerRetry(meeting, server: server, incarnation: incarnation, follow: current.id), after: ms)
            }
        }
    }

    /// The follow order ends (replaced, released, or the meeting hosted here): its link closes.
    mutating func stopFollowing(_ meeting: MeetingID, at server: Int) {
        guard let follower = servers[server].followers.removeValue(forKey: meeting) else { return }
        if follower.subscription != 0 {
            send(.unsubscribe(meeting, follower: server, host: follower.host, subscription: follower.subscription),
                 on: .replication(from: server, to: follower.host))
        }
    }

    /// The store's log, read for a follower: the copy is rebuilt from it (`startStandby`).
    mutating func standbyLoaded(_ meeting: MeetingID, at server: Int, follow: UInt64, _ read: StoreRead) {
        guard servers[server].followers[meeting]?.id == follow else { return }
        guard servers[server].hosts[meeting] == nil else {
            // Hosted here: it cannot also be a standby (MeetingDirectory refuses).
            return self.follow(meeting, at: server) { $0.loadFailed() }
        }
        do {
            let copy = try rebuild(meeting, from: read, epoch: nil)
            servers[server].standbys[meeting] = copy
            self.follow(meeting, at: server) { $0.loaded(through: copy.lastSeq) }
        } catch {
            violation("collab-\(server) cannot rebuild a standby copy of \(meeting) from the store: \(error)")
        }
    }

    /// A standby asks the host for what it lacks, then the live stream. A server that does not
    /// host the meeting closes the link (as `CollabRole.serveStandby` does).
    mutating func subscribe(_ meeting: MeetingID, follower: Int, host: Int, after: Seq, _ subscription: UInt64) {
        guard let state = servers[host].hosts[meeting], !state.stopped else {
            send(.replicaClosed(meeting, follower: follower, host: host, subscription: subscription), on: .replication(from: host, to: follower))
            return
        }
        let start = state.subscription(after: after)
        send(.replica(meeting, follower: follower, host: host, subscription: subscription, start), on: .replication(from: host, to: follower))
        if case .entries = start { servers[host].subscribers[meeting, default: [:]][follower] = subscription }
    }

    mutating func replica(_ meeting: MeetingID, follower: Int, host: Int, _ subscription: UInt64, _ update: ReplicaStart) {
        guard let current = servers[follower].followers[meeting], current.host == host, current.subscription == subscription else { return }
        switch update {
        case .entries(let entries):
            guard var copy = servers[follower].standbys.removeValue(forKey: meeting) else {
                return follow(meeting, at: follower) { $0.notApplied() }
            }
            do {
                try copy.replicate(entries)
                servers[follower].standbys[meeting] = copy
                if let last = entries.last?.seq { follow(meeting, at: follower) { $0.applied(through: last); return [] } }
            } catch {
                // Left out: it may hold part of the batch (as `MeetingDirectory.replicate`).
                trace("collab-\(follower)", "standby copy of \(meeting) does not continue: reload (\(error))")
                follow(meeting, at: follower) { $0.notApplied() }
            }
        case .reload:
            report.standbyReloads += 1
            servers[follower].standbys[meeting] = nil
            follow(meeting, at: follower) { $0.reloadAsked() }
        }
    }

    // MARK: Hosting

    mutating func serverReceives(_ frame: ClientFrame, on key: ConnectionKey, at server: Int) {
        guard let connection = connections[key], connection.open else { return }
        let meeting = clients[connection.client].meeting
        guard let state = servers[server].hosts[meeting], !state.stopped else {
            // Not hosted here (any more): the client asks the locator again.
            sendToClient(.error(ProtocolError(.moved, "meeting \(meeting) is not hosted here", fatal: true)), on: key)
            closeConnection(key, by: .server)
            return
        }
        switch frame {
        case .hello(let token, let resume):
            let joiner = HostState.Joiner(participant: ParticipantID(token), name: token, role: .attendee)
            host(meeting, at: server) { host, now in host.attach(key, joiner, resume: resume, at: now) }
        case .op(let id, let operation):
            host(meeting, at: server) { host, now in host.op(key, id, operation, at: now) }
        case .leave:
            host(meeting, at: server) { host, now in host.leave(key, at: now) }
        case .ping(let nonce):
            sendToClient(.pong(nonce: nonce), on: key)
        case .signal:
            break
        }
    }

    /// Feeds a meeting's host one input and carries out what it returns; then, as the
    /// server's loop does after each batch, commits what was sequenced.
    mutating func host(_ meeting: MeetingID, at server: Int, _ input: (inout HostState, Int64) -> [HostState.Action]) {
        // Taken out while it changes: changed in place in the dictionary, its log would be
        // copied whole (the dictionary still holding the old one) at every input.
        guard var state = servers[server].hosts.removeValue(forKey: meeting) else { return }
        // The host stamps what it sequences with its wall clock, which may have jumped.
        let actions = input(&state, now + servers[server].wallClockOffsetMs)
        servers[server].hosts[meeting] = state
        perform(actions, of: meeting, at: server)
        if var state = servers[server].hosts.removeValue(forKey: meeting) {
            let flush = state.stopped ? [] : state.flush()
            servers[server].hosts[meeting] = state
            perform(flush, of: meeting, at: server)
        }
        // As `HostLoop` does after each turn: a due checkpoint goes to the store beside the loop.
        if var state = servers[server].hosts.removeValue(forKey: meeting) {
            if !state.stopped, var snapshot = state.checkpointDue() {
                state.checkpointQueued(snapshot.seq)
                // Broken on purpose: the state after seq N, named as the state after N - 1.
                if options.brokenRule == .checkpointOneSeqEarly { snapshot.seq -= 1 }
                trace("collab-\(server)", "checkpoint \(meeting) at seq \(snapshot.seq)")
                schedule(.storeCheckpoint(meeting, server: server, snapshot), after: storeLatency(server: server))
            }
            servers[server].hosts[meeting] = state
        }
    }

    mutating func perform(_ actions: [HostState.Action], of meeting: MeetingID, at server: Int) {
        for action in actions {
            switch action {
            case .send(let key, let frame):
                sendToClient(frame, on: key)
            case .fail(let key, let error):
                sendToClient(.error(error), on: key)
                if error.fatal { closeConnection(key, by: .server) }
            case .welcome(let key, let participant, let welcome, let replay):
                sendToClient(.welcome(welcome), on: key)
                // Broken on purpose: the replay starts one entry late.
                let replay = options.brokenRule == .resumeFromWrongSeq ? replay.dropFirst() : replay
                for entry in replay { sendToClient(.event(DeliveredEntry(entry, for: participant)), on: key) }
            case .close(let key):
                closeConnection(key, by: .server)
            case .askAdmission(let key, _):
                host(meeting, at: server) { host, now in host.admission(key, .admit, at: now) }
            case .commit(let entries):
                let epoch = servers[server].hosts[meeting]!.log.epoch
                trace("collab-\(server)", "commit \(meeting) \(entries.map(\.seq)) under \(epoch)")
                schedule(.storeApply(meeting, server: server, incarnation: servers[server].incarnation, entries, epoch), after: storeLatency(server: server))
                if options.brokenRule == .ackBeforeCommit {
                    // Broken on purpose: acknowledged as if stored, before the store has it.
                    host(meeting, at: server) { host, now in host.committed(at: now) }
                }
            case .deliver(let entries, let recipients, let acks):
                for entry in entries {
                    for (key, participant) in recipients { sendToClient(.event(DeliveredEntry(entry, for: participant)), on: key) }
                    for (key, id) in acks[entry.seq] ?? [] { sendToClient(.ack(id: id, epoch: entry.epoch, seq: entry.seq), on: key) }
                }
            case .notify:
                break  // no edges in the simulated zone yet: every client attaches to its host
            case .replicate(let entries):
                for (follower, subscription) in (servers[server].subscribers[meeting] ?? [:]).sorted(by: { $0.key < $1.key }) {
                    send(.replica(meeting, follower: follower, host: server, subscription: subscription, .entries(entries)),
                         on: .replication(from: server, to: follower))
                }
            case .relay, .attendance, .finalCheckpoint, .log:
                break
            case .stop(let closing):
                trace("collab-\(server)", "host of \(meeting) stopped")
                for key in closing { closeConnection(key, by: .server) }
                // Stopped by itself (still listed): the manager opens the meeting again, as
                // `CollabRole` reports it (MeetingDirectory.stoppedByThemselves).
                if servers[server].hosts.removeValue(forKey: meeting) != nil, let link = servers[server].link {
                    toManager(.failedToHost(meeting), link: link, from: server)
                }
                // Its standbys' links close: they subscribe again now and then (the server
                // closes at once), until the manager tells them where the meeting went.
                for (follower, subscription) in (servers[server].subscribers.removeValue(forKey: meeting) ?? [:]).sorted(by: { $0.key < $1.key }) {
                    send(.replicaClosed(meeting, follower: follower, host: server, subscription: subscription),
                         on: .replication(from: server, to: follower))
                }
            }
        }
    }

    // MARK: The store

    /// A checkpoint is refused as the real stores refuse it (`StoredForm.checkSnapshot`): from
    /// a fenced epoch, or beyond the stored log. One they would take must be the meeting the
    /// store's log rebuilds through its seq; the newest by seq is kept.
    mutating func storeCheckpoint(_ meeting: MeetingID, from server: Int, _ snapshot: Snapshot) {
        let log = stored[meeting]!
        guard snapshot.epoch >= storeEpoch[meeting]! else {
            return trace("store", "checkpoint of \(meeting) at seq \(snapshot.seq) under \(snapshot.epoch): fenced")
        }
        guard Int(snapshot.seq) <= log.count else {
            return violation("collab-\(server) checkpointed \(meeting) at seq \(snapshot.seq), beyond the \(log.count) entries stored")
        }
        let replayed = try? MeetingLog(standbyFrom: emptyLog(meeting).snapshot(), entries: Array(log.prefix(Int(snapshot.seq))),
                                       window: options.resumeWindow)
        if replayed?.meeting != snapshot.meeting {
            return violation("collab-\(server)'s checkpoint of \(meeting) at seq \(snapshot.seq) is not the stored log replayed to there")
        }
        trace("store", "checkpoint of \(meeting) at seq \(snapshot.seq) under \(snapshot.epoch)")
        report.checkpointsStored += 1
        if snapshot.seq >= checkpoints[meeting]?.seq ?? 0 { checkpoints[meeting] = snapshot }
    }

    mutating func storeApply(_ meeting: MeetingID, server: Int, incarnation: Int, _ entries: [LogEntry], _ epoch: Epoch) {
        let result: CommitResult
        let current = storeEpoch[meeting]!
        if commitsToFail > 0 {
            commitsToFail -= 1
            result = .failed
            report.faults["commit failed", default: 0] += 1
        } else if epoch < current, options.brokenRule != .skipEpochCheck {
            result = .fenced(current)
        } else {
            let committer = "collab-\(server) incarnation \(incarnation)"
            let key = "\(meeting) \(epoch)"
            if let other = committers[key], other != committer {
                violation("two hosts committed \(meeting) under \(epoch): \(other) and \(committer)")
            }
            committers[key] = committer
            for entry in entries {
                let count = Seq(stored[meeting]!.count)
                if entry.seq <= count {
                    violation("\(meeting) seq \(entry.seq) stored twice: \(stored[meeting]![Int(entry.seq) - 1].epoch) then \(entry.epoch)")
                } else if entry.seq != count + 1 {
                    violation("gap in the store: \(meeting) seq \(entry.seq) after \(count)")
                } else {
                    stored[meeting]!.append(entry)
                }
            }
            result = .stored
        }
        trace("store", "\(meeting) \(entries.map(\.seq)) under \(epoch): \(result)")
        schedule(.commitResult(meeting, server: server, incarnation: incarnation, result), after: storeLatency(server: server))
    }
}
