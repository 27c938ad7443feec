import ParleyCore

/// One step of a random session: small numbers that `MeetingScript` turns into an operation, so that
/// the shrinker works on plain integers and a failing case prints readably.
public struct ScriptStep: Sendable, CustomStringConvertible {
    public var kind: Int      // which operation (see `MeetingScript.operation`)
    public var actor: Int     // who issues it: 0...5 are cast members, 6 never joined
    public var target: Int    // whom or what it is about
    public var argument: Int  // which document, poll, option, role…
    public var flags: Int     // bit 0: commit everything after this step; bit 1: retry an earlier op id

    public init(kind: Int, actor: Int, target: Int, argument: Int, flags: Int) {
        self.kind = kind
        self.actor = actor
        self.target = target
        self.argument = argument
        self.flags = flags
    }

    public var description: String { "(\(kind),\(actor),\(target),\(argument),\(flags))" }
}

/// Random sessions of a meeting, shared by the replay property (ParleyCoreTests) and the
/// page's state agreement test (ParleyWebTests).
public enum MeetingScript {
    public static let cast: [ParticipantID] = ["p0", "p1", "p2", "p3", "p4", "p5", "stranger"]
    public static let kinds = 0...31

    /// Maps a step to an operation and its issuer. For operations that need a role (host,
    /// presenter, sharer, control holder), an `actor` of 0...2 picks whoever holds that role
    /// now, so that such operations are accepted often enough to matter; otherwise the actor
    /// is a cast member, who may lack the role or be absent. About four in five results are
    /// still refused by the rules, which the property wants too.
    public static func operation(_ step: ScriptStep, in meeting: Meeting) -> (MeetingOp, Issuer) {
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
