import ParleyCore
import ParleyProtocol
@testable import ParleyServer
import Testing

/// The host's rules on their own: connections are numbers, the store and the license
/// service are whatever the test answers.
@Suite("MeetingHostState: the rules of hosting a meeting, without sockets or a store")
struct MeetingHostStateTests {
    typealias State = MeetingHostState<Int>

    static let ada = State.Joiner(participant: "ada", name: "Ada", role: .host)
    static let bob = State.Joiner(participant: "bob", name: "Bob", role: .attendee)

    static func host(asksAdmission: Bool = false) -> State {
        let meeting = Meeting(id: "standup", title: "Standup")
        return State(log: MeetingLog(meeting: meeting, epoch: Epoch(3)), limits: ConnectionLimits(), asksAdmission: asksAdmission,
                     snapshotEveryEntries: 1_000)
    }

    /// Ada attached on connection 1, her join committed at 101.
    static func hostWithAdaJoined() -> State {
        var host = Self.host()
        _ = host.attach(1, Self.ada, resume: nil, at: 100)
        _ = host.flush()
        _ = host.committed(at: 101)
        return host
    }

    /// A short, comparable account of actions.
    static func describe(_ actions: [State.Action]) -> [String] {
        actions.compactMap { action in
            switch action {
            case .send(let c, .ack(let id, let epoch, let seq)): "ack \(c) \(id) epoch \(epoch.rawValue) seq \(seq)"
            case .send(let c, .reject(let id, let rejection)): "reject \(c) \(id) \(rejection.code.rawValue)"
            case .send(let c, .error(let error)): "error \(c) \(error.code.rawValue)"
            case .send(let c, _): "send \(c)"
            case .fail(let c, let error): "fail \(c) \(error.code.rawValue)\(error.fatal ? " fatal" : "")"
            case .welcome(let c, let p, let welcome, let replay): "welcome \(c) \(p) \(welcome.mode.rawValue) seq \(welcome.seq) replay \(replay.count)"
            case .close(let c): "close \(c)"
            case .askAdmission(let c, let p): "ask admission \(c) \(p)"
            case .commit(let entries): "commit \(entries.map(\.seq))"
            case .deliver(let entries, let to, let acks):
                "deliver \(entries.map(\.seq)) to \(to.map(\.0).sorted()) acks \(acks.keys.sorted().map { "\($0):\(acks[$0]!.map(\.0))" })"
            case .relay(_, let from, let to): "relay from \(from) to \(to.sorted())"
            case .attendance(let record): "attendance \(record.participant) \(record.event.rawValue)"
            case .replicate(let entries): "replicate \(entries.map(\.seq))"
            case .notify(let copy, let notice): "notify \(copy) \(notice)"
            case .finalCheckpoint(let snapshot): "final checkpoint \(snapshot.seq)"
            case .log: nil
            case .stop(let closing): "stop closing \(closing.sorted())"
            }
        }
    }

    @Test("an op resent with a replay welcome is answered from the replay, even once commits have trimmed it and its outcome out of the window before it arrives")
    func resentOpAnsweredFromItsReplay() {
        // A window of two entries, and outcomes for two ops: what leaves the tail is forgotten.
        let window = ResumeWindow(minEntries: 2, minAgeMillis: 0, maxEntries: 2)
        var host = State(log: MeetingLog(meeting: Meeting(id: "standup", title: "Standup"), epoch: Epoch(3), window: window),
                         limits: ConnectionLimits(), asksAdmission: false, snapshotEveryEntries: 1_000)
        _ = host.attach(1, Self.ada, resume: nil, at: 100)
        _ = host.op(1, "o1", .chat(text: "one"), at: 101)
        _ = host.flush()
        _ = host.committed(at: 102)                                   // 1 join, 2 o1; its ack is lost
        _ = host.detach(1, at: 103)
        _ = host.flush()
        _ = host.committed(at: 104)                                   // 3 Ada reconnecting
        // Ada saw seq 1 only: she resumes from it, and the replay still holds her o1.
        #expect(Self.describe(host.attach(2, Self.ada, resume: ResumePoint(meeting: "standup", seq: 1), at: 105))
                == ["welcome 2 ada replay seq 1 replay 2"])
        _ = host.flush()
        _ = host.committed(at: 106)                                   // 4 Ada connected
        // Bob's ops move the window on before Ada's resent o1 arrives.
        _ = host.attach(3, Self.bob, resume: nil, at: 107)
        for index in 1...5 { _ = host.op(3, OpID("b\(index)"), .chat(text: "b"), at: 108) }
        _ = host.flush()
        _ = host.committed(at: 109)
        #expect(host.log.tail.first!.seq > 2, "o1's entry has left the window")
        #expect(Self.describe(host.op(2, "o1", .chat(text: "one"), at: 110)) == ["ack 2 o1 epoch 3 seq 2"])
        #expect(Self.describe(host.flush()).isEmpty, "nothing sequenced again")
    }

    @Test("an op is acknowledged only once its commit is stored, after its event")
    func ackAfterCommit() {
        var host = Self.host()
        #expect(Self.describe(host.attach(1, Self.ada, resume: nil, at: 100)) == ["welcome 1 ada snapshot seq 0 replay 0"])
        #expect(Self.describe(host.op(1, "o1", .chat(text: "hi"), at: 101)).isEmpty)
        #expect(Self.describe(host.flush()) == ["commit [1, 2]"])
        // Nothing more is committed while one commit is in flight.
        #expect(Self.describe(host.op(1, "o2", .chat(text: "again"), at: 102)).isEmpty)
        #expect(Self.describe(host.flush()).isEmpty)
        #expect(Self.describe(host.committed(at: 103)) == [
            "attendance ada joined", "replicate [1, 2]", "deliver [1, 2] to [1] acks [\"2:[1]\"]",
        ])
        #expect(Self.describe(host.flush()) == ["commit [3]"])
        #expect(Self.describe(host.committed(at: 104)) == ["replicate [3]", "deliver [3] to [1] acks [\"3:[1]\"]"])
        // A retry of a committed op is answered from the log, not sequenced again.
        #expect(Self.describe(host.op(1, "o1", .chat(text: "hi"), at: 105)) == ["ack 1 o1 epoch 3 seq 2"])
    }

    @Test("a fenced commit acknowledges nothing, sends every client to the locator and stops the host")
    func fenced() {
        var host = Self.hostWithAdaJoined()
        _ = host.attach(2, Self.bob, resume: nil, at: 102)
        _ = host.op(1, "o1", .chat(text: "lost"), at: 103)
        #expect(Self.describe(host.flush()) == ["commit [2, 3]"])
        #expect(Self.describe(host.fenced(current: Epoch(4))).sorted() == ["fail 1 moved fatal", "fail 2 moved fatal", "stop closing []"])
        #expect(host.stopped)
        #expect(Self.describe(host.op(1, "o2", .chat(text: "after"), at: 104)).isEmpty)
    }

    @Test("a commit the store refuses closes every connection with a fatal internal_error, so clients resume at once")
    func commitFailed() {
        var host = Self.host()
        _ = host.attach(1, Self.ada, resume: nil, at: 100)
        _ = host.flush()
        #expect(Self.describe(host.commitFailed("disk full")) == ["fail 1 internal_error fatal", "stop closing []"])
    }

    @Test("a join waits for the license service beside the meeting: others' ops are committed and answered meanwhile")
    func admissionDoesNotHoldUpTheMeeting() {
        var host = Self.host(asksAdmission: true)
        #expect(Self.describe(host.attach(1, Self.ada, resume: nil, at: 100)) == ["ask admission 1 ada"])
        #expect(Self.describe(host.admission(1, .admit, at: 101)) == ["welcome 1 ada snapshot seq 0 replay 0"])
        _ = host.flush()
        _ = host.committed(at: 102)
        // Bob's admission is outstanding while Ada chats.
        #expect(Self.describe(host.attach(2, Self.bob, resume: nil, at: 103)) == ["ask admission 2 bob"])
        _ = host.op(1, "o1", .chat(text: "still here"), at: 104)
        #expect(Self.describe(host.flush()) == ["commit [2]"])
        #expect(Self.describe(host.committed(at: 105)) == ["replicate [2]", "deliver [2] to [1] acks [\"2:[1]\"]"])
        #expect(Self.describe(host.admission(2, .refuse("the zone is full"), at: 106)) == ["fail 2 join_refused fatal"])
    }

    @Test("an admission answer for a connection that has gone is ignored")
    func admissionForAGoneConnection() {
        var host = Self.host(asksAdmission: true)
        _ = host.attach(1, Self.ada, resume: nil, at: 100)
        #expect(Self.describe(host.detach(1, at: 101)).isEmpty)
        #expect(Self.describe(host.admission(1, .admit, at: 102)).isEmpty)
        #expect(!host.hasUncommitted)
    }

    @Test("a returning participant is not asked about again, and a join refused by the rules is not asked about at all")
    func admissionOnlyForNewJoins() {
        var host = Self.host(asksAdmission: true)
        _ = host.attach(1, Self.ada, resume: nil, at: 100)
        _ = host.admission(1, .admit, at: 101)
        _ = host.flush()
        _ = host.committed(at: 102)
        _ = host.detach(1, at: 103)                       // reconnecting
        _ = host.flush()
        _ = host.committed(at: 104)
        #expect(Self.describe(host.attach(2, Self.ada, resume: ResumePoint(meeting: "standup", seq: 2), at: 105))
            == ["welcome 2 ada replay seq 2 replay 0"])
        var locked = Self.host(asksAdmission: true)
        _ = locked.attach(1, Self.ada, resume: nil, at: 100)
        _ = locked.admission(1, .admit, at: 100)
        _ = locked.op(1, "lock", .lock, at: 101)
        _ = locked.flush()
        _ = locked.committed(at: 102)
        #expect(Self.describe(locked.attach(2, Self.bob, resume: nil, at: 103)) == ["fail 2 join_refused fatal"])
    }

    @Test("a client that joins while entries are uncommitted is welcomed after they are stored, with them in its state")
    func welcomeWaitsForCommit() {
        var host = Self.host()
        _ = host.attach(1, Self.ada, resume: nil, at: 100)
        _ = host.op(1, "o1", .chat(text: "before bob"), at: 101)
        #expect(Self.describe(host.attach(2, Self.bob, resume: nil, at: 102)) == ["commit [1, 2]"])
        #expect(Self.describe(host.committed(at: 103)) == [
            "attendance ada joined", "replicate [1, 2]", "deliver [1, 2] to [1] acks [\"2:[1]\"]",
            "welcome 2 bob snapshot seq 2 replay 0",
        ])
    }

    @Test("two clients that join while a commit is in flight are welcomed one after the other, each after the other's join is stored")
    func twoWelcomesWaitingForOneCommit() {
        var host = Self.host()
        _ = host.attach(1, Self.ada, resume: nil, at: 100)
        #expect(Self.describe(host.flush()) == ["commit [1]"])
        #expect(Self.describe(host.attach(2, Self.bob, resume: nil, at: 101)).isEmpty)
        let carol = State.Joiner(participant: "carol", name: "Carol", role: .attendee)
        #expect(Self.describe(host.attach(3, carol, resume: nil, at: 102)).isEmpty)
        #expect(Self.describe(host.committed(at: 103)) == [
            "attendance ada joined", "replicate [1]", "deliver [1] to [1] acks []",
            "welcome 2 bob snapshot seq 1 replay 0", "commit [2]",
        ])
        #expect(Self.describe(host.committed(at: 104)).suffix(2) == ["deliver [2] to [1, 2] acks []", "welcome 3 carol snapshot seq 2 replay 0"])
        #expect(Self.describe(host.flush()) == ["commit [3]"])
    }

    @Test("a second connection of the same participant replaces the first")
    func replaced() {
        var host = Self.hostWithAdaJoined()
        #expect(Self.describe(host.attach(2, Self.ada, resume: ResumePoint(meeting: "standup", seq: 1), at: 102))
            == ["fail 1 replaced fatal", "welcome 2 ada replay seq 1 replay 0"])
    }

    @Test("a graceful shutdown commits what is sequenced, writes a final checkpoint, then closes every connection")
    func shutdown() {
        var host = Self.host(asksAdmission: true)
        _ = host.attach(1, Self.ada, resume: nil, at: 100)
        _ = host.admission(1, .admit, at: 100)
        _ = host.attach(2, Self.bob, resume: nil, at: 101)   // still asking
        #expect(Self.describe(host.shutdown()) == ["commit [1]"])
        #expect(Self.describe(host.committed(at: 102)) == [
            "attendance ada joined", "replicate [1]", "deliver [1] to [1] acks []", "final checkpoint 1", "stop closing [1, 2]",
        ])
    }

    @Test("a release sends attached and joining clients alike to the locator")
    func release() {
        var host = Self.host(asksAdmission: true)
        _ = host.attach(1, Self.ada, resume: nil, at: 100)
        _ = host.admission(1, .admit, at: 100)
        _ = host.attach(2, Self.bob, resume: nil, at: 101)
        #expect(Self.describe(host.release(reason: "drain")).sorted() == ["fail 1 moved fatal", "fail 2 moved fatal", "stop closing []"])
    }

    @Test("an op that crashed the hosts before is refused as poison_op, and the meeting goes on")
    func poison() {
        var host = State(log: MeetingLog(meeting: Meeting(id: "standup", title: "Standup"), epoch: Epoch(3)), limits: ConnectionLimits(),
                         poisoned: [OpOutcomes.Key(participant: "ada", opID: "bad")], asksAdmission: false, snapshotEveryEntries: 1_000)
        _ = host.attach(1, Self.ada, resume: nil, at: 100)
        #expect(host.isPoison("ada", "bad") && !host.isPoison("bob", "bad"))
        #expect(Self.describe(host.op(1, "bad", .chat(text: "boom"), at: 101)) == ["reject 1 bad poison_op"])
        #expect(Self.describe(host.op(1, "good", .chat(text: "fine"), at: 102)).isEmpty)
        #expect(Self.describe(host.flush()) == ["commit [1, 2]"])
    }

    @Test("a standby catches up from the tail, or reloads when the host holds less or other than it asks for")
    func subscription() {
        var host = Self.host()
        _ = host.attach(1, Self.ada, resume: nil, at: 100)
        _ = host.op(1, "o1", .chat(text: "x"), at: 101)
        _ = host.flush()
        _ = host.committed(at: 102)
        #expect(host.subscription(after: 0) == .entries(Array(host.log.tail)))
        #expect(host.subscription(after: 1).entries == [2])
        #expect(host.subscription(after: 2) == .entries([]))
        #expect(host.subscription(after: 3) == .reload)
    }
}

private extension ReplicaStart {
    var entries: [Seq]? { if case .entries(let entries) = self { entries.map(\.seq) } else { nil } }
}
