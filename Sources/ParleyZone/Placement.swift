import ParleyCore

/// What a collaboration server tells the manager about its load, with every heartbeat.
public struct ServerLoad: Codable, Equatable, Sendable {
    public var connections: Int
    public var meetings: Int
    /// Inputs waiting in the busiest meeting's queue.
    public var queueDepth: Int
    /// Process CPU over the last report interval, 0–100 per core.
    public var cpuPercent: Double

    public init(connections: Int = 0, meetings: Int = 0, queueDepth: Int = 0, cpuPercent: Double = 0) {
        self.connections = connections
        self.meetings = meetings
        self.queueDepth = queueDepth
        self.cpuPercent = cpuPercent
    }
}

/// Where a collaboration server can be reached.
public struct ServerAddress: Codable, Equatable, Sendable {
    /// Base URL clients connect to (`/v1/ws`, `/v1/poll`).
    public var client: String
    /// Base URL other processes of the zone connect to (authenticated).
    public var zone: String
    /// The machine the server runs on, in a cluster: a meeting's standby goes on another
    /// machine than its host whenever one has room.
    public var machine: String?

    public init(client: String, zone: String, machine: String? = nil) {
        self.client = client
        self.zone = zone
        self.machine = machine
    }
}

/// A meeting a server holds, as it reports when it (re-)registers with a manager.
public struct HeldMeeting: Codable, Equatable, Sendable {
    public enum Role: String, Codable, Sendable { case host, standby }
    public var meeting: MeetingID
    public var role: Role
    public var epoch: Epoch

    public init(meeting: MeetingID, role: Role, epoch: Epoch) {
        self.meeting = meeting
        self.role = role
        self.epoch = epoch
    }
}

/// Identifies one pending locator question, so its answer finds its way back.
public struct LocateRequest: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "locate#\(rawValue)" }
}

/// The manager's rules for where meetings live: placement by load, hot standbys, failover,
/// drain, and asking for more servers.
///
/// Pure: the manager's links feed it registrations, heartbeats, lost links, clock ticks and
/// answers from servers, and carry out the actions it returns. Epochs are not chosen here:
/// a server that opens or promotes a meeting claims the next epoch in the store itself,
/// which is what fences the previous host.
public struct Placement: Sendable {
    public enum Action: Equatable, Sendable {
        /// Load the meeting from the store and host it; `standby` will follow it.
        case open(MeetingID, on: NodeName, standby: NodeName?)
        /// The standby takes the meeting over: claim a new epoch, catch up from the store, host.
        case promote(MeetingID, on: NodeName, standby: NodeName?)
        /// Keep a hot copy of the meeting by following its host's committed stream.
        case follow(MeetingID, on: NodeName, host: NodeName)
        /// Stop hosting or following the meeting here; clients are sent back to the locator.
        case release(MeetingID, on: NodeName)
        case answer(LocateRequest, LocateAnswer)
        /// Every server is past the load threshold: ask for one more, on the machine with the
        /// most room (``machineForNewServer(up:)``).
        case requestServer
        /// The server is gone or hung; its link is closed and its meetings have moved.
        case disconnect(NodeName, reason: ServerLoss)
        /// Nothing is left on a draining server; the supervisor may stop it.
        case drained(NodeName)
    }

    public enum LocateAnswer: Equatable, Sendable {
        case at(NodeName, ServerAddress)
        /// No server could take the meeting in time; the client retries after backing off.
        case unavailable(Unavailability)
    }

    public struct Tuning: Equatable, Sendable {
        /// A server not heard from for this long is treated as hung.
        public var heartbeatTimeoutMs: Int64
        /// A locate still unanswered after this long gets `.unavailable`.
        public var locateTimeoutMs: Int64
        /// An open or promote not confirmed after this long is retried elsewhere.
        public var moveTimeoutMs: Int64
        public var connectionsPerServer: Int
        public var maxServers: Int
        /// With edges on, a meeting's participants go to the servers that hold a copy of it
        /// already (host, standby, edges), evenly, until the locator has sent each this many
        /// of them; then one more server becomes an edge. Nil: edges are off, and every
        /// participant goes to the host.
        public var connectionsPerCopy: Int?

        public init(heartbeatTimeoutMs: Int64 = 1_000, locateTimeoutMs: Int64 = 5_000, moveTimeoutMs: Int64 = 3_000,
                    connectionsPerServer: Int = 2_000, maxServers: Int = 4, connectionsPerCopy: Int? = nil) {
            self.heartbeatTimeoutMs = heartbeatTimeoutMs
            self.locateTimeoutMs = locateTimeoutMs
            self.moveTimeoutMs = moveTimeoutMs
            self.connectionsPerServer = connectionsPerServer
            self.maxServers = maxServers
            self.connectionsPerCopy = connectionsPerCopy
        }
    }

    public struct Server: Equatable, Sendable {
        public var name: NodeName
        public var address: ServerAddress
        public var load: ServerLoad
        public var lastHeardMs: Int64
        public var draining: Bool
    }

    public struct Place: Equatable, Sendable {
        /// The server hosting the meeting, or about to (see `moving`).
        public var host: NodeName
        public var standby: NodeName?
        /// The newest epoch a server reported for this meeting.
        public var epoch: Epoch?
        /// Set while an open or promote is not yet confirmed: when it was sent.
        public var movingSinceMs: Int64?
        /// Other servers the locator sent the meeting's participants to (edges on): they keep
        /// copies, so the next participants go there first.
        public var edges: [NodeName] = []
        /// How many of the meeting's participants the locator sent to each server (edges on).
        public var sent: [NodeName: Int] = [:]

        public init(host: NodeName, standby: NodeName?, epoch: Epoch?, movingSinceMs: Int64?) {
            self.host = host
            self.standby = standby
            self.epoch = epoch
            self.movingSinceMs = movingSinceMs
        }
    }

    public private(set) var servers: [NodeName: Server] = [:]
    public private(set) var places: [MeetingID: Place] = [:]
    /// Locates waiting for a meeting to be placed.
    private struct Asked: Sendable {
        var request: LocateRequest
        var sinceMs: Int64
        /// For a participant (who may be sent to an edge), or for a copy looking for the host.
        var forClient: Bool
        /// The machine of the front that asked (in a cluster): the participant is near it.
        var near: String?
    }
    private var waiting: [MeetingID: [Asked]] = [:]
    private var serverRequestedAtMs: Int64?
    private var reportedDrained: Set<NodeName> = []
    /// Servers this placement was asked to drain. One lost before its drain is reported stays
    /// here, so it is still draining when it registers again (a link blip, or its supervisor
    /// restarting it). One lost after the report leaves: the supervisor stops a drained server,
    /// and one registering later under its name (`parley ctl restart`) is meant to take work.
    /// A drained server whose link blips before the stop looks the same; the stop moves off
    /// whatever it took, as for any lost server.
    ///
    /// A new manager (after a failover) knows of no drain: servers register with it as not
    /// draining, and may get new meetings. The operator's `parley ctl drain` waited on the old
    /// manager's link; that link closed, so the command failed and said to retry, and the
    /// retry drains the server on the new manager.
    private var drainingServers: Set<NodeName> = []
    /// Standby copies reported before their host registered (after a manager failover), with
    /// the epoch each copy had reached. Forgotten once the meeting is placed otherwise, or the
    /// server is lost: a copy kept from then would name a server that holds nothing.
    private var unplacedStandbys: [MeetingID: (server: NodeName, epoch: Epoch)] = [:]
    public let tuning: Tuning

    public init(tuning: Tuning = Tuning()) { self.tuning = tuning }

    // MARK: Servers

    /// A server connected. It may already hold meetings: after a manager failover, or after
    /// a pause the zone took for a failure. The newest epoch wins; older copies are released.
    /// While an open or promote is in flight, the server it was sent to wins.
    /// A server that was draining still is: what it holds moves off again.
    public mutating func register(_ name: NodeName, at address: ServerAddress, holding: [HeldMeeting],
                                  load: ServerLoad = ServerLoad(), nowMs: Int64) -> [Action] {
        let draining = drainingServers.contains(name)
        servers[name] = Server(name: name, address: address, load: load, lastHeardMs: nowMs, draining: draining)
        var actions: [Action] = []
        for held in holding.sorted(by: { $0.meeting < $1.meeting }) {
            switch held.role {
            case .host:
                if var place = places[held.meeting] {
                    let epoch = max(place.epoch ?? held.epoch, held.epoch)
                    if place.host == name, place.movingSinceMs != nil {
                        // It hosts what it was sent to open or promote: its `hosting` was lost
                        // with its previous link, and this report is that confirmation.
                        actions += confirmHosting(held.meeting, place, epoch: epoch)
                    } else if place.host == name {
                        place.epoch = epoch
                        places[held.meeting] = place
                    } else if place.movingSinceMs != nil {
                        // A move is in flight: its server claims the next epoch in the store as it
                        // opens or promotes, which fences every copy claimed before, this one too,
                        // whatever its epoch (the placement may not know the claim yet, or any
                        // epoch at all). Taking this server would leave the meeting on a fenced
                        // host; if the move fails instead, the meeting is opened again.
                        actions.append(.release(held.meeting, on: name))
                    } else if let known = place.epoch, known >= held.epoch {
                        actions.append(.release(held.meeting, on: name))
                    } else {
                        // This server holds a newer epoch than the one we placed: it is the host.
                        // The standby stays, and follows it rather than the released host.
                        actions.append(.release(held.meeting, on: place.host))
                        place.host = name
                        if place.standby == name { place.standby = nil }
                        actions += confirmHosting(held.meeting, place, epoch: held.epoch)
                    }
                } else {
                    let standby = unplacedStandbys.removeValue(forKey: held.meeting).flatMap { servers[$0.server] != nil && $0.server != name ? $0 : nil }
                    places[held.meeting] = Place(host: name, standby: standby?.server, epoch: held.epoch, movingSinceMs: nil)
                    if let standby, standby.epoch != held.epoch {
                        // The copy followed an earlier host (each takeover claims a new epoch):
                        // it follows this one now.
                        actions.append(.follow(held.meeting, on: standby.server, host: name))
                    }
                }
            case .standby where draining:
                // The drain released it; the release was lost with its previous link.
                actions.append(.release(held.meeting, on: name))
            case .standby:
                if var place = places[held.meeting], place.host != name, place.standby == nil || place.standby == name {
                    place.standby = name
                    places[held.meeting] = place
                } else if places[held.meeting] == nil {
                    // Its host has not registered yet; it keeps this standby when it does.
                    unplacedStandbys[held.meeting] = (name, held.epoch)
                } else {
                    actions.append(.release(held.meeting, on: name))
                }
            }
        }
        // A draining server may have been given back a meeting it reported hosting (one with no
        // newer host): it moves off again, promoted elsewhere first, as `drain` does.
        if draining { actions += moveOff(name, nowMs: nowMs) }
        actions += answerWaiting(nowMs: nowMs)
        actions += assignMissingStandbys()
        actions += standbysOntoOtherMachines()
        return actions + finishedDrains()
    }

    /// A heartbeat with the server's load.
    public mutating func heard(_ name: NodeName, load: ServerLoad, nowMs: Int64) -> [Action] {
        guard var server = servers[name] else { return [] }
        server.load = load
        server.lastHeardMs = nowMs
        servers[name] = server
        return scaleIfNeeded(nowMs: nowMs)
    }

    /// The server's link closed, or it stopped answering: move everything it held.
    public mutating func lost(_ name: NodeName, reason: ServerLoss, nowMs: Int64) -> [Action] {
        guard servers.removeValue(forKey: name) != nil else { return [] }
        if reportedDrained.remove(name) != nil { drainingServers.remove(name) }
        unplacedStandbys = unplacedStandbys.filter { $0.value.server != name }
        var actions: [Action] = [.disconnect(name, reason: reason)]
        for (meeting, place) in places.sorted(by: { $0.key < $1.key }) {
            if place.host == name {
                actions += failOver(meeting, place, nowMs: nowMs)
            } else if place.standby == name {
                var place = place
                place.standby = nil
                places[meeting] = place
            }
        }
        // Its meetings may have had nowhere to go: a drain waiting on their moves may be over.
        return actions + assignMissingStandbys() + finishedDrains()
    }

    /// Time passes: hung servers, stuck moves and unanswered locates are dealt with.
    public mutating func tick(nowMs: Int64) -> [Action] {
        var actions: [Action] = []
        for server in servers.values.sorted(by: { $0.name < $1.name })
        where nowMs - server.lastHeardMs > tuning.heartbeatTimeoutMs {
            actions += lost(server.name, reason: .silent(forMs: nowMs - server.lastHeardMs), nowMs: nowMs)
        }
        for (meeting, place) in places.sorted(by: { $0.key < $1.key }) {
            if let since = place.movingSinceMs, nowMs - since > tuning.moveTimeoutMs {
                // The chosen server never confirmed; try another (the first is released so
                // that a late confirmation cannot leave two hosts).
                var retry = place
                retry.standby = place.standby == place.host ? nil : place.standby
                actions.append(.release(meeting, on: place.host))
                places[meeting] = retry
                actions += reopen(meeting, excluding: [place.host], nowMs: nowMs)
            }
        }
        for (meeting, requests) in waiting.sorted(by: { $0.key < $1.key }) {
            let expired = requests.filter { nowMs - $0.sinceMs > tuning.locateTimeoutMs }
            guard !expired.isEmpty else { continue }
            waiting[meeting] = requests.filter { nowMs - $0.sinceMs <= tuning.locateTimeoutMs }
            if waiting[meeting]?.isEmpty == true { waiting[meeting] = nil }
            for asked in expired {
                actions.append(.answer(asked.request, .unavailable(.noHostYet(meeting))))
            }
        }
        // A stuck move given up with nowhere else to go may have been the last a drain waited on.
        return actions + finishedDrains()
    }

    // MARK: Meetings

    /// Where should a client of `meeting` connect (`forClient`), or where is its host (for
    /// a copy on another server)? Places the meeting if it has no host.
    /// - Parameter near: the machine the participant asked through (its front's), if known:
    ///   with edges on, servers there are preferred.
    public mutating func locate(_ meeting: MeetingID, request: LocateRequest, forClient: Bool = true, near: String? = nil,
                                nowMs: Int64) -> [Action] {
        let asked = Asked(request: request, sinceMs: nowMs, forClient: forClient, near: near)
        if let place = places[meeting] {
            if place.movingSinceMs == nil, servers[place.host] != nil {
                return [answer(asked, meeting)]
            }
            waiting[meeting, default: []].append(asked)
            return []
        }
        waiting[meeting, default: []].append(asked)
        return reopen(meeting, excluding: [], nowMs: nowMs)
    }

    /// The answer for a placed meeting: its host, or with edges on, for a participant, the
    /// server chosen by ``clientServer(_:)``.
    private mutating func answer(_ asked: Asked, _ meeting: MeetingID) -> Action {
        let host = places[meeting]!.host
        let name = asked.forClient ? clientServer(meeting, near: asked.near) : host
        return .answer(asked.request, .at(name, servers[name]!.address))
    }

    /// Where the meeting's next participant goes with edges on: the server holding a copy
    /// already (host, standby, edges) that the locator sent the fewest of its participants,
    /// while that is under ``Tuning/connectionsPerCopy``; past that, the least loaded other
    /// server, which becomes an edge. Counted per meeting as the answers go out, not from
    /// heartbeats: in a burst of joins the heartbeats lag behind by a second. In a cluster,
    /// servers on the machine `near` (the participant's front's) come first, at each step.
    private mutating func clientServer(_ meeting: MeetingID, near: String?) -> NodeName {
        guard var place = places[meeting], let perCopy = tuning.connectionsPerCopy else { return places[meeting]!.host }
        let servers = self.servers
        let usable = { (name: NodeName) in servers[name].map { !$0.draining } ?? false }
        let far = { (name: NodeName) in near == nil || servers[name]?.address.machine == near ? 0 : 1 }
        let holders = ([place.host] + [place.standby].compactMap { $0 } + place.edges).filter(usable)
        let roomy = holders.filter { place.sent[$0, default: 0] < perCopy }
        var chosen = (roomy.isEmpty ? holders : roomy).min {
            (far($0), place.sent[$0, default: 0], $0) < (far($1), place.sent[$1, default: 0], $1)
        } ?? place.host
        // Past its share, or not near while a server near could become an edge.
        if place.sent[chosen, default: 0] >= perCopy || far(chosen) == 1 {
            let others = servers.values.filter { !$0.draining && !holders.contains($0.name) && $0.load.connections < tuning.connectionsPerServer }
            if let edge = others.min(by: { (far($0.name), $0.load.connections, $0.name) < (far($1.name), $1.load.connections, $1.name) }),
               place.sent[chosen, default: 0] >= perCopy || far(edge.name) == 0 {
                place.edges.append(edge.name)
                chosen = edge.name
            }
        }
        place.sent[chosen, default: 0] += 1
        places[meeting] = place
        return chosen
    }

    /// The server now hosts the meeting under `epoch` (after an open or a promote).
    public mutating func hosting(_ meeting: MeetingID, on name: NodeName, epoch: Epoch) -> [Action] {
        guard let place = places[meeting], place.host == name else {
            // Not (or no longer) ours to host: the placement moved on while it was opening.
            // If it made this server the standby meanwhile, the release drops the copy too
            // (the server took it over to host): it is told to follow again, from the store.
            var actions: [Action] = [.release(meeting, on: name)]
            if let place = places[meeting], place.standby == name, place.movingSinceMs == nil {
                actions.append(.follow(meeting, on: name, host: place.host))
            }
            return actions
        }
        return confirmHosting(meeting, place, epoch: epoch) + assignMissingStandbys() + finishedDrains()
    }

    /// The meeting's placed host hosts it under `epoch`: the move is over, waiting locates are
    /// answered and the standby follows it.
    private mutating func confirmHosting(_ meeting: MeetingID, _ place: Place, epoch: Epoch) -> [Action] {
        var place = place
        place.epoch = epoch
        place.movingSinceMs = nil
        places[meeting] = place
        var actions = answerWaiting(meeting)
        if let standby = place.standby { actions.append(.follow(meeting, on: standby, host: place.host)) }
        return actions
    }

    /// A copy of the meeting outvoted its host: the host's state disagreed with the copy's
    /// at a checkpoint, and the state rebuilt from the last agreed checkpoint plus the
    /// committed entries sided with the copy. The standby takes over (its new epoch fences
    /// the host) and the host lets go. Without a standby, or while the meeting moves,
    /// nothing changes: the report is logged, and the next checkpoint votes again.
    public mutating func hostOutvoted(_ meeting: MeetingID, nowMs: Int64) -> [Action] {
        guard let place = places[meeting], place.movingSinceMs == nil, let standby = place.standby,
              let server = servers[standby], !server.draining else { return [] }
        return failOver(meeting, place, nowMs: nowMs) + [.release(meeting, on: place.host)]
    }

    /// The edge copy of `meeting` on `name` was dropped, as no participant used it: the
    /// locator no longer counts the server among the meeting's copies, nor the participants
    /// it sent there (they all left). A later participant sent there opens a new copy.
    public mutating func edgeDropped(_ meeting: MeetingID, on name: NodeName) {
        guard var place = places[meeting], place.host != name, place.standby != name else { return }
        place.edges.removeAll { $0 == name }
        place.sent[name] = nil
        places[meeting] = place
    }

    /// The server could not open or promote the meeting; try elsewhere.
    public mutating func failedToHost(_ meeting: MeetingID, on name: NodeName, nowMs: Int64) -> [Action] {
        guard let place = places[meeting], place.host == name else { return [] }
        return reopen(meeting, excluding: [name], nowMs: nowMs) + finishedDrains()
    }

    /// Move every meeting off `name`, then report it `drained`. New meetings avoid it.
    public mutating func drain(_ name: NodeName, nowMs: Int64) -> [Action] {
        guard var server = servers[name] else { return [] }
        server.draining = true
        servers[name] = server
        drainingServers.insert(name)
        // Asked again after its report (the operator's command gave up waiting, or was run twice):
        // reported again as a first drain would be, at once unless a move is in flight.
        reportedDrained.remove(name)
        return moveOff(name, nowMs: nowMs) + assignMissingStandbys() + finishedDrains()
    }

    /// Moves every meeting `name` hosts or follows to other servers and releases it there.
    private mutating func moveOff(_ name: NodeName, nowMs: Int64) -> [Action] {
        var actions: [Action] = []
        for (meeting, place) in places.sorted(by: { $0.key < $1.key }) {
            if place.host == name {
                // Promote first: the new epoch fences this host before its clients move.
                actions += failOver(meeting, place, nowMs: nowMs)
                actions.append(.release(meeting, on: name))
            } else if place.standby == name {
                var place = place
                place.standby = nil
                places[meeting] = place
                actions.append(.release(meeting, on: name))
            }
        }
        return actions
    }

    /// Draining servers that hold nothing, once every move is confirmed.
    private mutating func finishedDrains() -> [Action] {
        guard !places.values.contains(where: { $0.movingSinceMs != nil }) else { return [] }
        var actions: [Action] = []
        for server in servers.values.sorted(by: { $0.name < $1.name })
        where server.draining && !reportedDrained.contains(server.name) && isEmpty(server.name) {
            reportedDrained.insert(server.name)
            actions.append(.drained(server.name))
        }
        return actions
    }

    // MARK: Rules

    private func isEmpty(_ name: NodeName) -> Bool {
        !places.values.contains { $0.host == name || $0.standby == name }
    }

    /// Live servers that take new work, least loaded first; ties by name, so placement is
    /// deterministic for a given history. Servers on the machine of `partner` (the meeting's
    /// host, when choosing its standby, or the reverse) come after every other: losing one
    /// machine must not take both copies of a meeting.
    private func candidates(excluding: Set<NodeName>, awayFrom partner: NodeName? = nil) -> [Server] {
        let avoided = partner.flatMap { servers[$0]?.address.machine }
        return servers.values
            .filter { !$0.draining && !excluding.contains($0.name) }
            .sorted {
                let left = (sameMachine($0, avoided), hostedCount($0.name), $0.load.connections, $0.name.rawValue)
                let right = (sameMachine($1, avoided), hostedCount($1.name), $1.load.connections, $1.name.rawValue)
                return left < right
            }
    }

    /// Where a new collab server should start, in a cluster: of the machines that are up (that
    /// have a process linked to this manager), the one running the fewest collab servers,
    /// then the one whose servers carry the fewest client connections, then by name. nil when
    /// no machine is known (a zone on one machine: its own supervisor starts it).
    public func machineForNewServer(up machines: Set<String>) -> String? {
        let live = servers.values.filter { !$0.draining }
        return machines.min { left, right in
            let onLeft = live.filter { $0.address.machine == left }, onRight = live.filter { $0.address.machine == right }
            return (onLeft.count, onLeft.reduce(0) { $0 + $1.load.connections }, left)
                < (onRight.count, onRight.reduce(0) { $0 + $1.load.connections }, right)
        }
    }

    private func sameMachine(_ server: Server, _ machine: String?) -> Int {
        machine != nil && server.address.machine == machine ? 1 : 0
    }

    private func hostedCount(_ name: NodeName) -> Int {
        places.values.count { $0.host == name } * 2 + places.values.count { $0.standby == name }
    }

    private mutating func failOver(_ meeting: MeetingID, _ place: Place, nowMs: Int64) -> [Action] {
        if let standby = place.standby, let server = servers[standby], !server.draining {
            let next = candidates(excluding: [standby, place.host], awayFrom: standby).first?.name
            places[meeting] = Place(host: standby, standby: next, epoch: place.epoch, movingSinceMs: nowMs)
            return [.promote(meeting, on: standby, standby: next)]
        }
        places[meeting] = nil
        return reopen(meeting, excluding: [place.host], nowMs: nowMs)
    }

    /// Opens the meeting from the store on the least loaded server (no hot copy exists).
    private mutating func reopen(_ meeting: MeetingID, excluding: Set<NodeName>, nowMs: Int64) -> [Action] {
        let previous = places[meeting]
        unplacedStandbys[meeting] = nil
        let choices = candidates(excluding: excluding)
        guard let host = choices.first else {
            places[meeting] = nil
            return []  // Locates wait, then time out; a registration retries.
        }
        let standby = candidates(excluding: excluding.union([host.name]), awayFrom: host.name).first?.name
        places[meeting] = Place(host: host.name, standby: standby, epoch: previous?.epoch, movingSinceMs: nowMs)
        return [.open(meeting, on: host.name, standby: standby)]
    }

    private mutating func answerWaiting(_ meeting: MeetingID) -> [Action] {
        guard let place = places[meeting], place.movingSinceMs == nil, servers[place.host] != nil,
              let requests = waiting.removeValue(forKey: meeting) else { return [] }
        return requests.map { answer($0, meeting) }
    }

    /// Answers every locate that can be answered, and opens the meetings still waiting for a
    /// place. The open is timed from `nowMs`, not from the oldest locate: the move timeout is
    /// how long the chosen server has had, and it has only had it from now.
    private mutating func answerWaiting(nowMs: Int64) -> [Action] {
        var actions: [Action] = []
        for meeting in waiting.keys.sorted() {
            actions += answerWaiting(meeting)
            if waiting[meeting] != nil, places[meeting] == nil {
                actions += reopen(meeting, excluding: [], nowMs: nowMs)
            }
        }
        return actions
    }

    /// Every hosted meeting gets a standby on another live server, when there is one.
    private mutating func assignMissingStandbys() -> [Action] {
        var actions: [Action] = []
        for (meeting, place) in places.sorted(by: { $0.key < $1.key })
        where place.standby == nil && place.movingSinceMs == nil {
            guard let standby = candidates(excluding: [place.host], awayFrom: place.host).first?.name else { continue }
            var place = place
            place.standby = standby
            places[meeting] = place
            actions.append(.follow(meeting, on: standby, host: place.host))
        }
        return actions
    }

    /// Standbys that share their host's machine (there was no room elsewhere when they were
    /// placed) move to another machine once one has room, such as a machine that has just
    /// joined or come back: losing the host's machine must not take both copies. The new
    /// standby follows first; the old one is released.
    private mutating func standbysOntoOtherMachines() -> [Action] {
        var actions: [Action] = []
        for (meeting, place) in places.sorted(by: { $0.key < $1.key }) where place.movingSinceMs == nil {
            guard let standby = place.standby, let machine = servers[place.host]?.address.machine,
                  servers[standby]?.address.machine == machine,
                  let better = candidates(excluding: [place.host, standby], awayFrom: place.host).first,
                  better.address.machine != machine
            else { continue }
            var place = place
            place.standby = better.name
            places[meeting] = place
            actions += [.follow(meeting, on: better.name, host: place.host), .release(meeting, on: standby)]
        }
        return actions
    }

    private mutating func scaleIfNeeded(nowMs: Int64) -> [Action] {
        let live = servers.values.filter { !$0.draining }
        guard !live.isEmpty, servers.count < tuning.maxServers,
              live.allSatisfy({ $0.load.connections > tuning.connectionsPerServer }) else { return [] }
        // One request at a time; a new server that never arrives is asked for again later.
        if let since = serverRequestedAtMs, nowMs - since < tuning.moveTimeoutMs * 4 { return [] }
        serverRequestedAtMs = nowMs
        return [.requestServer]
    }
}
