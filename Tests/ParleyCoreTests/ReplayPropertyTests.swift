import FoundationEssentials
@testable import ParleyCore
import PropertyBased
import Testing
import ParleyTestSupport

typealias Step = ScriptStep
typealias Script = MeetingScript

extension MeetingScript {
    static let step = zip(Gen.int(in: kinds), Gen.int(in: 0...6), Gen.int(in: 0...6), Gen.int(in: 0...3), Gen.int(in: 0...3))
        .map { Step(kind: $0, actor: $1, target: $2, argument: $3, flags: $4) }
}

@Suite("Property: a snapshot plus the later log rebuilds the live meeting")
struct ReplayPropertyTests {
    @Test("rebuilding from a snapshot at a random committed point plus the later entries equals the live meeting")
    func snapshotPlusTailEqualsLive() async {
        await propertyCheck(
            count: 300,
            input: Script.step.array(of: 0...120), Gen.int(in: 0...1_000), Gen.int(in: 1...40)
        ) { steps, snapshotPick, windowEntries in
            checkReplay(steps: steps, snapshotPick: snapshotPick, windowEntries: windowEntries)
        }
    }

    func checkReplay(steps: [Step], snapshotPick: Int, windowEntries: Int) {
        let window = ResumeWindow(minEntries: windowEntries, minAgeMillis: 0, maxEntries: windowEntries * 2)
        var log = MeetingLog(meeting: Meeting(id: "m-prop", title: "Property"), epoch: Epoch(1), window: window)
        var committed: [LogEntry] = []
        // Snapshots taken whenever nothing was in flight, with the committed entries so far.
        var snapshots: [Snapshot] = [log.snapshot()]
        var issuedOps: [(MeetingOp, Issuer, OpID)] = []
        var now: Millis = 1_000
        // Most sessions start with a host, a presenter and attendees; random steps join and leave more.
        for (id, role) in zip(Script.cast.prefix(4), [Role.host, .presenter, .attendee, .attendee]) {
            _ = log.submit(.join(participant: id, name: "Cast \(id)", role: role), by: .system, opID: nil, at: now)
        }

        func commitAll() {
            let durable = Array(log.committed(through: log.lastSeq))
            #expect(durable.map(\.seq) == Array((Seq(committed.count) + 1)..<(Seq(committed.count) + 1 + Seq(durable.count))),
                    "commits deliver contiguous seqs")
            committed += durable
            snapshots.append(log.snapshot())
        }

        for (index, step) in steps.enumerated() {
            now += 250
            var (operation, issuer) = Script.operation(step, in: log.meeting)
            var opID: OpID? = issuer == .system ? nil : OpID("op-\(index)")
            if step.flags & 2 != 0, let earlier = issuedOps.last(where: { $0.1 == issuer }) {
                (operation, issuer, opID) = (earlier.0, earlier.1, earlier.2)
            }
            let before = (log.lastSeq, log.meeting)
            switch log.submit(operation, by: issuer, opID: opID, at: now) {
            case .sequenced(let entry):
                #expect(entry.seq == before.0 + 1)
                if let opID { issuedOps.append((operation, issuer, opID)) }
            case .duplicate(let seq, _):
                #expect(seq <= before.0)
                #expect(log.lastSeq == before.0 && log.meeting == before.1, "a duplicate changes nothing")
            case .rejected:
                #expect(log.lastSeq == before.0 && log.meeting == before.1, "a refusal changes nothing")
            }
            if step.flags & 1 != 0 { commitAll() }
        }
        commitAll()
        #expect(committed.map(\.seq) == (0..<committed.count).map { Seq($0 + 1) }, "the committed log has no gaps")

        // Rebuild from a randomly chosen snapshot plus everything committed after it.
        let snapshot = snapshots[snapshotPick % snapshots.count]
        let later = committed.filter { $0.seq > snapshot.seq }
        do {
            var rebuilt = try MeetingLog(recovering: snapshot, entries: later, epoch: Epoch(2), window: window)
            #expect(rebuilt.meeting == log.meeting)
            #expect(rebuilt.lastSeq == log.lastSeq)
            #expect(rebuilt.committedSeq == log.committedSeq)
            // The newest client op is still recognised as a retry after the rebuild.
            if let newest = committed.last(where: { $0.opID != nil }) {
                #expect(rebuilt.submit(newest.operation, by: newest.issuer, opID: newest.opID, at: now)
                        == .duplicate(seq: newest.seq, committed: true))
            }
        } catch {
            Issue.record("rebuild from snapshot at seq \(snapshot.seq) failed: \(error)")
        }

        // A replay from the very beginning rebuilds it too.
        do {
            let fromScratch = try MeetingLog(recovering: snapshots[0], entries: committed, epoch: Epoch(2), window: window)
            #expect(fromScratch.meeting == log.meeting)
        } catch {
            Issue.record("rebuild from the empty meeting failed: \(error)")
        }

        // The snapshot survives JSON, and so does the rebuild from the decoded copy.
        do {
            let decoded = try JSONDecoder().decode(Snapshot.self, from: JSONEncoder().encode(snapshot))
            #expect(decoded == snapshot)
            let rebuilt = try MeetingLog(recovering: decoded, entries: later, epoch: Epoch(2), window: window)
            #expect(rebuilt.meeting == log.meeting)
        } catch {
            Issue.record("snapshot JSON round trip failed: \(error)")
        }

        // Every resume point is answered with exactly the committed entries after it, or a snapshot.
        for seq in Seq(0)...log.committedSeq {
            switch log.resume(after: seq) {
            case .replay(let entries):
                #expect(entries == Array(committed.dropFirst(Int(seq))), "replay after \(seq)")
            case .snapshot(let current):
                #expect(seq == 0 || log.tail.first.map { $0.seq > seq + 1 } ?? true,
                        "snapshot only for a fresh client or when the tail no longer reaches \(seq)")
                #expect(current.seq == log.committedSeq)
            case .fromFuture:
                Issue.record("seq \(seq) is committed, not from the future")
            }
        }
    }
}
