/// What the operator's zone page (`/admin`) shows: every process with its state, load and
/// readiness; every meeting with the servers it runs on, its participants and op rate; and
/// the recent failovers. Built from the status reports `parley ctl status` shows; pure.
public struct ZoneOverview: Codable, Equatable, Sendable {
    public struct Process: Codable, Equatable, Sendable {
        public var name: String
        public var role: String
        public var machine: String?
        public var state: String
        public var pid: Int?
        public var uptimeMs: Int?
        public var restarts: Int
        /// nil when the process has not said (not running, or not reporting yet).
        public var ready: Bool?
        public var notReady: [String]
        /// "12 conn, 3 mtg, 4% cpu", "leader, term 3".
        public var load: String
        public var detail: String?
        /// What the page offers for it: `drain` (collab servers hosting meetings) and `restart`.
        public var actions: [String]
    }

    public struct Meeting: Codable, Equatable, Sendable {
        public var id: String
        public var host: String
        public var standby: String?
        /// Servers serving some of its participants from a copy (edges, and the standby when
        /// it does).
        public var edges: [String]
        public var participants: Int
        public var seq: UInt64
        /// Entries sequenced per second between the host's last two reports seen; nil at first.
        public var opsPerSecond: Double?
        /// When the host read `seq` (its wall clock, ms).
        public var sampledAtMs: Int64?
    }

    public struct Failover: Codable, Equatable, Sendable {
        public var meeting: String
        /// The server that took the meeting over.
        public var to: String
        public var agoMs: Int
        /// From the promotion's order to the new host's confirmation.
        public var durationMs: Int
    }

    public var processes: [Process]
    public var meetings: [Meeting]
    /// Newest first.
    public var failovers: [Failover]
    /// When this overview was made (the caller's clock, ms): the next one's op rates are
    /// measured from it.
    public var atMs: Int64

    /// The overview of `statuses`; `previous` (the last one made) gives the op rates.
    public static func build(_ statuses: [ProcessStatus], previous: ZoneOverview?, nowMs: Int64) -> ZoneOverview {
        var meetings: [String: Meeting] = [:]
        var standbys: [String: String] = [:]
        var edges: [String: [String]] = [:]
        var failovers: [Failover] = []
        var processes: [Process] = []
        for status in statuses {
            let load = status.load?.object ?? [:]
            let running = status.state == .running && status.pid != nil
            processes.append(Process(
                name: status.name.rawValue, role: status.role.rawValue, machine: status.machine, state: status.state.rawValue,
                pid: status.pid, uptimeMs: status.uptimeMs, restarts: status.restarts,
                ready: running ? load["ready"]?.bool : nil, notReady: load["notReady"]?.strings ?? [],
                load: loadSummary(status.load), detail: status.detail,
                actions: running ? (status.role == .collab ? ["drain", "restart"] : ["restart"]) : ["restart"]))
            guard running else { continue }
            let activity = load["activity"]?.object ?? [:]
            let sampledAtMs = load["activityAtMs"]?.number.map { Int64($0) }
            for id in load["hosting"]?.strings ?? [] {
                let figures = activity[id]?.object ?? [:]
                meetings[id] = Meeting(id: id, host: status.name.rawValue, standby: nil, edges: [],
                                       participants: Int(figures["participants"]?.number ?? 0),
                                       seq: UInt64(max(0, figures["seq"]?.number ?? 0)), opsPerSecond: nil,
                                       sampledAtMs: figures["seq"] == nil ? nil : sampledAtMs)
            }
            for id in load["standby"]?.strings ?? [] { standbys[id] = status.name.rawValue }
            for id in load["edges"]?.strings ?? [] { edges[id, default: []].append(status.name.rawValue) }
            if load["leader"]?.bool == true {
                failovers = (load["failovers"]?.array ?? []).compactMap { value in
                    guard let failover = value.object, let meeting = failover["meeting"]?.string, let to = failover["to"]?.string
                    else { return nil }
                    return Failover(meeting: meeting, to: to, agoMs: Int(failover["agoMs"]?.number ?? 0),
                                    durationMs: Int(failover["durationMs"]?.number ?? 0))
                }.reversed()
            }
        }
        let before = Dictionary((previous?.meetings ?? []).map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let listed = meetings.values.map { meeting -> Meeting in
            var meeting = meeting
            meeting.standby = standbys[meeting.id]
            meeting.edges = (edges[meeting.id] ?? []).sorted()
            // Measured between the host's own reports, not between overviews: several viewers,
            // or a report from another machine seconds old, must not skew it.
            if let earlier = before[meeting.id], let then = earlier.sampledAtMs, let now = meeting.sampledAtMs {
                if now == then {
                    meeting.opsPerSecond = earlier.opsPerSecond
                } else if now > then, meeting.seq >= earlier.seq {
                    meeting.opsPerSecond = Double(meeting.seq - earlier.seq) * 1_000 / Double(now - then)
                }
            }
            return meeting
        }.sorted { ($0.participants, $1.id) > ($1.participants, $0.id) }
        return ZoneOverview(processes: processes, meetings: listed, failovers: failovers, atMs: nowMs)
    }

    /// A process's load in a few words, as `parley ctl status` shows it.
    public static func loadSummary(_ value: JSONValue?) -> String {
        guard let load = value?.object else { return "-" }
        if let leads = load["leader"]?.bool {
            return leads ? "leader, term \(Int(load["term"]?.number ?? 0))" : "standby manager"
        }
        guard let connections = load["connections"]?.number, let meetings = load["meetings"]?.number else { return "-" }
        return "\(Int(connections)) conn, \(Int(meetings)) mtg, \(Int(load["cpuPercent"]?.number ?? 0))% cpu"
    }
}

extension JSONValue {
    public var object: [String: JSONValue]? { if case .object(let value) = self { value } else { nil } }
    public var array: [JSONValue]? { if case .array(let value) = self { value } else { nil } }
    public var string: String? { if case .string(let value) = self { value } else { nil } }
    public var number: Double? { if case .number(let value) = self { value } else { nil } }
    public var bool: Bool? { if case .bool(let value) = self { value } else { nil } }
    /// The strings of an array (others skipped).
    public var strings: [String]? { array?.compactMap(\.string) }
}
