@testable import ParleyCore
import Testing

// The cast of the rule tests. `hana` created the meeting (host, presenting at first),
// `pia` joined with the presenter role and was made presenter, `ari` and `ben` attend.
let hana: ParticipantID = "hana"
let pia: ParticipantID = "pia"
let ari: ParticipantID = "ari"
let ben: ParticipantID = "ben"
let zed: ParticipantID = "zed"  // never joins

func by(_ participant: ParticipantID) -> Issuer { .participant(participant) }

extension Meeting {
    /// Applies a setup step that must be accepted; a refusal is recorded as a test failure.
    func applying(_ operation: MeetingOp, by issuer: Issuer, at: Millis = 1_000, seq: Seq = 1,
                  sourceLocation: SourceLocation = #_sourceLocation) -> Meeting {
        var copy = self
        do {
            try copy.apply(operation, by: issuer, at: at, seq: seq)
        } catch {
            Issue.record("setup step '\(operation.kind)' by \(issuer) was refused: \(error)", sourceLocation: sourceLocation)
        }
        return copy
    }

    /// The standard meeting: hana hosts, pia presents, ari and ben attend.
    static func standard(settings: MeetingSettings = MeetingSettings()) -> Meeting {
        Meeting(id: "m-1", title: "Standup", settings: settings)
            .applying(.join(participant: hana, name: "Hana", role: .host), by: .system)
            .applying(.join(participant: pia, name: "Pia", role: .presenter), by: .system)
            .applying(.join(participant: ari, name: "Ari", role: .attendee), by: .system)
            .applying(.join(participant: ben, name: "Ben", role: .attendee), by: .system)
            .applying(.setPresenter(to: pia), by: by(hana))
    }

    /// The standard meeting with a two-page deck ("deck": "p1", "p2") and a whiteboard ("wb": "wb.1").
    static func withDocuments(settings: MeetingSettings = MeetingSettings()) -> Meeting {
        standard(settings: settings)
            .applying(.addDocument(id: "deck", title: "Deck", pages: ["p1", "p2"]), by: by(pia))
            .applying(.addWhiteboard(id: "wb", title: "Board"), by: by(pia))
    }

    /// The standard meeting while pia shares her screen.
    static func sharing() -> Meeting {
        standard().applying(.startShare(kind: .screen, title: "Slides"), by: by(pia))
    }
}

/// Expects `operation` by `issuer` to be accepted and returns the new state.
func expectAccepted(_ meeting: Meeting, _ operation: MeetingOp, by issuer: Issuer, at: Millis = 2_000, seq: Seq = 10,
                    sourceLocation: SourceLocation = #_sourceLocation) -> Meeting {
    var copy = meeting
    do {
        try copy.apply(operation, by: issuer, at: at, seq: seq)
    } catch {
        Issue.record("'\(operation.kind)' by \(issuer) was refused: \(error)", sourceLocation: sourceLocation)
    }
    return copy
}

/// Expects `operation` by `issuer` to be refused with exactly `code`, leaving the state unchanged.
func expectRefused(_ meeting: Meeting, _ operation: MeetingOp, by issuer: Issuer, _ code: RejectionCode,
                   _ why: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
    var copy = meeting
    do {
        try copy.apply(operation, by: issuer, at: 2_000, seq: 10)
        Issue.record("'\(operation.kind)' by \(issuer) was accepted; expected \(code.rawValue). \(why?.rawValue ?? "")",
                     sourceLocation: sourceLocation)
    } catch {
        #expect(error.code == code, "\(why?.rawValue ?? operation.kind): \(error.message)", sourceLocation: sourceLocation)
    }
    #expect(copy == meeting, "a refused '\(operation.kind)' changed the state", sourceLocation: sourceLocation)
}

/// One refusal in a table: the state, who tries what, and the code they get.
struct Refusal: Sendable, CustomTestStringConvertible {
    var why: String
    var meeting: Meeting
    var operation: MeetingOp
    var issuer: Issuer
    var code: RejectionCode

    init(_ why: String, _ meeting: Meeting, _ operation: MeetingOp, by issuer: Issuer, _ code: RejectionCode) {
        self.why = why
        self.meeting = meeting
        self.operation = operation
        self.issuer = issuer
        self.code = code
    }

    var testDescription: String { "\(operation.kind): \(why) → \(code.rawValue)" }

    func check(sourceLocation: SourceLocation = #_sourceLocation) {
        expectRefused(meeting, operation, by: issuer, code, Comment(rawValue: why), sourceLocation: sourceLocation)
    }
}

extension Meeting {
    func presence(of id: ParticipantID) -> Presence? { participant(id)?.presence }
    func role(of id: ParticipantID) -> Role? { participant(id)?.role }
}
