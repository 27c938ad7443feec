import ParleyCore
import ParleyZone

// The commands and actions of each machine in a golden trace (the file format is described in
// GoldenTraceTests.swift). Servers and managers are reached at addresses made from their names,
// so traces name them only; an answer that carries any other address prints it in full.

/// `placement [heartbeat-timeout-ms=N] [locate-timeout-ms=N] [move-timeout-ms=N]
/// [connections-per-server=N] [max-servers=N]` (absent: `Placement.Tuning`'s defaults).
///
/// Inputs:
/// - `> T register collab-1 [machine=m1] [connections=N] [host=standup@e3]... [standby=review@e1]...`
/// - `> T heard collab-1 connections=N`
/// - `> T lost collab-1 "reason"`
/// - `> T tick`
/// - `> T locate standup #1`
/// - `> hosting standup on collab-1 e2` (the confirmation carries no time)
/// - `> T failed standup on collab-1` (the server could not host it)
/// - `> T drain collab-1`
/// - `> machine-for-new-server m1 m2` (the machines that are up) prints `machine m1` or `machine -`
/// - `> show` prints `place standup host=collab-1 standby=collab-2 epoch=e1 moving-since=-` per place
///
/// Actions: `open standup on collab-1 standby=collab-2`, `promote standup on collab-2 standby=-`,
/// `follow standup on collab-2 host=collab-1`, `release standup on collab-1`,
/// `answer #1 at collab-1`, `answer #1 unavailable "reason"`, `request-server`,
/// `disconnect collab-1 "reason"`, `drained collab-1`.
struct PlacementTrace: TraceMachine {
    private var placement: Placement
    /// The address each server registered with.
    private var addresses: [NodeName: ServerAddress] = [:]

    init(_ header: inout Words) throws(TraceError) {
        let defaults = Placement.Tuning()
        placement = Placement(tuning: Placement.Tuning(
            heartbeatTimeoutMs: try header.number("heartbeat-timeout-ms", default: defaults.heartbeatTimeoutMs),
            locateTimeoutMs: try header.number("locate-timeout-ms", default: defaults.locateTimeoutMs),
            moveTimeoutMs: try header.number("move-timeout-ms", default: defaults.moveTimeoutMs),
            connectionsPerServer: try header.number("connections-per-server", default: defaults.connectionsPerServer),
            maxServers: try header.number("max-servers", default: defaults.maxServers)))
    }

    mutating func apply(_ input: inout TraceInput) throws(TraceError) -> [String] {
        let actions: [Placement.Action]
        switch input.command {
        case "register":
            let name = NodeName(try input.words.word("the server"))
            let address = ServerAddress(client: "http://\(name):1", zone: "http://\(name):2", machine: try input.words.value("machine"))
            let held = try input.words.values("host").map { text throws(TraceError) in try heldMeeting(text, role: .host) }
                + input.words.values("standby").map { text throws(TraceError) in try heldMeeting(text, role: .standby) }
            let load = ServerLoad(connections: try input.words.number("connections", default: 0))
            addresses[name] = address
            actions = placement.register(name, at: address, holding: held, load: load, nowMs: try input.nowMs())
        case "heard":
            let name = NodeName(try input.words.word("the server"))
            guard let connections = try input.words.value("connections") else { throw TraceError("missing connections=") }
            actions = placement.heard(name, load: ServerLoad(connections: try parseNumber(connections, "connections")),
                                      nowMs: try input.nowMs())
        case "lost":
            let name = NodeName(try input.words.word("the server"))
            actions = placement.lost(name, reason: .linkClosed(try input.words.word("the reason, quoted")), nowMs: try input.nowMs())
        case "tick":
            actions = placement.tick(nowMs: try input.nowMs())
        case "locate":
            let meeting = MeetingID(try input.words.word("the meeting"))
            let request = try locateRequest(try input.words.word("the request, `#1`"))
            actions = placement.locate(meeting, request: request, nowMs: try input.nowMs())
        case "hosting":
            try input.timeless()
            let meeting = MeetingID(try input.words.word("the meeting"))
            try input.words.expect("on")
            let name = NodeName(try input.words.word("the server"))
            actions = placement.hosting(meeting, on: name, epoch: try epoch(try input.words.word("the epoch, `e1`")))
        case "failed":
            let meeting = MeetingID(try input.words.word("the meeting"))
            try input.words.expect("on")
            actions = placement.failedToHost(meeting, on: NodeName(try input.words.word("the server")), nowMs: try input.nowMs())
        case "drain":
            actions = placement.drain(NodeName(try input.words.word("the server")), nowMs: try input.nowMs())
        case "machine-for-new-server":
            try input.timeless()
            return ["machine \(placement.machineForNewServer(up: Set(input.words.rest())) ?? "-")"]
        case "show":
            try input.timeless()
            return placement.places.sorted { $0.key < $1.key }.map { meeting, place in
                "place \(meeting) host=\(place.host) standby=\(orDash(place.standby)) epoch=\(orDash(place.epoch))"
                    + " moving-since=\(orDash(place.movingSinceMs))"
            }
        case let other:
            throw TraceError("unknown command `\(other)`")
        }
        return actions.map(render)
    }

    private func render(_ action: Placement.Action) -> String {
        switch action {
        case .open(let meeting, let name, let standby): "open \(meeting) on \(name) standby=\(orDash(standby))"
        case .promote(let meeting, let name, let standby): "promote \(meeting) on \(name) standby=\(orDash(standby))"
        case .follow(let meeting, let name, let host): "follow \(meeting) on \(name) host=\(host)"
        case .release(let meeting, let name): "release \(meeting) on \(name)"
        case .answer(let request, .at(let name, let address)):
            "answer #\(request.rawValue) at \(name)" + (address == addresses[name] ? "" : " address=\(address)")
        case .answer(let request, .unavailable(let reason)): "answer #\(request.rawValue) unavailable \"\(reason)\""
        case .requestServer: "request-server"
        case .disconnect(let name, let reason): "disconnect \(name) \"\(reason)\""
        case .drained(let name): "drained \(name)"
        }
    }
}

/// `election me=manager-1 [lease-ms=N] [poll-ms=N] [safety-ms=N]` (absent:
/// `ManagerElection.Timing`'s defaults). The manager's own address is `http://manager-1`.
///
/// Inputs, with a lease written `manager-1 term=4 until=1000` (address `http://manager-1`
/// unless `address=` says otherwise) or `none`:
/// - `> T tick`
/// - `> T observed LEASE` (what a read of the store returned)
/// - `> T claimed LEASE` (the lease the compare-and-set wrote; `none`: the store refused it)
/// - `> show` prints `role standby` or `role leader term=1 valid-until=805`, then `lease LEASE`
///
/// Actions: `read`, `claim LEASE if LEASE` (write the first if the store still holds the
/// second), `lead term=5`, `step-down "reason"`.
struct ElectionTrace: TraceMachine {
    private var election: ManagerElection

    init(_ header: inout Words) throws(TraceError) {
        guard let me = try header.value("me") else { throw TraceError("missing me=") }
        let defaults = ManagerElection.Timing()
        let leaseMs = try header.number("lease-ms", default: defaults.leaseMs)
        let pollMs = try header.number("poll-ms", default: defaults.pollMs)
        let safetyMs = try header.number("safety-ms", default: defaults.safetyMs)
        // Checked here: Timing's own check is a precondition, which would crash the test run.
        guard pollMs > 0, safetyMs >= 0, leaseMs > pollMs + safetyMs else {
            throw TraceError("the lease must outlast a poll and the safety margin")
        }
        election = ManagerElection(me: NodeName(me), address: "http://\(me)",
                                   timing: ManagerElection.Timing(leaseMs: leaseMs, pollMs: pollMs, safetyMs: safetyMs))
    }

    mutating func apply(_ input: inout TraceInput) throws(TraceError) -> [String] {
        let actions: [ManagerElection.Action]
        switch input.command {
        case "tick": actions = election.tick(nowMs: try input.nowMs())
        case "observed": actions = election.observed(try lease(&input.words), nowMs: try input.nowMs())
        case "claimed": actions = election.claimed(try lease(&input.words), nowMs: try input.nowMs())
        case "show":
            try input.timeless()
            let role = switch election.role {
            case .standby: "role standby"
            case .leader(let term, let validUntilMs): "role leader term=\(term) valid-until=\(validUntilMs)"
            }
            return [role, "lease \(render(election.lease))"]
        case let other:
            throw TraceError("unknown command `\(other)`")
        }
        return actions.map { action in
            switch action {
            case .read: "read"
            case .claim(let expected, let new): "claim \(render(new)) if \(render(expected))"
            case .lead(let term): "lead term=\(term)"
            case .stepDown(let reason): "step-down \"\(reason)\""
            }
        }
    }

    private func lease(_ words: inout Words) throws(TraceError) -> ManagerLease? {
        let holder = try words.word("the lease's holder, or `none`")
        if holder == "none" { return nil }
        guard let term = try words.value("term"), let until = try words.value("until") else {
            throw TraceError("a lease needs term= and until=")
        }
        return ManagerLease(holder: NodeName(holder), address: try words.value("address") ?? "http://\(holder)",
                            term: try parseNumber(term, "term"), expiresAtMs: try parseNumber(until, "until"))
    }

    private func render(_ lease: ManagerLease?) -> String {
        guard let lease else { return "none" }
        let address = lease.address == "http://\(lease.holder)" ? "" : " address=\(lease.address)"
        return "\(lease.holder) term=\(lease.term) until=\(lease.expiresAtMs)\(address)"
    }
}

private func orDash(_ value: (some CustomStringConvertible)?) -> String {
    value.map(\.description) ?? "-"
}

/// `standup@e3`: a meeting a registering server holds, under that epoch.
private func heldMeeting(_ text: String, role: HeldMeeting.Role) throws(TraceError) -> HeldMeeting {
    let parts = text.split(separator: "@", omittingEmptySubsequences: false)
    guard parts.count == 2 else { throw TraceError("a held meeting is `meeting@e1`, not `\(text)`") }
    return HeldMeeting(meeting: MeetingID(String(parts[0])), role: role, epoch: try epoch(String(parts[1])))
}

/// `e3`, as `Epoch` prints itself.
private func epoch(_ text: String) throws(TraceError) -> Epoch {
    guard text.hasPrefix("e"), let number = UInt64(text.dropFirst()) else { throw TraceError("an epoch is `e1`, not `\(text)`") }
    return Epoch(number)
}

/// `#1`: a locate request.
private func locateRequest(_ text: String) throws(TraceError) -> LocateRequest {
    guard text.hasPrefix("#"), let number = UInt64(text.dropFirst()) else { throw TraceError("a locate is `#1`, not `\(text)`") }
    return LocateRequest(number)
}
