import FoundationEssentials
import ParleyCore

// The checker is pure: histories in, anomalies out. It knows nothing of processes, clocks or
// transports, so a hand-built history pins down exactly what each anomaly means.

/// How one op ended, as far as the client that sent it knows.
public enum OpFate: Equatable, Sendable {
    /// The server acknowledged it: committed at `seq` under `epoch`, with the SDK's op id.
    case acked(opID: OpID, seq: Seq, epoch: Epoch)
    /// The server refused it (or could not read it): it must not be in the log.
    case rejected(reason: String)
    /// No answer came (the session ended, the run ended): it may be in the log, at most once.
    case unknown(reason: String)
}

/// One op a client sent. `text` names the op and is unique within its meeting: every op is a
/// chat message whose text is its name, e.g. `"c1-17"`.
public struct SentOp: Equatable, Sendable {
    public var text: String
    public var fate: OpFate

    public init(text: String, fate: OpFate) {
        self.text = text
        self.fate = fate
    }
}

/// Everything one client saw and sent in one meeting.
public struct ClientView: Equatable, Sendable {
    public var client: String
    /// Known after the first welcome; an entry of this client's ops must name it as issuer.
    public var participant: ParticipantID?
    /// The entries the client received, in arrival order, split where a welcome brought a
    /// snapshot: each segment starts right after a snapshot and must have no gaps. A
    /// replay welcome continues the current segment.
    public var segments: [[LogEntry]]
    public var sent: [SentOp]

    public init(client: String, participant: ParticipantID? = nil, segments: [[LogEntry]], sent: [SentOp] = []) {
        self.client = client
        self.participant = participant
        self.segments = segments
        self.sent = sent
    }

    /// The highest seq the client received, or 0.
    public var lastSeq: Seq { segments.last(where: { !$0.isEmpty })?.last?.seq ?? 0 }
}

/// One meeting's histories, one view per client.
public struct MeetingHistory: Equatable, Sendable {
    public var meeting: String
    public var clients: [ClientView]

    public init(meeting: String, clients: [ClientView]) {
        self.meeting = meeting
        self.clients = clients
    }
}

/// A broken promise, found in one meeting's histories.
public struct ChaosAnomaly: Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        /// Two clients received different entries at the same seq: there is no one order.
        case divergence(seq: Seq, client: String, entry: String, otherClient: String, otherEntry: String)
        /// Within one segment a client's seqs skipped some.
        case gap(client: String, expected: Seq, received: Seq)
        /// A client received a seq not above the one before it (a repeat or a step back).
        case outOfOrder(client: String, after: Seq, received: Seq)
        /// A client received an entry under an older epoch than an entry before it.
        case epochRegression(client: String, seq: Seq, epoch: Epoch, previousSeq: Seq, previousEpoch: Epoch)
        /// An acknowledged op is in nobody's history.
        case ackedMissing(op: String, ackedSeq: Seq)
        /// An acknowledged op is in the log once, but not where, or not as what, its ack said.
        case ackMismatch(op: String, acked: String, found: String)
        /// An op is in the log more than once.
        case duplicated(op: String, seqs: [Seq])
        /// An op the server rejected is in the log.
        case rejectedPresent(op: String, seqs: [Seq])
        /// A chat entry that no client of this meeting sent (or sent as another participant).
        case foreign(seq: Seq, text: String, issuer: String)
        /// A client's history ends before the last acknowledged op of the meeting.
        case incompleteView(client: String, lastSeq: Seq, required: Seq)
    }

    public var meeting: String
    public var kind: Kind

    public init(meeting: String, _ kind: Kind) {
        self.meeting = meeting
        self.kind = kind
    }

    /// A stable name for the kind, for machines (`--json`).
    public var code: String {
        switch kind {
        case .divergence: "divergence"
        case .gap: "gap"
        case .outOfOrder: "out_of_order"
        case .epochRegression: "epoch_regression"
        case .ackedMissing: "acked_missing"
        case .ackMismatch: "ack_mismatch"
        case .duplicated: "duplicated"
        case .rejectedPresent: "rejected_present"
        case .foreign: "foreign"
        case .incompleteView: "incomplete_view"
        }
    }

    public var description: String {
        let what: String
        switch kind {
        case .divergence(let seq, let client, let entry, let otherClient, let otherEntry):
            what = "\(client) and \(otherClient) disagree at seq \(seq): \(entry) vs \(otherEntry)"
        case .gap(let client, let expected, let received):
            what = "\(client) expected seq \(expected) next but received \(received)"
        case .outOfOrder(let client, let after, let received):
            what = "\(client) received seq \(received) after seq \(after)"
        case .epochRegression(let client, let seq, let epoch, let previousSeq, let previousEpoch):
            what = "\(client) saw epoch go back: seq \(previousSeq) under \(previousEpoch), then seq \(seq) under \(epoch)"
        case .ackedMissing(let op, let ackedSeq):
            what = "op \(op) was acknowledged at seq \(ackedSeq) but no client received it"
        case .ackMismatch(let op, let acked, let found):
            what = "op \(op) was acknowledged as \(acked) but the log holds it as \(found)"
        case .duplicated(let op, let seqs):
            what = "op \(op) appears \(seqs.count) times, at seqs \(seqs.map(String.init).joined(separator: ", "))"
        case .rejectedPresent(let op, let seqs):
            what = "op \(op) was rejected but appears at seq \(seqs.map(String.init).joined(separator: ", "))"
        case .foreign(let seq, let text, let issuer):
            what = "seq \(seq) holds chat '\(text)' from \(issuer), which no client of this meeting sent"
        case .incompleteView(let client, let lastSeq, let required):
            what = "\(client) received up to seq \(lastSeq) only; the last acknowledged op is at seq \(required)"
        }
        return "\(meeting): \(what)"
    }
}

/// Checks one meeting's histories against the contract:
/// - every client saw one order: at a given seq every client received the same entry;
/// - within a client's view seqs are contiguous (a snapshot welcome may skip ahead) and
///   epochs never go back;
/// - every acknowledged op appears exactly once, at the seq and epoch of its ack, and every
///   client's view reaches the last acknowledged op;
/// - no rejected op appears; an op whose outcome is unknown appears at most once;
/// - no chat entry appears that no client sent.
public enum ChaosCheck {
    public static func check(_ history: MeetingHistory) -> [ChaosAnomaly] {
        var found: [ChaosAnomaly.Kind] = []
        for view in history.clients { found += checkOrder(view) }
        let (log, divergences) = mergedLog(history.clients)
        found += divergences
        found += checkOps(history.clients, log: log)
        return found.map { ChaosAnomaly(meeting: history.meeting, $0) }
    }

    public static func check(_ histories: [MeetingHistory]) -> [ChaosAnomaly] {
        histories.flatMap(check)
    }

    /// Contiguity within segments, increase across them, and epochs that never go back.
    static func checkOrder(_ view: ClientView) -> [ChaosAnomaly.Kind] {
        var found: [ChaosAnomaly.Kind] = []
        var previous: LogEntry?
        for segment in view.segments {
            for (index, entry) in segment.enumerated() {
                if let previous {
                    if entry.seq <= previous.seq {
                        // Its epoch going back too is part of the same anomaly.
                        found.append(.outOfOrder(client: view.client, after: previous.seq, received: entry.seq))
                    } else if index > 0, entry.seq != previous.seq + 1 {
                        found.append(.gap(client: view.client, expected: previous.seq + 1, received: entry.seq))
                    }
                    if entry.seq > previous.seq, entry.epoch < previous.epoch {
                        found.append(.epochRegression(client: view.client, seq: entry.seq, epoch: entry.epoch,
                                                      previousSeq: previous.seq, previousEpoch: previous.epoch))
                    }
                }
                previous = entry
            }
        }
        return found
    }

    /// The one log every client should have seen, seq → entry, and a divergence for every seq
    /// at which some client received a different entry than the first client that had it.
    static func mergedLog(_ views: [ClientView]) -> ([Seq: LogEntry], [ChaosAnomaly.Kind]) {
        var log: [Seq: (client: String, entry: LogEntry)] = [:]
        var divergent: Set<Seq> = []
        var found: [ChaosAnomaly.Kind] = []
        for view in views {
            for entry in view.segments.joined() {
                guard let first = log[entry.seq] else {
                    log[entry.seq] = (view.client, entry)
                    continue
                }
                if first.entry != entry, first.client != view.client, divergent.insert(entry.seq).inserted {
                    found.append(.divergence(seq: entry.seq, client: first.client, entry: summary(first.entry),
                                             otherClient: view.client, otherEntry: summary(entry)))
                }
            }
        }
        return (log.mapValues(\.entry), found)
    }

    static func checkOps(_ views: [ClientView], log: [Seq: LogEntry]) -> [ChaosAnomaly.Kind] {
        var found: [ChaosAnomaly.Kind] = []
        // Where each chat text occurs in the log, in seq order.
        var occurrences: [String: [Seq]] = [:]
        for seq in log.keys.sorted() {
            if case .chat(let text) = log[seq]!.operation { occurrences[text, default: []].append(seq) }
        }
        // Who sent each op; the participant is nil when the client was never welcomed.
        struct Sender { var participant: ParticipantID? }
        var senders: [String: Sender] = [:]
        var requiredSeq: Seq = 0
        for view in views {
            for op in view.sent {
                senders[op.text] = Sender(participant: view.participant)
                let seqs = occurrences[op.text] ?? []
                switch op.fate {
                case .acked(let opID, let seq, let epoch):
                    requiredSeq = max(requiredSeq, seq)
                    if seqs.isEmpty {
                        found.append(.ackedMissing(op: op.text, ackedSeq: seq))
                    } else if seqs.count > 1 {
                        found.append(.duplicated(op: op.text, seqs: seqs))
                    } else if let entry = log[seqs[0]], entry.seq != seq || entry.epoch != epoch || entry.opID != opID {
                        found.append(.ackMismatch(op: op.text, acked: "\(opID) at seq \(seq) (\(epoch))",
                                                  found: "\(entry.opID?.rawValue ?? "no op id") at seq \(entry.seq) (\(entry.epoch))"))
                    }
                case .rejected:
                    if !seqs.isEmpty { found.append(.rejectedPresent(op: op.text, seqs: seqs)) }
                case .unknown:
                    if seqs.count > 1 { found.append(.duplicated(op: op.text, seqs: seqs)) }
                }
            }
        }
        for seq in log.keys.sorted() {
            let entry = log[seq]!
            guard case .chat(let text) = entry.operation else { continue }
            // Unsent, or sent by a client whose participant is known and is not the issuer.
            if let sender = senders[text], sender.participant.map({ entry.issuer == .participant($0) }) ?? true { continue }
            found.append(.foreign(seq: seq, text: text, issuer: "\(entry.issuer)"))
        }
        for view in views where view.lastSeq < requiredSeq {
            found.append(.incompleteView(client: view.client, lastSeq: view.lastSeq, required: requiredSeq))
        }
        return found
    }

    /// One entry in a line: "seq 7 (e2) chat 'c1-3' from p-abc (op k2-4)", or for other
    /// operations their wire form: "seq 4 (e2) {"lock":{}} from p-abc".
    static func summary(_ entry: LogEntry) -> String {
        let what: String
        if case .chat(let text) = entry.operation {
            what = "chat '\(text)'"
        } else {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            let wire = (try? encoder.encode(entry.operation)).map { String(decoding: $0, as: UTF8.self) } ?? entry.operation.kind
            what = wire.count > 160 ? String(wire.prefix(160)) + "…" : wire
        }
        let op = entry.opID.map { " (op \($0))" } ?? ""
        return "seq \(entry.seq) (\(entry.epoch)) \(what) from \(entry.issuer)\(op)"
    }
}
