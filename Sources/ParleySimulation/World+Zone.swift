import ParleyClient
import ParleyCore
import ParleyProtocol
import ParleyServer
import ParleyZone

/// The manager's shell (as `ManagerRole` does it, around `Placement`), the clients' shell
/// (as `MeetingClient` does it, around `ClientSession`), the faults and the checks.
extension World {
    // MARK: The manager

    mutating func managerReceives(_ message: Upward, link: UInt64, from server: Int) {
        guard manager.up else { return }
        let name = Self.name(server)
        if case .register(let holding) = message {
            manager.openLinks.insert(link)
            if let old = manager.links[server], old != link {
                closeLink(old, server: server)
                placementDid(manager.placement.lost(name, reason: "registered again", nowMs: now))
            }
            manager.links[server] = link
            placementDid(manager.placement.register(name, at: Self.address(server), holding: holding, nowMs: now))
            return
        }
        // A link the manager closed, or one that never registered with this manager.
        guard manager.openLinks.contains(link), manager.links[server] == link else { return }
        switch message {
        case .register:
            break
        case .load:
            placementDid(manager.placement.heard(name, load: ServerLoad(), nowMs: now))
        case .hosting(let meeting, let epoch):
            placementDid(manager.placement.hosting(meeting, on: name, epoch: epoch))
        case .failedToHost(let meeting):
            placementDid(manager.placement.failedToHost(meeting, on: name, nowMs: now))
        }
    }

    mutating func managerLinkClosed(_ link: UInt64, server: Int, reason: String) {
        guard manager.up, manager.openLinks.remove(link) != nil else { return }
        if manager.links[server] == link {
            manager.links[server] = nil
            placementDid(manager.placement.lost(Self.name(server), reason: reason, nowMs: now))
        }
    }

    /// The manager closes a link: the server learns of it after a delay.
    mutating func closeLink(_ link: UInt64, server: Int) {
        manager.openLinks.remove(link)
        send(.linkClosedAtServer(link: link, server: server), on: "down \(link)")
    }

    mutating func placementDid(_ actions: [Placement.Action]) {
        for action in actions {
            trace("manager", "\(action)")
            switch action {
            case .open(_, let on, _), .promote(_, let on, _), .follow(_, let on, _), .release(_, let on):
                guard let server = Self.index(on), let link = manager.links[server] else { continue }
                send(.toCollab(link: link, server: server, action), on: "down \(link)")
            case .answer(let request, let answer):
                guard let key = manager.locates.removeValue(forKey: request) else { continue }
                schedule(.located(key, answer), after: delay())
            case .disconnect(let on, _):
                guard let server = Self.index(on), let link = manager.links.removeValue(forKey: server) else { continue }
                closeLink(link, server: server)
            case .requestServer, .drained:
                break
            }
        }
    }

    // MARK: Clients

    mutating func perform(client index: Int, _ actions: [ClientSession.Action]) {
        for action in actions {
            switch action {
            case .connect(let id, _):
                let key = nextKey
                nextKey += 1
                keys[index, default: [:]][id] = key
                connections[key] = Connection(client: index, id: id, server: nil)
                // The web front asks the manager where the meeting is.
                if manager.up {
                    schedule(.locateAtManager(key), after: delay())
                } else {
                    schedule(.located(key, nil), after: delay())
                }
            case .send(let frame, let id):
                guard let key = keys[index]?[id], let connection = connections[key], connection.open, connection.server != nil else { continue }
                send(.toServer(key, frame), on: "c>s \(key)")
            case .disconnect(let id, let cause):
                // The SDK drops a connection whose server broke the protocol (a gap, a
                // repeat, an epoch going back): a correct server never makes it.
                if case .protocolFault(let fault) = cause { violation("client \(index) saw the server break the protocol: \(fault)") }
                if let key = keys[index]?[id] { closeConnection(key) }
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
                if mode == .snapshot { clients[index].lastApplied = clients[index].session.lastSeq }
            case .emit, .renewToken, .probeWebSocket, .finished:
                break
            }
        }
    }

    mutating func locate(_ key: ConnectionKey) {
        guard let connection = connections[key], connection.open else { return }
        guard manager.up else {
            schedule(.located(key, nil), after: delay())
            return
        }
        manager.nextRequest += 1
        let request = LocateRequest(manager.nextRequest)
        manager.locates[request] = key
        placementDid(manager.placement.locate(clients[connection.client].meeting, request: request, nowMs: now))
    }

    mutating func located(_ key: ConnectionKey, _ answer: Placement.LocateAnswer?) {
        guard var connection = connections[key], connection.open else { return }
        guard case .at(let name, _)? = answer, let server = Self.index(name), servers[server].up else {
            closeConnection(key)                                   // unavailable: the client backs off
            return
        }
        connection.server = server
        connections[key] = connection
        trace("client \(connection.client)", "connection \(key) to collab-\(server)")
        schedule(.opened(key), after: delay())
    }

    mutating func sendToClient(_ frame: ServerFrame, on key: ConnectionKey) {
        guard let connection = connections[key], connection.open else { return }
        send(.toClient(key, frame), on: "s>c \(key)")
    }

    /// Either side closes: each learns of it after the frames already on their way.
    mutating func closeConnection(_ key: ConnectionKey) {
        guard var connection = connections[key], connection.open else { return }
        connection.open = false
        connections[key] = connection
        send(.closedToClient(key), on: "s>c \(key)")
        if connection.server != nil { send(.closedToServer(key), on: "c>s \(key)") }
    }

    // MARK: Faults

    mutating func injectFault() {
        let roll = Int.random(in: 0..<100, using: &rng)
        let server = Int.random(in: 0..<servers.count, using: &rng)
        switch roll {
        case 0..<25:
            guard servers[server].up, servers.filter(\.up).count > 1 else { return }
            crash(server)
            schedule(.restart(server), after: Int64.random(in: 300...3_000, using: &rng))
        case 25..<50:
            guard servers[server].up, !servers[server].paused else { return }
            servers[server].paused = true
            servers[server].downSinceMs = now
            report.faults["pause", default: 0] += 1
            trace("collab-\(server)", "paused")
            schedule(.wake(server), after: Int64.random(in: 100...3_000, using: &rng))
        case 50..<60:
            guard manager.up else { return }
            report.faults["manager crash", default: 0] += 1
            trace("manager", "crashed")
            for (server, link) in manager.links.sorted(by: { $0.key < $1.key }) { closeLink(link, server: server) }
            manager.up = false
            schedule(.managerRestart, after: Int64.random(in: 200...2_000, using: &rng))
        case 60..<70:
            guard let link = servers[server].link else { return }
            report.faults["zone link dropped", default: 0] += 1
            trace("net", "zone link \(link) of collab-\(server) dropped")
            servers[server].link = nil
            send(.linkClosedAtManager(link: link, server: server), on: "up \(link)")
        default:
            let open = connections.keys.sorted().filter { connections[$0]!.open }
            guard !open.isEmpty else { return }
            let key = open[Int.random(in: 0..<open.count, using: &rng)]
            report.faults["connection dropped", default: 0] += 1
            trace("net", "connection \(key) dropped")
            closeConnection(key)
        }
    }

    mutating func crash(_ server: Int) {
        report.faults["crash", default: 0] += 1
        trace("collab-\(server)", "crashed")
        if let link = servers[server].link { send(.linkClosedAtManager(link: link, server: server), on: "up \(link)") }
        let incarnation = servers[server].incarnation + 1
        servers[server] = Server(up: false, incarnation: incarnation, downSinceMs: now)
        for key in connections.keys.sorted() where connections[key]!.server == server { closeConnection(key) }
    }

    mutating func wake(_ server: Int) {
        guard servers[server].up, servers[server].paused else { return }
        servers[server].paused = false
        servers[server].downSinceMs = nil
        trace("collab-\(server)", "woke with \(servers[server].held.count) held events")
        let held = servers[server].held
        servers[server].held = []
        for event in held { schedule(event, after: 0) }
    }

    // MARK: Checks at the end

    mutating func checkAtEnd() {
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
            let mine = log.filter { $0.issuer == .participant(client.participant) }.compactMap(\.opID)
            if Set(mine).count != mine.count { violation("client \(index) has an op stored twice") }
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
                // The live host's state is what the store rebuilds.
                if let host = server.hosts[meeting], !host.stopped, !host.hasUncommitted, host.log.epoch == storeEpoch[meeting]! {
                    let rebuilt = try? MeetingLog(recovering: emptyLog(meeting).snapshot(), entries: log,
                                                  epoch: Epoch(storeEpoch[meeting]!.rawValue + 1))
                    if rebuilt?.meeting != host.log.meeting {
                        violation("\(meeting) rebuilt from the store differs from collab-\(index)'s host")
                    }
                }
            }
        }
    }
}
