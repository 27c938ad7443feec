import ParleyChaos
import ParleyCore
import Testing

/// Hand-built histories for one meeting with two clients, Ann (`c0`, p-ann) and Bob (`c1`,
/// p-bob). The clean log is:
///
///     1 e1 join bob          (system)
///     2 e1 chat c0-1         Ann, acked
///     3 e2 chat c1-1         Bob, acked (after a failover: epoch 2)
///     4 e2 presence bob      (system)
///
/// Ann sent c0-2 with no answer (it never committed) and Bob sent c1-2, rejected. Each
/// anomaly test changes exactly one thing and expects exactly that anomaly.
@Suite("ChaosCheck: every anomaly is found, and a clean history has none")
struct ChaosCheckTests {
    static let join = LogEntry(seq: 1, epoch: Epoch(1), at: 1_000, issuer: .system, opID: nil,
                               operation: .join(participant: "p-bob", name: "Bob", role: .attendee))
    static func chat(_ seq: Seq, _ text: String, by participant: ParticipantID, op: OpID, epoch: UInt64) -> LogEntry {
        LogEntry(seq: seq, epoch: Epoch(epoch), at: 1_000 + Int64(seq), issuer: .participant(participant), opID: op,
                 operation: .chat(text: text))
    }
    static let annChat = chat(2, "c0-1", by: "p-ann", op: "a-1", epoch: 1)
    static let bobChat = chat(3, "c1-1", by: "p-bob", op: "b-1", epoch: 2)
    static let presence = LogEntry(seq: 4, epoch: Epoch(2), at: 1_004, issuer: .system, opID: nil,
                                   operation: .presence(participant: "p-bob", presence: .reconnecting))
    static let log = [join, annChat, bobChat, presence]

    static let annSent = [SentOp(text: "c0-1", fate: .acked(opID: "a-1", seq: 2, epoch: Epoch(1))),
                          SentOp(text: "c0-2", fate: .unknown(reason: "session ended"))]
    static let bobSent = [SentOp(text: "c1-1", fate: .acked(opID: "b-1", seq: 3, epoch: Epoch(2))),
                          SentOp(text: "c1-2", fate: .rejected(reason: "meeting_locked"))]

    static func ann(_ segments: [[LogEntry]] = [log], sent: [SentOp] = annSent) -> ClientView {
        ClientView(client: "c0", participant: "p-ann", segments: segments, sent: sent)
    }
    static func bob(_ segments: [[LogEntry]] = [Array(log.dropFirst())], sent: [SentOp] = bobSent) -> ClientView {
        // Bob joined at seq 1: his snapshot covers it, his entries start at 2.
        ClientView(client: "c1", participant: "p-bob", segments: segments, sent: sent)
    }
    static func check(_ clients: ClientView...) -> [ChaosAnomaly] {
        ChaosCheck.check(MeetingHistory(meeting: "m-1", clients: clients))
    }

    // MARK: - Clean

    @Test("a clean history has no anomaly")
    func clean() {
        #expect(Self.check(Self.ann(), Self.bob()) == [])
    }

    @Test("a snapshot welcome may skip ahead; an op of unknown outcome may be there once")
    func snapshotSkipAndUnknownOnce() {
        let unknownLanded = Self.chat(5, "c0-2", by: "p-ann", op: "a-2", epoch: 2)
        let ann = Self.ann([Self.log + [unknownLanded]])
        // Bob fell behind and was welcomed with a snapshot at seq 3: he never saw seq 3.
        let bob = Self.bob([[Self.annChat], [Self.presence, unknownLanded]])
        #expect(Self.check(ann, bob) == [])
    }

    // MARK: - One order

    @Test("two clients with different entries at one seq diverge")
    func divergence() {
        var other = Self.presence
        other.operation = .presence(participant: "p-bob", presence: .connected)
        let anomalies = Self.check(Self.ann(), Self.bob([[Self.annChat, Self.bobChat, other]]))
        #expect(anomalies.map(\.code) == ["divergence"])
        #expect(anomalies.first?.kind == .divergence(
            seq: 4, client: "c0", entry: #"seq 4 (e2) {"presence":{"participant":"p-bob","presence":"reconnecting"}} from system"#,
            otherClient: "c1", otherEntry: #"seq 4 (e2) {"presence":{"participant":"p-bob","presence":"connected"}} from system"#))
    }

    @Test("a skipped seq within a segment is a gap")
    func gap() {
        let anomalies = Self.check(Self.ann(), Self.bob([[Self.annChat, Self.presence]]))
        #expect(anomalies.map(\.kind) == [.gap(client: "c1", expected: 3, received: 4)])
        #expect(anomalies.first?.description == "m-1: c1 expected seq 3 next but received 4")
    }

    @Test("a seq received twice is out of order")
    func repeatedSeq() {
        let anomalies = Self.check(Self.ann(), Self.bob([[Self.annChat, Self.bobChat, Self.bobChat, Self.presence]]))
        #expect(anomalies.map(\.kind) == [.outOfOrder(client: "c1", after: 3, received: 3)])
    }

    @Test("a snapshot that goes back is out of order")
    func snapshotBackwards() {
        let anomalies = Self.check(Self.ann(), Self.bob([[Self.annChat, Self.bobChat], [Self.annChat, Self.bobChat, Self.presence]]))
        #expect(anomalies.map(\.kind) == [.outOfOrder(client: "c1", after: 3, received: 2)])
    }

    @Test("an epoch lower than the one before it is a regression")
    func epochRegression() {
        // Ann alone, and no chat of Bob's in her log.
        var ahead = Self.presence
        ahead.seq = 3
        var stale = Self.presence
        stale.epoch = Epoch(1)
        let anomalies = Self.check(Self.ann([[Self.join, Self.annChat, ahead, stale]]))
        #expect(anomalies.map(\.kind) == [.epochRegression(client: "c0", seq: 4, epoch: Epoch(1), previousSeq: 3,
                                                           previousEpoch: Epoch(2))])
    }

    // MARK: - Ops

    @Test("an acknowledged op that nobody received is missing")
    func ackedMissing() {
        // Acked at seq 4, which holds something else.
        let sent = Self.annSent + [SentOp(text: "c0-3", fate: .acked(opID: "a-3", seq: 4, epoch: Epoch(2)))]
        let anomalies = Self.check(Self.ann(sent: sent), Self.bob())
        #expect(anomalies.map(\.kind) == [.ackedMissing(op: "c0-3", ackedSeq: 4)])
    }

    @Test("an acknowledged op found at another seq than its ack said is a mismatch")
    func ackedElsewhere() {
        let sent = [SentOp(text: "c0-1", fate: .acked(opID: "a-1", seq: 3, epoch: Epoch(1)))]
        let anomalies = Self.check(Self.ann(sent: sent), Self.bob())
        #expect(anomalies.map(\.code) == ["ack_mismatch"])
        #expect(anomalies.first?.description
            == "m-1: op c0-1 was acknowledged as a-1 at seq 3 (e1) but the log holds it as a-1 at seq 2 (e1)")
    }

    @Test("an acknowledged op under another epoch or op id than its ack said is a mismatch")
    func ackedUnderOtherEpoch() {
        let sent = [SentOp(text: "c0-1", fate: .acked(opID: "a-1", seq: 2, epoch: Epoch(2)))]
        #expect(Self.check(Self.ann(sent: sent), Self.bob()).map(\.code) == ["ack_mismatch"])
        let renamed = [SentOp(text: "c0-1", fate: .acked(opID: "a-9", seq: 2, epoch: Epoch(1)))]
        #expect(Self.check(Self.ann(sent: renamed), Self.bob()).map(\.code) == ["ack_mismatch"])
    }

    @Test("an acknowledged op applied twice is duplicated")
    func ackedTwice() {
        let again = Self.chat(5, "c0-1", by: "p-ann", op: "a-1", epoch: 2)
        let anomalies = Self.check(Self.ann([Self.log + [again]]), Self.bob([Array(Self.log.dropFirst()) + [again]]))
        #expect(anomalies.map(\.kind) == [.duplicated(op: "c0-1", seqs: [2, 5])])
    }

    @Test("an op of unknown outcome applied twice is duplicated")
    func unknownTwice() {
        let once = Self.chat(5, "c0-2", by: "p-ann", op: "a-2", epoch: 2)
        let twice = Self.chat(6, "c0-2", by: "p-ann", op: "a-2", epoch: 2)
        let anomalies = Self.check(Self.ann([Self.log + [once, twice]]), Self.bob([Array(Self.log.dropFirst()) + [once, twice]]))
        #expect(anomalies.map(\.kind) == [.duplicated(op: "c0-2", seqs: [5, 6])])
    }

    @Test("a rejected op in the log is an anomaly")
    func rejectedPresent() {
        let landed = Self.chat(5, "c1-2", by: "p-bob", op: "b-2", epoch: 2)
        let anomalies = Self.check(Self.ann([Self.log + [landed]]), Self.bob([Array(Self.log.dropFirst()) + [landed]]))
        #expect(anomalies.map(\.kind) == [.rejectedPresent(op: "c1-2", seqs: [5])])
    }

    @Test("a chat nobody sent, or sent under another participant, is foreign")
    func foreign() {
        let stranger = Self.chat(5, "c7-1", by: "p-eve", op: "e-1", epoch: 2)
        #expect(Self.check(Self.ann([Self.log + [stranger]]), Self.bob([Array(Self.log.dropFirst()) + [stranger]])).map(\.kind)
            == [.foreign(seq: 5, text: "c7-1", issuer: "p-eve")])
        // Ann's op, issued as Bob.
        var impostor = Self.annChat
        impostor.issuer = .participant("p-bob")
        let log = [Self.join, impostor, Self.bobChat, Self.presence]
        #expect(Self.check(Self.ann([log]), Self.bob([Array(log.dropFirst())])).map(\.kind)
            == [.foreign(seq: 2, text: "c0-1", issuer: "p-bob")])
    }

    @Test("a client whose history ends before the last acknowledged op has an incomplete view")
    func incompleteView() {
        let anomalies = Self.check(Self.ann(), Self.bob([[Self.annChat]]))
        #expect(anomalies.map(\.kind) == [.incompleteView(client: "c1", lastSeq: 2, required: 3)])
    }

    @Test("anomalies of several meetings are told apart by meeting")
    func severalMeetings() {
        let clean = MeetingHistory(meeting: "m-1", clients: [Self.ann(), Self.bob()])
        let broken = MeetingHistory(meeting: "m-2", clients: [Self.ann(), Self.bob([[Self.annChat]])])
        let anomalies = ChaosCheck.check([clean, broken])
        #expect(anomalies.map(\.meeting) == ["m-2"])
        #expect(anomalies.first?.description.hasPrefix("m-2: c1 received up to seq 2 only") == true)
    }
}
