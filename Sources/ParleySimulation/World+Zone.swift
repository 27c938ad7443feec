import ParleyClient
import ParleyCore
import ParleyProtocol
import ParleyServer
import ParleyZone

/// The manager's shell (as `ManagerRole` does it, around `Placement`), the clients' shell
/// (as `MeetingClient` does it, around `ClientSession`), the faults and the checks.
extension World {
    // MARK: The managers

    mutating func managerTick(_ manager: Int) {
        electionDid(managers[manager].election.tick(nowMs: now), at: manager)
        if managers[manager].placement != nil {
            placementDid(managers[manager].placement!.tick(nowMs: now), at: manager)
        }
    }

    /// The election's actions, as `ManagerRole.elect` carries them out.
    mutating func electionDid(_ actions: [ManagerElection.Action], at manager: Int) {
        let incarnation = managers[manager].incarnation
        for action in actions {
            switch action {
            case .read:
                schedule(.leaseRead(manager: manager, incarnation: incarnation), after: storeLatency(manager: manager))
            case .claim(let expected, let new):
                schedule(.leaseClaim(manager: manager, incarnation: incarnation, expected: expected, new: new), after: storeLatency(manager: manager))
            case .lead(let term):
                trace("manager-\(manager)", "leads under term \(term)")
                if let other = leaders[term], other != manager {
                    violation("manager-\(other) and manager-\(manager) both led under term \(term)")
                }
                leaders[term] = manager
                managers[manager].term = term
                managers[manager].placement = Placement(tuning: placementTuning)
            case .stepDown(let reason):
                trace("manager-\(manager)", "steps down: \(reason)")
                stepDown(manager)
            }
        }
    }

    /// Stops leading: questions in flight are answered unavailable, every link is closed,
    /// and the servers find the next leader through the lease.
    mutating func stepDown(_ manager: Int) {
        managers[manager].placement = nil
        for key in managers[manager].locates.values.sorted() { schedule(.located(key, nil), after: delay()) }
        managers[manager].locates = [:]
        for (server, link) in managers[manager].links.sorted(by: { $0.key < $1.key }) { closeLink(link, server: server, at: manager) }
        managers[manager].links = [:]
    }

    /// The store's compare-and-set of the manager lease, timed on its own clock.
    mutating func leaseClaim(manager: Int, incarnation: Int, expected: ManagerLease?, new: ManagerLease) {
        let matches: Bool
        switch (storeLease, expected) {
        case (nil, nil): matches = true
        case (let current?, let expected?): matches = current.holder == expected.holder && current.term == expected.term
        default: matches = false
        }
        var won: ManagerLease?
        if matches || options.brokenRule == .twoManagersOneTerm {
            var granted = new
            granted.expiresAtMs = now + ManagerElection.Timing().leaseMs
            storeLease = granted
            won = new
        }
        trace("store", "lease claim by manager-\(manager) for term \(new.term): \(won == nil ? "refused" : "granted")")
        schedule(.leaseClaimResult(manager: manager, incarnation: incarnation, won), after: storeLatency(manager: manager))
    }

    mutating func managerReceives(_ message: Upward, link: UInt64, from server: Int, at manager: Int) {
        let name = Self.name(server)
        if case .register(let holding) = message {
            // Only a leader takes links (as ManagerRole refuses them otherwise).
            guard managers[manager].placement != nil else {
                closeLink(link, server: server, at: manager)
                return
            }
            managers[manager].openLinks.insert(link)
            if let old = managers[manager].links[server], old != link {
                closeLink(old, server: server, at: manager)
                placementDid(managers[manager].placement!.lost(name, reason: .registeredAgain, nowMs: now), at: manager)
            }
            managers[manager].links[server] = link
            placementDid(managers[manager].placement!.register(name, at: Self.address(server), holding: holding, nowMs: now), at: manager)
            return
        }
        // A link the manager closed, or one that never registered with it.
        guard managers[manager].placement != nil, managers[manager].openLinks.contains(link),
              managers[manager].links[server] == link else { return }
        switch message {
        case .register:
            break
        case .load:
            placementDid(managers[manager].placement!.heard(name, load: ServerLoad(), nowMs: now), at: manager)
        case .hosting(let meeting, let epoch):
            placementDid(managers[manager].placement!.hosting(meeting, on: name, epoch: epoch), at: manager)
        case .failedToHost(let meeting):
            placementDid(managers[manager].placement!.failedToHost(meeting, on: name, nowMs: now), at: manager)
        }
    }

    mutating func managerLinkClosed(_ link: UInt64, server: Int, at manager: Int, reason: String) {
        guard managers[manager].openLinks.remove(link) != nil else { return }
        if managers[manager].links[server] == link {
            managers[manager].links[server] = nil
            if managers[manager].placement != nil {
                placementDid(managers[manager].placement!.lost(Self.name(server), reason: .linkClosed(reason), nowMs: now), at: manager)
            }
        }
    }

    /// The manager closes a link: the server learns of it after a delay.
    mutating func closeLink(_ link: UInt64, server: Int, at manager: Int) {
        managers[manager].openLinks.remove(link)
        send(.linkClosedAtServer(link: link, server: server), on: .down(link))
    }

    mutating func placementDid(_ actions: [Placement.Action], at manager: Int) {
        let term = managers[manager].term
        for action in actions {
            trace("manager-\(manager)", "\(action)")
            switch action {
            case .open(_, let on, _), .promote(_, let on, _), .follow(_, let on, _), .release(_, let on):
                guard let server = Self.index(on), let link = managers[manager].links[server] else { continue }
                send(.toCollab(link: link, server: server, term: term, action), on: .down(link))
            case .answer(let request, let answer):
                guard let key = managers[manager].locates.removeValue(forKey: request) else { continue }
                schedule(.located(key, answer), after: delay())
            case .disconnect(let on, _):
                guard let server = Self.index(on), let link = managers[manager].links.removeValue(forKey: server) else { continue }
                closeLink(link, server: server, at: manager)
            case .requestServer, .drained:
                break
            }
        }
    }

    /// The manager that holds the lease now, as a process reading the store finds it.
    var leaseHolder: Int? {
        guard let lease = storeLease, lease.expiresAtMs >= now, let manager = Self.managerIndex(lease.holder),
              managers[manager].up else { return nil }
        return manager
    }

    // MARK: Clients

    mutating func perform(client index: Int, _ actions: [ClientSession.Action]) {
        for action in actions {
            switch action {
            case .connect(let id, let transport):
                let key = nextKey
                nextKey += 1
                keys[index, default: [:]][id] = key
                connections[key] = Connection(client: index, id: id, server: nil, transport: transport)
                // The web front asks the leading manager where the meeting is.
                schedule(.locateAtManager(key), after: delay())
            case .send(let frame, let id):
                guard let key = keys[index]?[id], let connection = connections[key], connection.open, connection.server != nil else { continue }
                if connection.transport == .longPolling { pollQueue(frame, on: key) } else { send(.toServer(key, frame), on: .toServer(key)) }
            case .disconnect(let id, let cause):
                // The SDK drops a connection whose server broke the protocol (a gap, a
                // repeat, an epoch going back): a correct server never makes it.
                if case .protocolFault(let fault) = cause { violation("client \(index) saw the server break the protocol: \(fault)") }
                if let key = keys[index]?[id] { closeConnection(key, by: .client) }
            case .scheduleReconnect(let afterMs):
                schedule(.clientBackoff(index), after: Int64(afterMs))
            case .complete(let id, let outcome):
                if case .acked(let ack) = outcome {
                    clients[index].acked[id] = ack
                    report.opsAcked += 1
                    trace("client \(index)", "acked \(id) at seq \(ack.seq) \(ack.epoch)")
                }
            case .emit(.entry(let entry)):
                if entry.seq != clients[index].lastApplied + 1 {
                    violation("client \(index) applied \(clients[index].meeting) seq \(entry.seq) after \(clients[index].lastApplied)")
                }
                clients[index].lastApplied = entry.seq
            case .emit(.welcome(let mode)):
                trace("client \(index)", "welcome (\(mode.rawValue)) at seq \(clients[index].session.lastSeq)")
                if mode == .snapshot {
                    if clients[index].lastApplied > 0 { report.resumesFromSnapshot += 1 }
                    clients[index].lastApplied = clients[index].session.lastSeq
                }
            case .emit, .renewToken, .probeWebSocket, .finished:
                break
            }
        }
    }

    mutating func locate(_ key: ConnectionKey) {
        guard let connection = connections[key], connection.open else { return }
        guard let manager = leaseHolder else {
            schedule(.located(key, nil), after: delay())
            return
        }
        if let heal = managerPartitions[manager], heal > now {
            // The web front's call times out: the client is told to retry.
            schedule(.located(key, nil), after: 1_000)
            return
        }
        atManager(manager, .locateAtManager(key)) { world in
            guard world.managers[manager].placement != nil else {
                world.schedule(.located(key, nil), after: world.delay())
                return
            }
            world.managers[manager].nextRequest += 1
            let request = LocateRequest(world.managers[manager].nextRequest)
            world.managers[manager].locates[request] = key
            world.placementDid(world.managers[manager].placement!.locate(world.clients[connection.client].meeting, request: request,
                                                                         nowMs: world.now), at: manager)
        }
    }

    mutating func located(_ key: ConnectionKey, _ answer: Placement.LocateAnswer?) {
        guard var connection = connections[key], connection.open else { return }
        guard case .at(let name, _)? = answer, let server = Self.index(name), servers[server].up else {
            closeConnection(key, by: .network)                     // unavailable: the client backs off
            return
        }
        connection.server = server
        connections[key] = connection
        trace("client \(connection.client)", "connection \(key) to collab-\(server)")
        // The handshake crosses the network too: a partition holds it until it heals.
        schedule(.opened(key), at: max(now, heals(.toServer(key)) ?? now) + delay())
    }

    /// A server sends a frame: on the WebSocket, or into the long-poll session's outbox.
    mutating func sendToClient(_ frame: ServerFrame, on key: ConnectionKey) {
        guard let connection = connections[key] else { return }
        if connection.transport == .longPolling { return pollEnqueue(frame, on: key) }
        guard connection.open else { return }
        send(.toClient(key, frame), on: .toClient(key))
    }

    /// A WebSocket closes, whoever closes it: each side learns of it after the frames
    /// already on their way. A long-poll session ends as `closePoll` says.
    mutating func closeConnection(_ key: ConnectionKey, by closer: Closer) {
        guard var connection = connections[key] else { return }
        if connection.transport == .longPolling { return closePoll(key, by: closer) }
        guard connection.open else { return }
        connection.open = false
        connections[key] = connection
        send(.closedToClient(key), on: .toClient(key))
        if connection.server != nil { send(.closedToServer(key), on: .toServer(key)) }
    }

    // MARK: Faults

    mutating func inject(_ fault: PlannedFault) {
        let server = fault.server, manager = fault.manager, span = fault.span
        switch fault.kind {
        case .crash:
            guard servers[server].up, servers.filter(\.up).count > 1 else { return }
            report.faults["crash", default: 0] += 1
            crash(server)
        case .pause where fault.freezesMachine:
            guard !supervisors[server].paused else { return }
            freeze(server, for: span)
        case .pause:
            guard servers[server].up, !servers[server].paused else { return }
            servers[server].paused = true
            report.faults["pause", default: 0] += 1
            trace("collab-\(server)", "paused")
            schedule(.wake(server), after: span)
        case .managerCrash:
            guard managers[manager].up else { return }
            report.faults["manager crash", default: 0] += 1
            crashManager(manager)
        case .managerPause where fault.freezesMachine:
            guard !supervisors[manager].paused else { return }
            freeze(manager, for: span)
        case .managerPause:
            guard managers[manager].up, !managers[manager].paused else { return }
            report.faults["manager pause", default: 0] += 1
            trace("manager-\(manager)", "paused")
            managers[manager].paused = true
            schedule(.managerWake(manager), after: span)
        case .zoneLinkDropped:
            guard let link = servers[server].link else { return }
            report.faults["zone link dropped", default: 0] += 1
            trace("net", "zone link \(link) of collab-\(server) dropped")
            unlink(server)
            cut(.up(link), at: now + Int64.random(in: 0...30, using: &rng))
            cut(.down(link), at: now + Int64.random(in: 0...30, using: &rng))
            send(.linkClosedAtManager(link: link, server: server), on: .up(link))
        case .serverPartition:
            guard (serverPartitions[server]?.until ?? 0) <= now else { return }
            let extent = fault.partitionExtent
            report.faults["partition of a server from \(extent == .zone ? "the zone" : "everything")", default: 0] += 1
            trace("net", "collab-\(server) cut off from \(extent) for \(span) ms")
            serverPartitions[server] = Partition(until: now + span, extent: extent)
        case .managerPartition:
            guard (managerPartitions[manager] ?? 0) <= now else { return }
            report.faults["partition of a manager", default: 0] += 1
            trace("net", "manager-\(manager) cut off for \(span) ms")
            managerPartitions[manager] = now + span
        case .wallClockJump:
            report.faults["wall clock jump", default: 0] += 1
            trace("collab-\(server)", "wall clock jumps \(fault.clockJumpMs) ms")
            servers[server].wallClockOffsetMs += fault.clockJumpMs
        case .slowStore:
            guard slowStoreUntil <= now else { return }
            report.faults["slow store", default: 0] += 1
            trace("store", "slow for \(span) ms")
            slowStoreUntil = now + span
        case .failedCommits:
            trace("store", "fails the next \(fault.failedCommits) commits")
            commitsToFail += fault.failedCommits
        case .connectionDropped:
            let open = connections.keys.sorted().filter { connections[$0]!.open }
            guard !open.isEmpty else { return }
            let key = open[Int(fault.detail % UInt64(open.count))]
            report.faults["connection dropped", default: 0] += 1
            trace("net", "connection \(key) dropped")
            cut(.toClient(key), at: now + Int64.random(in: 0...30, using: &rng))
            cut(.toServer(key), at: now + Int64.random(in: 0...30, using: &rng))
            closeConnection(key, by: .network)
        case .requestRetried:
            let polling = connections.keys.sorted().filter { connections[$0]!.open && connections[$0]!.transport == .longPolling }
            guard !polling.isEmpty else { return }
            let key = polling[Int(fault.detail % UInt64(polling.count))]
            trace("net", "the next \(fault.lostAnswers) answers on long-poll connection \(key) are lost, their requests sent again")
            connections[key]!.poll.lostAnswers += fault.lostAnswers
        }
    }

    /// A manager process dies (its supervisor restarts it).
    mutating func crashManager(_ manager: Int) {
        trace("manager-\(manager)", "crashed")
        for (server, link) in managers[manager].links.sorted(by: { $0.key < $1.key }) {
            cut(.down(link), at: now + Int64.random(in: 0...20, using: &rng))
            send(.linkClosedAtServer(link: link, server: server), on: .down(link))
        }
        managers[manager].up = false
        managers[manager].incarnation += 1
        schedule(.processExited(machine: manager, Self.managerName(manager), pid: managers[manager].pid), after: 1)
    }

    /// A collab server process dies, holding nothing (its supervisor restarts it).
    mutating func crash(_ server: Int) {
        trace("collab-\(server)", "crashed")
        // What it had written may or may not leave the machine.
        let lostAfter = now + Int64.random(in: 0...20, using: &rng)
        if let link = servers[server].link {
            cut(.up(link), at: lostAfter)
            send(.linkClosedAtManager(link: link, server: server), on: .up(link))
        }
        for other in servers.indices where other != server { cut(.replication(from: server, to: other), at: lostAfter) }
        // Its replication links close: its hosts' standbys and the hosts it followed see it.
        for (meeting, subscribers) in servers[server].subscribers.sorted(by: { $0.key < $1.key }) {
            for (follower, subscription) in subscribers.sorted(by: { $0.key < $1.key }) {
                send(.replicaClosed(meeting, follower: follower, host: server, subscription: subscription), on: .replication(from: server, to: follower))
            }
        }
        for (meeting, follower) in servers[server].followers.sorted(by: { $0.key < $1.key }) where follower.subscription != 0 {
            send(.unsubscribe(meeting, follower: server, host: follower.host, subscription: follower.subscription),
                 on: .replication(from: server, to: follower.host))
        }
        let incarnation = servers[server].incarnation + 1
        schedule(.processExited(machine: server, Self.name(server), pid: servers[server].pid), after: 1)
        servers[server] = Server(up: false, incarnation: incarnation)
        for key in connections.keys.sorted() where connections[key]!.server == server {
            cut(.toClient(key), at: lostAfter)
            closeConnection(key, by: .network)
        }
    }

    mutating func wake(_ server: Int) {
        wake(\.servers[server], "collab-\(server)")
    }

    // MARK: Checks at the end

    mutating func checkAtEnd() {
        // Liveness: the placement the manager acts on is what the servers hold.
        for mismatch in placementMismatches() { violation("\(options.settleMs) ms after the faults stopped: \(mismatch)") }
        for (index, client) in clients.enumerated() {
            let log = stored[client.meeting]!
            // Every acknowledged op is in the store, once, at its acknowledged seq.
            for (id, ack) in client.acked.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
                guard ack.seq >= 1, Int(ack.seq) <= log.count else {
                    violation("client \(index)'s op \(id), acked at seq \(ack.seq), is not in the store")
                    continue
                }
                let entry = log[Int(ack.seq) - 1]
                if entry.opID != id || entry.issuer != .participant(client.participant) {
                    violation("client \(index)'s op \(id), acked at seq \(ack.seq), is not the entry stored there")
                }
            }
            var seen: [OpID: Seq] = [:]
            for entry in log where entry.issuer == .participant(client.participant) {
                guard let id = entry.opID else { continue }
                if let first = seen[id] { violation("client \(index)'s op \(id) is stored twice: at seq \(first) and \(entry.seq)") }
                seen[id] = entry.seq
            }
            // Liveness: after the faults stop, every client is live again with every op answered.
            guard case .live = client.session.phase else {
                violation("client \(index) is not live \(options.settleMs) ms after the faults stopped (\(client.session.phase))")
                continue
            }
            if !client.session.unacked.isEmpty {
                violation("client \(index) still waits for \(client.session.unacked.count) ops")
            }
        }
        for meeting in meetingIDs {
            let log = stored[meeting]!
            for (index, server) in servers.enumerated() where server.up {
                // Every copy holds what the store holds, at the same seqs.
                if let copy = server.standbys[meeting] {
                    for entry in copy.tail where Int(entry.seq) > log.count || log[Int(entry.seq) - 1] != entry {
                        violation("collab-\(index)'s standby copy of \(meeting) differs from the store at seq \(entry.seq)")
                        break
                    }
                }
                // The live host's state is what the store rebuilds: from its newest
                // checkpoint and the log after it, and from the whole log.
                if let host = server.hosts[meeting], !host.stopped, !host.hasUncommitted, host.log.epoch == storeEpoch[meeting]! {
                    let next = Epoch(storeEpoch[meeting]!.rawValue + 1)
                    let fromCheckpoint = try? rebuild(meeting, from: storeRead(meeting), epoch: next)
                    if fromCheckpoint?.meeting != host.log.meeting {
                        violation("\(meeting) rebuilt from the store's checkpoint at seq \(checkpoints[meeting]?.seq ?? 0) and the log after it differs from collab-\(index)'s host")
                    }
                    let fromLog = try? rebuild(meeting, from: StoreRead(checkpoint: nil, log: log), epoch: next)
                    if fromLog?.meeting != host.log.meeting {
                        violation("\(meeting) rebuilt from the store's whole log differs from collab-\(index)'s host")
                    }
                }
            }
        }
    }
}
