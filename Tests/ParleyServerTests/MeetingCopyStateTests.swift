import ParleyCore
import ParleyProtocol
@testable import ParleyServer
import Testing

/// A host's rules and an edge copy's rules wired together, without sockets or a store:
/// what each client sees, frame by frame, when participants sit on both servers, and when
/// the host fails over behind the copy.
@Suite("MeetingCopyState: participants served from a copy of the meeting on another server")
struct MeetingCopyStateTests {
    static let ada = MeetingJoiner(participant: "ada", name: "Ada", role: .host)
    static let bob = MeetingJoiner(participant: "bob", name: "Bob", role: .attendee)
    static let carol = MeetingJoiner(participant: "carol", name: "Carol", role: .attendee)

    /// One host, one copy on another server, and the store between them. Connections below
    /// 100 are the host's, from 100 the copy's. Messages between the servers queue and are
    /// delivered by ``settle()``, in order, unless the link is cut.
    struct Pair {
        var host: MeetingHostState<Int>
        var copy: MeetingCopyState<Int>
        var stored: [LogEntry] = []
        /// What each client connection received, in order.
        var seen: [Int: [String]] = [:]
        var upward: [CopyRequest] = []
        var downward: [Downward] = []
        var copyID = CopyID(1)
        var now: Millis = 1_000
        var commitsHeld = false
        /// What the copy's votes decided, in order.
        var verdicts: [String] = []

        enum Downward {
            case entries([LogEntry])
            case notice(CopyNotice)
        }

        init() {
            let meeting = Meeting(id: "standup", title: "Standup")
            host = MeetingHostState(log: MeetingLog(meeting: meeting, epoch: Epoch(1)), limits: ConnectionLimits(),
                                    asksAdmission: false, snapshotEveryEntries: 1_000)
            copy = MeetingCopyState(log: try! MeetingLog(standbyFrom: Snapshot(meeting: meeting, seq: 0, epoch: Epoch(1),
                                                                                outcomes: OpOutcomes(capacity: 100)), entries: []),
                                    limits: ConnectionLimits(), asksAdmission: false)
            take(copy.linkStarted())
        }

        mutating func tick() -> Millis {
            now += 1
            return now
        }

        mutating func take(_ actions: [MeetingHostState<Int>.Action]) {
            for action in actions {
                switch action {
                case .send(let c, let frame): record(c, frame)
                case .fail(let c, let error): seen[c, default: []].append("error \(error.code.rawValue)")
                case .welcome(let c, _, let welcome, let replay):
                    seen[c, default: []].append("welcome \(welcome.mode.rawValue) \(welcome.seq)")
                    for entry in replay { seen[c, default: []].append(Self.describe(entry)) }
                case .commit(let entries):
                    guard !commitsHeld else { continue }
                    stored += entries
                    take(host.committed(at: tick()))
                case .deliver(let entries, let to, let acks): deliver(entries, to: to, acks: acks)
                case .relay(_, let from, let to): for c in to { seen[c, default: []].append("signal from \(from)") }
                case .replicate(let entries): downward.append(.entries(entries))
                case .notify(let id, let notice): if id == copyID { downward.append(.notice(notice)) }
                case .close, .askAdmission, .attendance, .finalCheckpoint, .log, .stop: break
                }
            }
        }

        mutating func take(_ actions: [MeetingCopyState<Int>.Action]) {
            for action in actions {
                switch action {
                case .send(let c, let frame): record(c, frame)
                case .fail(let c, let error): seen[c, default: []].append("error \(error.code.rawValue)")
                case .welcome(let c, _, let welcome, let replay):
                    seen[c, default: []].append("welcome \(welcome.mode.rawValue) \(welcome.seq)")
                    for entry in replay { seen[c, default: []].append(Self.describe(entry)) }
                case .deliver(let entries, let to, let acks): deliver(entries, to: to, acks: acks)
                case .relay(_, let from, let to): for c in to { seen[c, default: []].append("signal from \(from)") }
                case .forward(let request): upward.append(request)
                case .hostOutvoted(let seq, _, _): verdicts.append("host outvoted at \(seq)")
                case .rebuild: verdicts.append("rebuild")
                case .close, .askAdmission, .log: break
                }
            }
        }

        mutating func record(_ c: Int, _ frame: ServerFrame) {
            switch frame {
            case .ack(let id, let epoch, let seq): seen[c, default: []].append("ack \(id) \(seq) epoch \(epoch.rawValue)")
            case .reject(let id, let rejection): seen[c, default: []].append("reject \(id) \(rejection.code.rawValue)")
            case .error(let error): seen[c, default: []].append("error \(error.code.rawValue)")
            default: seen[c, default: []].append("frame")
            }
        }

        mutating func deliver(_ entries: ArraySlice<LogEntry>, to: [(Int, ParticipantID)], acks: [Seq: [(Int, OpID)]]) {
            for entry in entries {
                for (c, _) in to { seen[c, default: []].append(Self.describe(entry)) }
                for (c, id) in acks[entry.seq] ?? [] { seen[c, default: []].append("ack \(id) \(entry.seq) epoch \(entry.epoch.rawValue)") }
            }
        }

        static func describe(_ entry: LogEntry) -> String {
            switch entry.operation {
            case .chat(let text): "\(entry.seq) chat \(text)"
            case .join(let p, _, _): "\(entry.seq) join \(p)"
            case .leave(let p): "\(entry.seq) leave \(p)"
            case .presence(let p, let presence): "\(entry.seq) \(p) \(presence.rawValue)"
            default: "\(entry.seq) \(entry.operation.kind)"
            }
        }

        /// Delivers what is queued between the servers, both ways, until nothing is.
        mutating func settle() {
            while !upward.isEmpty || !downward.isEmpty {
                while !upward.isEmpty { take(host.copyRequest(copyID, upward.removeFirst(), at: tick())) }
                take(host.flush())
                while !downward.isEmpty {
                    switch downward.removeFirst() {
                    case .entries(let entries): take(copy.entries(entries, at: tick()))
                    case .notice(let notice): take(copy.notice(notice))
                    }
                }
            }
        }

        /// The host dies with whatever it has not committed; another takes over under the
        /// next epoch from what the store holds, and the copy links to it after `copyHolds`.
        mutating func failOver() {
            upward.removeAll()
            downward.removeAll()
            copy.linkEnded()
            var log = try! MeetingLog(standbyFrom: Snapshot(meeting: Meeting(id: "standup", title: "Standup"), seq: 0, epoch: Epoch(1),
                                                            outcomes: OpOutcomes(capacity: 100)), entries: stored)
            try! log.promote(to: Epoch(2), catchingUp: [LogEntry]())
            host = MeetingHostState(log: log, limits: ConnectionLimits(), asksAdmission: false, snapshotEveryEntries: 1_000)
            commitsHeld = false
            copyID = CopyID(2)
            // The copy subscribes after what it holds: the new host sends what it lacks first.
            if case .entries(let missing) = host.subscription(after: copy.log.lastSeq), !missing.isEmpty {
                downward.append(.entries(missing))
            }
            take(copy.linkStarted())
            settle()
        }
    }

    @Test("a participant on the copy and one on the host chat: each sees the other's message, and the copy's op is acked only once the copy holds its committed entry")
    func chatAcrossTwoServers() {
        var pair = Pair()
        pair.take(pair.host.attach(1, Self.ada, resume: nil, at: pair.tick()))
        pair.take(pair.host.flush())
        pair.settle()
        pair.take(pair.copy.attach(100, Self.bob, resume: nil, at: pair.tick()))
        pair.settle()
        pair.take(pair.copy.op(100, "b1", .chat(text: "hi from the edge"), at: pair.tick()))
        #expect(pair.seen[100]?.contains { $0.hasPrefix("ack") } == false, "not acked before the host committed it")
        pair.settle()
        pair.take(pair.host.op(1, "a1", .chat(text: "hi from the host"), at: pair.tick()))
        pair.take(pair.host.flush())
        pair.settle()
        #expect(pair.seen[1] == ["welcome snapshot 0", "1 join ada", "2 join bob", "3 chat hi from the edge", "4 chat hi from the host", "ack a1 4 epoch 1"])
        #expect(pair.seen[100] == ["welcome snapshot 1", "2 join bob", "3 chat hi from the edge", "ack b1 3 epoch 1", "4 chat hi from the host"])
        #expect(pair.host.log.meeting.participant("bob")?.presence == .connected)
    }

    @Test("the host dies with the copy's op uncommitted: the copy's client keeps its connection, the op is passed up again under its id to the new host and acked once, under the new epoch")
    func failoverWithUncommittedOp() {
        var pair = Pair()
        pair.take(pair.copy.attach(100, Self.bob, resume: nil, at: pair.tick()))
        pair.settle()
        pair.commitsHeld = true
        pair.take(pair.copy.op(100, "b1", .chat(text: "during"), at: pair.tick()))
        pair.settle()
        pair.failOver()
        #expect(pair.seen[100] == ["welcome snapshot 0", "1 join bob", "2 chat during", "ack b1 2 epoch 2"])
        #expect(pair.host.log.meeting.participant("bob")?.presence == .connected)
    }

    @Test("the host dies after committing the copy's op but before streaming it: the new host streams the entry, the op passed up again is its duplicate, and the client gets one ack")
    func failoverWithCommittedButUnstreamedOp() {
        var pair = Pair()
        pair.take(pair.copy.attach(100, Self.bob, resume: nil, at: pair.tick()))
        pair.settle()
        pair.take(pair.copy.op(100, "b1", .chat(text: "stored"), at: pair.tick()))
        // Committed (stored), but the stream to the copy is lost with the host.
        pair.take(pair.host.copyRequest(pair.copyID, pair.upward.removeFirst(), at: pair.tick()))
        pair.take(pair.host.flush())
        pair.downward.removeAll()
        pair.failOver()
        #expect(pair.seen[100] == ["welcome snapshot 0", "1 join bob", "2 chat stored", "ack b1 2 epoch 1"])
        #expect(pair.host.log.lastSeq == 2, "nothing sequenced twice")
    }

    @Test("a client resuming on the copy from a seq the copy does not hold yet is welcomed once the stream gets there, with exactly what it missed")
    func resumeAheadOfTheCopy() {
        var pair = Pair()
        pair.take(pair.host.attach(1, Self.ada, resume: nil, at: pair.tick()))
        pair.take(pair.host.op(1, "a1", .chat(text: "one"), at: pair.tick()))
        pair.take(pair.host.op(1, "a2", .chat(text: "two"), at: pair.tick()))
        pair.take(pair.host.flush())
        // The copy has not had the stream yet; Bob saw seq 2 elsewhere.
        let stream = pair.downward
        pair.downward.removeAll()
        pair.take(pair.copy.attach(100, Self.carol, resume: ResumePoint(meeting: "standup", seq: 2), at: pair.tick()))
        #expect(pair.seen[100] == nil, "waits for the copy to hold seq 2")
        pair.downward = stream
        pair.settle()
        #expect(pair.seen[100]?.prefix(2) == ["welcome replay 2", "3 chat two"])
    }

    @Test("the same participant attaching on the copy replaces its connection on the host, and signals cross between the servers")
    func replaceAcrossServersAndSignals() {
        var pair = Pair()
        pair.take(pair.host.attach(1, Self.ada, resume: nil, at: pair.tick()))
        pair.take(pair.host.attach(2, Self.carol, resume: nil, at: pair.tick()))
        pair.take(pair.host.flush())
        pair.settle()
        pair.take(pair.copy.attach(100, Self.ada, resume: ResumePoint(meeting: "standup", seq: 2), at: pair.tick()))
        pair.settle()
        #expect(pair.seen[1]?.last == "error replaced")
        #expect(pair.host.log.meeting.participant("ada")?.presence == .connected, "no reconnecting blip: she is attached on the copy")
        pair.take(pair.copy.signal(100, .typing(active: true)))
        pair.settle()
        #expect(pair.seen[2]?.last == "signal from ada")
        pair.take(pair.host.signal(2, .typing(active: true)))
        pair.settle()
        #expect(pair.seen[100]?.last == "signal from carol")
    }

    @Test("a participant welcomed on the copy before any link to the host is up joins when the link starts (found by the edge process test)")
    func attachedBeforeTheLink() {
        var pair = Pair()
        pair.copy.linkEnded()
        pair.take(pair.copy.attach(100, Self.carol, resume: nil, at: pair.tick()))
        pair.take(pair.copy.op(100, "c1", .chat(text: "early"), at: pair.tick()))
        #expect(pair.upward.isEmpty, "nothing goes up without a link")
        pair.take(pair.copy.linkStarted())
        pair.settle()
        #expect(pair.seen[100] == ["welcome snapshot 0", "1 join carol", "2 chat early", "ack c1 2 epoch 1"])
    }

    @Test("the link to the copy is lost: its participants are reconnecting until it links again and says who is attached")
    func copyGoneAndBack() {
        var pair = Pair()
        pair.take(pair.copy.attach(100, Self.bob, resume: nil, at: pair.tick()))
        pair.settle()
        pair.take(pair.host.copyGone(pair.copyID, at: pair.tick()))
        pair.copy.linkEnded()
        pair.take(pair.host.flush())
        #expect(pair.host.log.meeting.participant("bob")?.presence == .reconnecting)
        pair.copyID = CopyID(7)
        pair.take(pair.copy.linkStarted())
        pair.settle()
        #expect(pair.host.log.meeting.participant("bob")?.presence == .connected)
        #expect(pair.seen[100]?.suffix(2) == ["2 bob reconnecting", "3 bob connected"])
    }

    /// Alice on the host sends three chats; the copy follows. Returns the host's digest
    /// at the last seq, as the host's loop would publish it at a checkpoint there.
    static func chatted(_ pair: inout Pair, corrupt: (inout Pair) -> Void = { _ in }) -> (MeetingDigest, Seq) {
        pair.take(pair.host.attach(1, Self.ada, resume: nil, at: pair.tick()))
        for index in 1...3 { pair.take(pair.host.op(1, OpID("a\(index)"), .chat(text: "chat \(index)"), at: pair.tick())) }
        pair.take(pair.host.flush())
        pair.settle()
        corrupt(&pair)
        return (MeetingDigest(of: pair.host.log.meeting), pair.host.log.committedSeq)
    }

    static func garble(_ meeting: inout Meeting) { meeting.chat[1].text = "garbled" }

    @Test("copies vote at a checkpoint: a copy that agrees with its host does nothing")
    func digestsAgree() {
        var pair = Pair()
        let (digest, seq) = Self.chatted(&pair)
        pair.take(pair.copy.hostDigest(digest, at: seq))
        #expect(pair.verdicts.isEmpty)
    }

    @Test("a copy whose state went wrong is outvoted by the host and the state rebuilt from the last agreed checkpoint plus the log: it is rebuilt")
    func corruptedCopyOutvoted() {
        var pair = Pair()
        let (digest, seq) = Self.chatted(&pair) { $0.copy.corruptStateForTesting(Self.garble) }
        pair.take(pair.copy.hostDigest(digest, at: seq))
        #expect(pair.verdicts == ["rebuild"])
        #expect(pair.copy.awaitsRebuild, "an outvoted copy is never promoted from")
    }

    @Test("a host whose state went wrong after a checkpoint both agreed on is outvoted by the copy and the state rebuilt from that checkpoint: the copy reports it for demotion")
    func corruptedHostOutvoted() {
        var pair = Pair()
        let (first, firstSeq) = Self.chatted(&pair)
        pair.take(pair.copy.hostDigest(first, at: firstSeq))
        #expect(pair.verdicts.isEmpty, "agreed at \(firstSeq)")
        pair.take(pair.host.op(1, "a9", .chat(text: "after"), at: pair.tick()))
        pair.take(pair.host.flush())
        pair.settle()
        pair.host.corruptStateForTesting(Self.garble)
        let seq = pair.host.log.committedSeq
        pair.take(pair.copy.hostDigest(MeetingDigest(of: pair.host.log.meeting), at: seq))
        #expect(pair.verdicts == ["host outvoted at \(seq)"])
    }

    @Test("without a checkpoint both agreed on (the copy was loaded from the store, which a wrong host may have checkpointed), a disagreement never outvotes the host: the copy rebuilds from the store")
    func unvotedBaseNeverOutvotesTheHost() {
        var pair = Pair()
        let (digest, seq) = Self.chatted(&pair) { $0.host.corruptStateForTesting(Self.garble) }
        pair.take(pair.copy.hostDigest(digest, at: seq))
        #expect(pair.verdicts == ["rebuild"])
    }

    @Test("a batch that stops following on part-way: what the copy took is delivered before it asks to be rebuilt, so its clients are where it is (review of stop 27)")
    func partlyTakenBatchIsDelivered() {
        var pair = Pair()
        pair.take(pair.copy.attach(100, Self.bob, resume: nil, at: pair.tick()))
        pair.settle()
        let held = pair.copy.log.lastSeq
        let next = LogEntry(seq: held + 1, epoch: Epoch(1), at: 5_000, issuer: .participant("bob"), opID: "b7",
                            operation: .chat(text: "taken"))
        var gapped = next
        gapped.seq = held + 3
        pair.take(pair.copy.entries([next, gapped], at: pair.tick()))
        #expect(pair.copy.log.lastSeq == held + 1)
        #expect(pair.seen[100]?.last == "\(held + 1) chat taken", "the entry taken was delivered: \(pair.seen[100] ?? [])")
        #expect(pair.verdicts == ["rebuild"])
        #expect(pair.copy.awaitsRebuild, "nothing may be promoted from it until it is rebuilt")
    }

    @Test("a digest for another seq than the copy holds is not voted on")
    func digestAtAnotherSeq() {
        var pair = Pair()
        let (_, seq) = Self.chatted(&pair) { $0.copy.corruptStateForTesting(Self.garble) }
        pair.take(pair.copy.hostDigest(MeetingDigest(hex: "00"), at: seq - 1))
        #expect(pair.verdicts.isEmpty)
    }

    @Test("a refused op comes back to the copy's client as a reject; a goodbye said while the link is down reaches the next host")
    func rejectAndLeaveAcrossALinkLoss() {
        var pair = Pair()
        pair.take(pair.copy.attach(100, Self.bob, resume: nil, at: pair.tick()))
        pair.settle()
        pair.take(pair.copy.op(100, "b1", .lock, at: pair.tick()))
        pair.settle()
        #expect(pair.seen[100]?.last == "reject b1 not_host")
        pair.copy.linkEnded()
        pair.take(pair.copy.leave(100, at: pair.tick()))
        pair.failOver()
        #expect(pair.host.log.meeting.participant("bob")?.presence == .left)
    }

    @Test("an edge copy stops when unused only: not while a participant is attached, and at once when the last one has gone; the host sees them leave")
    func unusedCopyStops() {
        var pair = Pair()
        pair.take(pair.copy.attach(100, Self.bob, resume: nil, at: pair.tick()))
        pair.settle()
        let whileAttached = pair.copy.stopIfUnused()
        #expect(!whileAttached, "bob is attached")
        #expect(!pair.copy.stopped)
        pair.take(pair.copy.leave(100, at: pair.tick()))
        pair.settle()
        let afterLeaving = pair.copy.stopIfUnused()
        let again = pair.copy.stopIfUnused()
        #expect(afterLeaving)
        #expect(pair.copy.stopped)
        #expect(!again, "it stops once")
        #expect(pair.host.log.meeting.participant("bob")?.presence == .left)
    }
}
