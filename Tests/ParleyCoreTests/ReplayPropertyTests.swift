import FoundationEssentials
@testable import ParleyCore
import PropertyBased
import Testing

/// One step of a random session: small numbers that `Script` turns into an operation, so that
/// the shrinker works on plain integers and a failing case prints readably.
struct Step: Sendable, CustomStringConvertible {
    var kind: Int      // which operation (see `Script.operation`)
    var actor: Int     // who issues it: 0...5 are cast members, 6 never joined
    var target: Int    // whom or what it is about
    var argument: Int  // which document, poll, option, role…
    var flags: Int     // bit 0: commit everything after this step; bit 1: retry an earlier op id

    var description: String { "(\(kind),\(actor),\(target),\(argument),\(flags))" }
}

enum Script {
    static let cast: [ParticipantID] = ["p0", "p1", "p2", "p3", "p4", "p5", "stranger"]
    static let kinds = 0...31

    static let step = zip(Gen.int(in: kinds), Gen.int(in: 0...6), Gen.int(in: 0...6), Gen.int(in: 0...3), Gen.int(in: 0...3))
        .map { Step(kind: $0, actor: $1, target: $2, argument: $3, flags: $4) }

    /// Maps a step to an operation and its issuer. For operations that need a role (host,
    /// presenter, sharer, control holder), an `actor` of 0...2 picks whoever holds that role
    /// now, so that such operations are accepted often enough to matter; otherwise the actor
    /// is a cast member, who may lack the role or be absent. About four in five results are
    /// still refused by the rules, which the property wants too.
    static func operation(_ step: Step, in meeting: Meeting) -> (MeetingOp, Issuer) {
        let holder: ParticipantID? = switch step.kind {
        case 3, 4, 23, 24, 25: meeting.host?.id
        case 7, 8, 9, 10, 13, 14, 16, 17: meeting.presenter?.id
        case 18, 20, 21: meeting.share?.sharer
        case 22: meeting.share?.controlHolder
        default: nil
        }
        let actor = (step.actor <= 2 ? holder : nil) ?? cast[step.actor]
        let target = cast[step.target]
        let me = Issuer.participant(actor)
        let document = DocumentID("d\(step.argument)")
        let whiteboard = DocumentID("w\(step.argument)")
        let page = PageID(step.target.isMultiple(of: 2) ? "d\(step.argument).a" : "w\(step.argument).1")
        let poll = PollID("q\(step.argument)")
        switch step.kind {
        case 0, 26, 27, 28:
            let role: Role = [.host, .presenter, .attendee, .attendee][step.argument]
            return (.join(participant: actor, name: "Name \(step.actor)", role: role), .system)
        case 1: return (.leave(participant: actor), .system)
        case 2: return (.presence(participant: actor, presence: Presence.allCases[step.argument % 3]), .system)
        case 3: return (.handOverHost(to: target), me)
        case 4: return (.setPresenter(to: target), me)
        case 5, 29: return (.chat(text: step.argument == 3 ? "" : "chat \(step.target)"), me)
        case 6: return (.privateMessage(to: target, text: "psst \(step.argument)"), me)
        case 7: return (.addDocument(id: document, title: "Doc", pages: [PageID("d\(step.argument).a"), PageID("d\(step.argument).b")]), me)
        case 8: return (.addWhiteboard(id: whiteboard, title: "Board"), me)
        case 9: return (.addWhiteboardPage(document: whiteboard, page: PageID("w\(step.argument).\(step.target + 2)")), me)
        case 10: return (.turnPage(to: page), me)
        case 11, 30:
            return (.draw(page: page, stroke: StrokeID("s\(step.target)"), tool: Tool.allCases[step.argument],
                          color: "#a0b0c0", width: Double(step.argument) + 0.5,
                          points: [Point(x: Double(step.target), y: -0.25)], text: step.argument == 2 ? "label" : nil), me)
        case 12:
            // Erase an existing stroke when there is one, so erasing is exercised, not just refused.
            guard !meeting.annotations.isEmpty, step.argument != 3 else {
                return (.erase(page: page, stroke: StrokeID("s\(step.target)")), me)
            }
            let slot = meeting.annotations[step.target % meeting.annotations.count]
            return (.erase(page: slot.page, stroke: slot.strokes[step.argument % slot.strokes.count].id), me)
        case 13: return (.clearPage(page: page), me)
        case 14:
            let options = Array(["yes", "no", "maybe", "later"].prefix(step.target % 4 + 1))
            return (.createPoll(id: poll, question: "Q\(step.argument)?", options: options), me)
        case 15, 31: return (.vote(poll: poll, option: step.target - 1), me)
        case 16: return (.closePoll(poll: poll), me)
        case 17: return (.startShare(kind: step.argument.isMultiple(of: 2) ? .screen : .application, title: "Share"), me)
        case 18: return (.stopShare, me)
        case 19: return (.requestControl, me)
        case 20: return (.grantControl(to: target), me)
        case 21: return (.revokeControl, me)
        case 22: return (.releaseControl, me)
        case 23: return (.lock, me)
        case 24: return (.unlock, me)
        // Ending the meeting stops every later op, so it is rare.
        case 25: return step.argument == 3 && step.target == 6 ? (.end, me) : (.unlock, me)
        default: preconditionFailure("kind \(step.kind) is outside \(kinds)")
        }
    }
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
