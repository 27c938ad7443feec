/// What a fault did, on the run's clock (milliseconds since the run started).
public struct FaultRecord: Codable, Equatable, Sendable {
    public var atMs: Int64
    public var kind: FaultKind
    /// The process hurt, as the target names it (`collab-1`, `server`).
    public var target: String
    public var role: String
    /// For a pause: how long the process was stopped before SIGCONT.
    public var pauseMs: Int?
    /// Why the fault could not be (fully) injected, if it could not.
    public var error: String?

    public init(atMs: Int64, kind: FaultKind, target: String, role: String, pauseMs: Int? = nil, error: String? = nil) {
        self.atMs = atMs
        self.kind = kind
        self.target = target
        self.role = role
        self.pauseMs = pauseMs
        self.error = error
    }
}

/// One client's connection history: when it lost its connection and when it resumed.
public struct ClientTimeline: Equatable, Sendable {
    public struct Change: Equatable, Sendable {
        public enum Kind: Equatable, Sendable {
            /// `.connection(.reconnecting)`: the connection dropped.
            case lost
            /// `.connection(.resumed)`: welcomed again.
            case resumed
        }
        public var atMs: Int64
        public var kind: Kind
        public init(atMs: Int64, _ kind: Kind) {
            self.atMs = atMs
            self.kind = kind
        }
    }

    public var client: String
    public var meeting: String
    /// In order of time.
    public var changes: [Change]

    public init(client: String, meeting: String, changes: [Change]) {
        self.client = client
        self.meeting = meeting
        self.changes = changes
    }
}

/// When an op was sent and, if it was, acknowledged.
public struct OpTiming: Equatable, Sendable {
    public var meeting: String
    public var sentAtMs: Int64
    public var ackedAtMs: Int64?

    public init(meeting: String, sentAtMs: Int64, ackedAtMs: Int64?) {
        self.meeting = meeting
        self.sentAtMs = sentAtMs
        self.ackedAtMs = ackedAtMs
    }
}

/// How long the system took to recover from each fault, as its clients saw it.
///
/// A client's lost connection is blamed on the latest fault injected at or before the moment
/// it was lost; faults come one at a time, so that is the one that caused it. A fault that
/// disrupted no client (a standby manager, a server hosting none of the meetings) yields no
/// sample.
public struct RecoveryMeasurement: Equatable, Sendable {
    /// Per disruptive fault: from the fault until every disrupted meeting had acknowledged
    /// an op sent after the fault (the slowest meeting's first such ack).
    public var acceptingOpsMs: [Double]
    /// Per disruptive fault: from the fault until every client it disrupted had resumed.
    public var allResumedMs: [Double]
    /// Disruptive faults after which some disrupted meeting never acknowledged a new op.
    public var neverAccepting: Int
    /// Disruptive faults after which some disrupted client never resumed.
    public var neverResumed: Int
    /// Connections lost before any fault was injected.
    public var unattributedLosses: Int
    /// The same samples split by what the fault was, e.g. "kill collab", "pause manager":
    /// each kind of failure has its own expected recovery time.
    public var byFault: [String: (acceptingOpsMs: [Double], allResumedMs: [Double])] = [:]

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.acceptingOpsMs == rhs.acceptingOpsMs && lhs.allResumedMs == rhs.allResumedMs
            && lhs.neverAccepting == rhs.neverAccepting && lhs.neverResumed == rhs.neverResumed
            && lhs.unattributedLosses == rhs.unattributedLosses
            && lhs.byFault.mapValues { [$0.acceptingOpsMs, $0.allResumedMs] } == rhs.byFault.mapValues { [$0.acceptingOpsMs, $0.allResumedMs] }
    }

    public static func measure(faults: [FaultRecord], clients: [ClientTimeline], ops: [OpTiming]) -> RecoveryMeasurement {
        let ordered = faults.sorted { $0.atMs < $1.atMs }
        let faultTimes = ordered.map(\.atMs)
        // Per fault index: for each disrupted client, when it resumed (nil: never).
        var disrupted: [Int: [(meeting: String, resumedAtMs: Int64?)]] = [:]
        var unattributed = 0
        for timeline in clients {
            for (index, change) in timeline.changes.enumerated() where change.kind == .lost {
                guard let fault = faultTimes.lastIndex(where: { $0 <= change.atMs }) else {
                    unattributed += 1
                    continue
                }
                let resumed = timeline.changes[(index + 1)...].first { $0.kind == .resumed }?.atMs
                disrupted[fault, default: []].append((timeline.meeting, resumed))
            }
        }
        var opsByMeeting: [String: [OpTiming]] = [:]
        for op in ops { opsByMeeting[op.meeting, default: []].append(op) }

        var result = RecoveryMeasurement(acceptingOpsMs: [], allResumedMs: [], neverAccepting: 0, neverResumed: 0,
                                         unattributedLosses: unattributed)
        for fault in disrupted.keys.sorted() {
            let at = faultTimes[fault]
            let kind = "\(ordered[fault].kind.rawValue) \(ordered[fault].role)"
            let losses = disrupted[fault]!
            let resumes = losses.map(\.resumedAtMs)
            if resumes.contains(nil) {
                result.neverResumed += 1
            } else {
                result.allResumedMs.append(Double(resumes.compactMap { $0 }.max()! - at))
                result.byFault[kind, default: ([], [])].allResumedMs.append(result.allResumedMs.last!)
            }
            var firstAcks: [Int64?] = []
            for meeting in Set(losses.map(\.meeting)).sorted() {
                let acks = (opsByMeeting[meeting] ?? []).filter { $0.sentAtMs >= at }.compactMap(\.ackedAtMs)
                firstAcks.append(acks.min())
            }
            if firstAcks.contains(nil) {
                result.neverAccepting += 1
            } else {
                result.acceptingOpsMs.append(Double(firstAcks.compactMap { $0 }.max()! - at))
                result.byFault[kind, default: ([], [])].acceptingOpsMs.append(result.acceptingOpsMs.last!)
            }
        }
        return result
    }
}
