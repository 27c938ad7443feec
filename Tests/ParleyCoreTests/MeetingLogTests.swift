import FoundationEssentials
@testable import ParleyCore
import Testing

/// Drives a `MeetingLog` the way a host does: submit, then report commits.
struct LogDriver {
    var log: MeetingLog
    var now: Millis = 10_000

    init(window: ResumeWindow = ResumeWindow(), epoch: Epoch = Epoch(1)) {
        log = MeetingLog(meeting: Meeting(id: "m-1", title: "Log"), epoch: epoch, window: window)
        for (id, name, role) in [(hana, "Hana", Role.host), (ari, "Ari", .attendee), (ben, "Ben", .attendee)] {
            _ = sequenced(.join(participant: id, name: name, role: role), by: .system)
        }
        _ = log.committed(through: log.lastSeq)
    }

    /// Submits an op that must be accepted and returns its entry (not yet committed).
    mutating func sequenced(_ operation: MeetingOp, by issuer: Issuer, opID: OpID? = nil, advanceMillis: Millis = 1_000,
                            sourceLocation: SourceLocation = #_sourceLocation) -> LogEntry? {
        now += advanceMillis
        let submission = log.submit(operation, by: issuer, opID: opID, at: now)
        guard case .sequenced(let entry) = submission else {
            Issue.record("expected '\(operation.kind)' to be sequenced, got \(submission)", sourceLocation: sourceLocation)
            return nil
        }
        return entry
    }

    /// Submits and commits `count` chats from ari; returns their entries.
    mutating func chats(_ count: Int, advanceMillis: Millis = 1_000) -> [LogEntry] {
        let entries = (0..<count).compactMap { i in
            sequenced(.chat(text: "message \(i)"), by: by(ari), opID: OpID("chat-\(log.lastSeq + 1)"), advanceMillis: advanceMillis)
        }
        _ = log.committed(through: log.lastSeq)
        return entries
    }
}

@Suite("MeetingLog: sequencing, commit and idempotent retries")
struct MeetingLogSequencingTests {
    @Test("seqs are assigned 1, 2, 3… under the log's epoch, with the issuer, op id and time")
    func sequencing() {
        var driver = LogDriver(epoch: Epoch(7))
        #expect(driver.log.lastSeq == 3)
        let entry = driver.sequenced(.chat(text: "hi"), by: by(ari), opID: "o-1")
        #expect(entry == LogEntry(seq: 4, epoch: Epoch(7), at: driver.now, issuer: by(ari), opID: "o-1", operation: .chat(text: "hi")))
        #expect(driver.log.meeting.chat.map(\.seq) == [4], "the state includes a sequenced op at once")
        #expect(driver.log.tail.map(\.seq) == [1, 2, 3, 4])
    }

    @Test("an entry is durable only once committed; committed(through:) returns exactly the newly durable entries")
    func commitReturnsNewlyDurable() {
        var driver = LogDriver()
        let a = driver.sequenced(.chat(text: "a"), by: by(ari))
        let b = driver.sequenced(.chat(text: "b"), by: by(ari))
        let c = driver.sequenced(.chat(text: "c"), by: by(ari))
        #expect(driver.log.committedSeq == 3)
        #expect(driver.log.hasUncommitted)
        #expect(driver.log.resume(after: 3) == .replay([]), "uncommitted entries are never delivered")
        #expect(Array(driver.log.committed(through: 5)) == [a, b].compactMap { $0 })
        #expect(Array(driver.log.committed(through: 5)) == [], "committing the same point again delivers nothing")
        #expect(Array(driver.log.committed(through: 4)) == [], "commits never go backwards")
        #expect(Array(driver.log.committed(through: 6)) == [c].compactMap { $0 })
        #expect(!driver.log.hasUncommitted)
    }

    @Test("a rejected op gets no seq and leaves no trace in the log or the state")
    func rejectedNotLogged() {
        var driver = LogDriver()
        let before = driver.log
        let submission = driver.log.submit(.lock, by: by(ari), opID: "o-1", at: 99_000)
        guard case .rejected(let rejection) = submission else {
            Issue.record("expected a rejection, got \(submission)")
            return
        }
        #expect(rejection.code == .notHost)
        #expect(driver.log.lastSeq == before.lastSeq)
        #expect(driver.log.tail == before.tail)
        #expect(driver.log.meeting == before.meeting)
        let next = driver.sequenced(.chat(text: "next"), by: by(ari))
        #expect(next?.seq == 4, "the next accepted op takes the seq the rejected one did not")
    }

    @Test("a retried op id is re-evaluated after a rejection, because nothing was applied")
    func retryAfterRejection() {
        var driver = LogDriver()
        guard case .rejected = driver.log.submit(.vote(poll: "q1", option: 0), by: by(ari), opID: "v-1", at: 1) else {
            Issue.record("the vote should be refused before the poll exists")
            return
        }
        _ = driver.sequenced(.createPoll(id: "q1", question: "Q", options: ["a", "b"]), by: by(hana))
        let vote = driver.sequenced(.vote(poll: "q1", option: 0), by: by(ari), opID: "v-1")
        #expect(vote?.seq == 5)
    }

    @Test("a retry while the original is in flight is a duplicate, uncommitted; after commit, committed; applied once")
    func retryIdempotency() {
        var driver = LogDriver()
        let original = driver.sequenced(.chat(text: "once"), by: by(ari), opID: "o-1")
        #expect(original?.seq == 4)
        #expect(driver.log.submit(.chat(text: "once"), by: by(ari), opID: "o-1", at: 20_000) == .duplicate(seq: 4, committed: false))
        _ = driver.log.committed(through: 4)
        #expect(driver.log.submit(.chat(text: "once"), by: by(ari), opID: "o-1", at: 21_000) == .duplicate(seq: 4, committed: true))
        // Even a retry whose body differs is matched by id alone: ids are the client's promise.
        #expect(driver.log.submit(.chat(text: "changed"), by: by(ari), opID: "o-1", at: 22_000) == .duplicate(seq: 4, committed: true))
        #expect(driver.log.lastSeq == 4)
        #expect(driver.log.tail.filter { $0.opID == "o-1" }.count == 1)
        #expect(driver.log.meeting.chat.map(\.text) == ["once"])
    }

    @Test("op ids are scoped per participant; system ops are never deduplicated")
    func opIDScope() {
        var driver = LogDriver()
        _ = driver.sequenced(.chat(text: "from ari"), by: by(ari), opID: "o-1")
        let fromBen = driver.sequenced(.chat(text: "from ben"), by: by(ben), opID: "o-1")
        #expect(fromBen?.seq == 5)
        _ = driver.sequenced(.presence(participant: ari, presence: .reconnecting), by: .system, opID: "s-1")
        let again = driver.sequenced(.presence(participant: ari, presence: .connected), by: .system, opID: "s-1")
        #expect(again?.seq == 7)
    }

    @Test("committing past the last sequenced seq is a programming error")
    func commitBeyondLast() async {
        await #expect(processExitsWith: .failure) {
            var log = MeetingLog(meeting: Meeting(id: "m", title: "t"), epoch: Epoch(1))
            _ = log.committed(through: 1)
        }
    }
}

@Suite("MeetingLog: resume")
struct MeetingLogResumeTests {
    @Test("resume after a gap replays exactly the missing entries, in order")
    func resumeWithGap() {
        var driver = LogDriver()
        let chats = driver.chats(5)
        #expect(driver.log.resume(after: 5) == .replay(Array(chats[2...])))
        #expect(driver.log.resume(after: 1) == .replay(Array(driver.log.tail.dropFirst())))
    }

    @Test("resume when up to date replays nothing")
    func resumeUpToDate() {
        var driver = LogDriver()
        _ = driver.chats(3)
        #expect(driver.log.resume(after: 6) == .replay([]))
    }

    @Test("a fresh client (no seq, or seq 0) gets a snapshot of the committed state", arguments: [nil, Seq(0)])
    func resumeFresh(seq: Seq?) {
        var driver = LogDriver()
        _ = driver.chats(2)
        guard case .snapshot(let snapshot) = driver.log.resume(after: seq) else {
            Issue.record("expected a snapshot")
            return
        }
        #expect(snapshot.seq == 5)
        #expect(snapshot.epoch == Epoch(1))
        #expect(snapshot.meeting == driver.log.meeting)
        #expect(snapshot == driver.log.snapshot())
    }

    @Test("a seq the meeting never committed is from the future, even if it was sequenced")
    func resumeFromFuture() {
        var driver = LogDriver()
        _ = driver.chats(2)
        _ = driver.sequenced(.chat(text: "in flight"), by: by(ari))
        #expect(driver.log.resume(after: 6) == .fromFuture(latest: 5))
        #expect(driver.log.resume(after: 1_000) == .fromFuture(latest: 5))
    }

    @Test("a client behind the resume window gets a snapshot; one just inside still gets a replay")
    func resumeTooFarBack() {
        var driver = LogDriver(window: ResumeWindow(minEntries: 3, minAgeMillis: 0, maxEntries: 3))
        let chats = driver.chats(10)
        #expect(driver.log.tail.map(\.seq) == [11, 12, 13])
        #expect(driver.log.resume(after: 10) == .replay(Array(chats[7...])))
        #expect(driver.log.resume(after: 9) == .snapshot(driver.log.snapshot()))
        #expect(driver.log.resume(after: 0) == .snapshot(driver.log.snapshot()))
    }
}

@Suite("MeetingLog: resume window trimming")
struct MeetingLogWindowTests {
    @Test("trimming keeps at least minEntries committed entries, however old")
    func keepsMinEntries() {
        var driver = LogDriver(window: ResumeWindow(minEntries: 4, minAgeMillis: 0, maxEntries: 100))
        _ = driver.chats(20, advanceMillis: 1_000_000)
        #expect(driver.log.tail.map(\.seq) == [20, 21, 22, 23])
    }

    @Test("trimming keeps every entry younger than minAgeMillis, measured from the newest commit")
    func keepsYoungEntries() {
        var driver = LogDriver(window: ResumeWindow(minEntries: 2, minAgeMillis: 5_000, maxEntries: 100))
        let chats = driver.chats(10, advanceMillis: 1_000)
        let newest = chats.last!.at
        #expect(driver.log.tail.allSatisfy { $0.at >= newest - 5_000 })
        #expect(driver.log.tail.map(\.seq) == Array(8...13), "entries at newest-5000 … newest are kept, older go")
        #expect(driver.log.resume(after: 7) == .replay(Array(chats[4...])))
        #expect(driver.log.resume(after: 6) == .snapshot(driver.log.snapshot()))
    }

    @Test("maxEntries caps the tail even when every entry is young")
    func capsAtMaxEntries() {
        var driver = LogDriver(window: ResumeWindow(minEntries: 2, minAgeMillis: 1_000_000, maxEntries: 5))
        _ = driver.chats(20, advanceMillis: 1)
        #expect(driver.log.tail.map(\.seq) == Array(19...23))
    }

    @Test("across thousands of trims (and the compactions between them) the tail is always exactly the window, and replays from it are exact")
    func longRunTrims() {
        var driver = LogDriver(window: ResumeWindow(minEntries: 7, minAgeMillis: 0, maxEntries: 7))
        var all: [LogEntry] = []
        for round in 0..<2_000 {
            // Batches of 1 to 5 commits, as a host's turns commit what queued up.
            all += driver.chats(1 + round % 5, advanceMillis: 1)
            let last = driver.log.committedSeq
            guard all.count > 8 else { continue }
            #expect(driver.log.tail.map(\.seq) == Array((last - 6)...last))
            #expect(driver.log.resume(after: last - 7) == .replay(Array(all.suffix(7))))
            #expect(driver.log.resume(after: last - 3) == .replay(Array(all.suffix(3))))
            guard case .snapshot = driver.log.resume(after: last - 8) else {
                Issue.record("a client behind the window must get a snapshot (round \(round))")
                return
            }
        }
    }

    @Test("uncommitted entries are never trimmed, so they can still be committed and delivered")
    func keepsUncommitted() {
        var driver = LogDriver(window: ResumeWindow(minEntries: 1, minAgeMillis: 0, maxEntries: 1))
        #expect(driver.log.tail.map(\.seq) == [3])
        let entries = (0..<3).compactMap { _ in driver.sequenced(.chat(text: "x"), by: by(ari)) }
        #expect(driver.log.tail.map(\.seq) == [3, 4, 5, 6])
        #expect(Array(driver.log.committed(through: 6)) == entries)
        #expect(driver.log.tail.map(\.seq) == [6])
    }

    @Test("the default window holds at least two minutes and 10,000 entries")
    func defaultWindow() {
        let window = ResumeWindow()
        #expect(window.minEntries == 10_000)
        #expect(window.minAgeMillis == 120_000)
        #expect(window.maxEntries >= window.minEntries)
    }

    @Test("deduplication remembers client op ids by their number, not by log position")
    func outcomesOutliveTrimmedEntries() {
        var driver = LogDriver(window: ResumeWindow(minEntries: 4, minAgeMillis: 0, maxEntries: 4))
        _ = driver.sequenced(.chat(text: "early"), by: by(ari), opID: "early")
        for presence in [Presence.reconnecting, .connected, .reconnecting, .connected] {
            _ = driver.sequenced(.presence(participant: ben, presence: presence), by: .system)
        }
        _ = driver.log.committed(through: driver.log.lastSeq)
        #expect(driver.log.tail.map(\.seq) == [5, 6, 7, 8], "the entry itself is out of the window")
        #expect(driver.log.submit(.chat(text: "early"), by: by(ari), opID: "early", at: 1) == .duplicate(seq: 4, committed: true))
    }

    @Test("op outcomes keep at least the newest `capacity` records and forget beyond twice that")
    func outcomesBound() throws {
        var outcomes = OpOutcomes(capacity: 2)
        let keys = (1...5).map { OpOutcomes.Key(participant: ari, opID: OpID("o-\($0)")) }
        for (index, key) in keys.enumerated() { outcomes.record(key, seq: Seq(index + 1)) }
        #expect(keys.map { outcomes.seq(for: $0) } == [nil, nil, nil, 4, 5])
        let decoded = try JSONDecoder().decode(OpOutcomes.self, from: JSONEncoder().encode(outcomes))
        #expect(decoded == outcomes)
        #expect(decoded.records.map(\.seq) == [4, 5])
        #expect(keys.map { decoded.seq(for: $0) } == [nil, nil, nil, 4, 5])
    }

    @Test("op outcomes are stored as columns, and checkpoints written in the older layout (records as objects) still read")
    func outcomesLayouts() throws {
        var outcomes = OpOutcomes(capacity: 10)
        for (index, participant) in [ari, ben, ari, hana, ben].enumerated() {
            outcomes.record(OpOutcomes.Key(participant: participant, opID: OpID("op-\(index)")), seq: Seq(10 + index))
        }
        struct Columns: Decodable {
            var participants: [String]
            var who: [Int]
            var ops: [String]
            var records: [OpOutcomes.Record]?
        }
        let columns = try JSONDecoder().decode(Columns.self, from: JSONEncoder().encode(outcomes))
        #expect(columns.participants == [ari.rawValue, ben.rawValue, hana.rawValue])
        #expect(columns.who == [0, 1, 0, 2, 1])
        #expect(columns.ops == (0..<5).map { "op-\($0)" })
        #expect(columns.records == nil)
        #expect(try JSONDecoder().decode(OpOutcomes.self, from: JSONEncoder().encode(outcomes)) == outcomes)

        let older = #"{"capacity":10,"records":[{"key":{"participant":"ari","opID":"op-0"},"seq":10},{"key":{"participant":"ben","opID":"op-1"},"seq":11}]}"#
        let read = try JSONDecoder().decode(OpOutcomes.self, from: Data(older.utf8))
        #expect(read.seq(for: OpOutcomes.Key(participant: "ben", opID: "op-1")) == 11)
        #expect(read.records.count == 2)

        let ragged = #"{"capacity":10,"participants":["ari"],"who":[0,1],"ops":["a","b"],"seqs":[1,2]}"#
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(OpOutcomes.self, from: Data(ragged.utf8)) }
    }
}

@Suite("MeetingLog: recovery from a snapshot and the log")
struct MeetingLogRecoveryTests {
    /// A log with 3 joins and 6 chats, all committed; the snapshot is taken after seq 5.
    static func history() -> (snapshot: Snapshot, before: [LogEntry], after: [LogEntry], live: MeetingLog) {
        var driver = LogDriver()
        let joins = Array(driver.log.tail)
        let all = joins + driver.chats(2)
        let snapshot = driver.log.snapshot()
        let later = driver.chats(4)
        return (snapshot, all, later, driver.log)
    }

    @Test("recovery applies the entries after the snapshot and continues under the new epoch")
    func recovers() throws {
        let (snapshot, before, after, live) = Self.history()
        var recovered = try MeetingLog(recovering: snapshot, entries: after, history: before, epoch: Epoch(2))
        #expect(recovered.meeting == live.meeting)
        #expect(recovered.lastSeq == 9)
        #expect(recovered.committedSeq == 9)
        #expect(recovered.epoch == Epoch(2))
        #expect(recovered.tail == live.tail, "history that runs into the entries keeps old clients replayable")
        #expect(recovered.resume(after: 2) == live.resume(after: 2))
        // Retries of ops committed before the snapshot and after it are both recognised.
        #expect(recovered.submit(.chat(text: "message 0"), by: by(ari), opID: "chat-4", at: 1) == .duplicate(seq: 4, committed: true))
        #expect(recovered.submit(.chat(text: "message 3"), by: by(ari), opID: "chat-9", at: 1) == .duplicate(seq: 9, committed: true))
        guard case .sequenced(let next) = recovered.submit(.chat(text: "new"), by: by(ari), opID: "new", at: 1) else {
            Issue.record("a new op after recovery should be sequenced")
            return
        }
        #expect(next.seq == 10)
        #expect(next.epoch == Epoch(2))
    }

    @Test("history that does not run into the snapshot is dropped; clients behind it get a snapshot")
    func brokenHistoryDropped() throws {
        let (snapshot, before, after, _) = Self.history()
        let recovered = try MeetingLog(recovering: snapshot, entries: after, history: Array(before.dropLast()), epoch: Epoch(2))
        #expect(Array(recovered.tail) == after)
        #expect(recovered.resume(after: 5) == .replay(after))
        guard case .snapshot(let fresh) = recovered.resume(after: 2) else {
            Issue.record("a client behind the recovered tail should get a snapshot")
            return
        }
        #expect(fresh.seq == 9)
    }

    @Test("recovery refuses a log that skips or repeats a seq")
    func gap() {
        let (snapshot, _, after, _) = Self.history()
        #expect(throws: MeetingLog.RecoveryError.gap(expected: 6, found: 7)) {
            try MeetingLog(recovering: snapshot, entries: Array(after.dropFirst()), epoch: Epoch(2))
        }
        #expect(throws: MeetingLog.RecoveryError.gap(expected: 8, found: 7)) {
            try MeetingLog(recovering: snapshot, entries: Array(after.prefix(2)) + [after[1]], epoch: Epoch(2))
        }
    }

    @Test("recovery refuses an epoch that does not exceed every epoch already used")
    func staleEpoch() {
        let (snapshot, _, after, _) = Self.history()
        #expect(throws: MeetingLog.RecoveryError.staleEpoch(Epoch(1), newest: Epoch(1))) {
            try MeetingLog(recovering: snapshot, entries: after, epoch: Epoch(1))
        }
        var later = after
        later[3].epoch = Epoch(5)
        #expect(throws: MeetingLog.RecoveryError.staleEpoch(Epoch(3), newest: Epoch(5))) {
            try MeetingLog(recovering: snapshot, entries: later, epoch: Epoch(3))
        }
        #expect(throws: Never.self) {
            try MeetingLog(recovering: snapshot, entries: later, epoch: Epoch(6))
        }
    }

    @Test("recovery refuses an entry that the state does not accept")
    func inapplicable() {
        let (snapshot, _, after, _) = Self.history()
        var bad = after
        bad[1].issuer = by(zed)
        #expect(throws: MeetingLog.RecoveryError.inapplicable(seq: 7, Rejection(.notParticipant, "zed is not in this meeting"))) {
            try MeetingLog(recovering: snapshot, entries: bad, epoch: Epoch(2))
        }
    }
}

@Suite("MeetingLog: standby copies and promotion")
struct MeetingLogStandbyTests {
    @Test("a standby that applies the host's committed stream holds the host's state, and serves the same resumes")
    func followsTheHost() throws {
        var host = LogDriver()
        let snapshot = host.log.snapshot()
        var standby = try MeetingLog(standbyFrom: snapshot, entries: [])
        let first = host.chats(3)
        let second = host.chats(2)
        try standby.replicate(first)
        try standby.replicate(first + second)  // a stream restarted from earlier is harmless
        #expect(standby.meeting == host.log.meeting)
        #expect(standby.committedSeq == host.log.committedSeq)
        #expect(standby.epoch == host.log.epoch)
        #expect(standby.resume(after: 4) == host.log.resume(after: 4))
    }

    @Test("a stream with a hole is refused and changes nothing")
    func gap() throws {
        var host = LogDriver()
        var standby = try MeetingLog(standbyFrom: host.log.snapshot(), entries: [])
        let chats = host.chats(3)
        #expect(throws: MeetingLog.RecoveryError.gap(expected: 4, found: 5)) { try standby.replicate(chats.dropFirst()) }
        #expect(standby.lastSeq == 3)
    }

    @Test("promotion catches up from the store, continues under the new epoch, and still recognises retried op ids")
    func promotion() throws {
        var host = LogDriver(epoch: Epoch(1))
        var standby = try MeetingLog(standbyFrom: host.log.snapshot(), entries: [])
        let streamed = host.chats(2)  // seqs 4, 5 reach the standby
        try standby.replicate(streamed)
        let unstreamed = host.chats(2)  // seqs 6, 7 committed, then the host died
        #expect(throws: MeetingLog.RecoveryError.staleEpoch(Epoch(1), newest: Epoch(1))) {
            var copy = standby
            try copy.promote(to: Epoch(1), catchingUp: unstreamed)
        }
        try standby.promote(to: Epoch(2), catchingUp: streamed + unstreamed)
        #expect(standby.meeting == host.log.meeting)
        #expect(standby.epoch == Epoch(2))
        // A client retries its last op (seq 7) under the same id: the original outcome.
        let retried = standby.submit(.chat(text: "message 1"), by: by(ari), opID: OpID("chat-7"), at: 99_000)
        #expect(retried == .duplicate(seq: 7, committed: true))
        guard case .sequenced(let next) = standby.submit(.chat(text: "after"), by: by(ari), opID: "new", at: 99_000) else {
            Issue.record("the promoted copy refused a new op")
            return
        }
        #expect(next.seq == 8)
        #expect(next.epoch == Epoch(2))
    }
}
