@testable import ParleyCore
import Testing

@Suite("Rules: polls")
struct PollRuleTests {
    static let lunch = MeetingOp.createPoll(id: "q1", question: "Lunch?", options: ["yes", "no", "later"])

    @Test("the presenter or host creates a poll; everyone votes once; results count per option")
    func pollLifecycle() {
        var meeting = expectAccepted(.standard(), Self.lunch, by: by(pia))
        #expect(meeting.polls == [Poll(id: "q1", creator: pia, question: "Lunch?", options: ["yes", "no", "later"],
                                       votes: [], closed: false)])
        meeting = expectAccepted(meeting, .vote(poll: "q1", option: 0), by: by(ari))
        meeting = expectAccepted(meeting, .vote(poll: "q1", option: 2), by: by(ben))
        meeting = expectAccepted(meeting, .vote(poll: "q1", option: 0), by: by(pia))
        #expect(meeting.polls[0].votes == [Poll.Vote(voter: ari, option: 0), Poll.Vote(voter: ben, option: 2),
                                           Poll.Vote(voter: pia, option: 0)])
        #expect(meeting.polls[0].results == [2, 0, 1])
        _ = expectAccepted(.standard(), Self.lunch, by: by(hana))
    }

    @Test("createPoll refusals: feature off, attendee, bad id, question, option count or option text, id taken")
    func createPollRefusals() {
        let meeting = Meeting.standard().applying(Self.lunch, by: by(pia))
        let noPolls = Meeting.standard(settings: MeetingSettings(features: Features(polls: false)))
        let refusals = [
            Refusal("polls off", noPolls, Self.lunch, by: by(hana), .featureDisabled),
            Refusal("attendee", meeting, .createPoll(id: "q2", question: "Q", options: ["a", "b"]), by: by(ari), .notPresenter),
            Refusal("bad id", meeting, .createPoll(id: "q 2", question: "Q", options: ["a", "b"]), by: by(pia), .invalidArgument),
            Refusal("empty question", meeting, .createPoll(id: "q2", question: "", options: ["a", "b"]), by: by(pia), .invalidArgument),
            Refusal("one option", meeting, .createPoll(id: "q2", question: "Q", options: ["a"]), by: by(pia), .invalidArgument),
            Refusal("21 options", meeting, .createPoll(id: "q2", question: "Q", options: (0...20).map(String.init)), by: by(pia), .invalidArgument),
            Refusal("empty option", meeting, .createPoll(id: "q2", question: "Q", options: ["a", ""]), by: by(pia), .invalidArgument),
            Refusal("option over 200", meeting, .createPoll(id: "q2", question: "Q", options: ["a", String(repeating: "o", count: 201)]), by: by(pia), .invalidArgument),
            Refusal("id taken", meeting, .createPoll(id: "q1", question: "Q", options: ["a", "b"]), by: by(pia), .duplicateID),
        ]
        for refusal in refusals { refusal.check() }
    }

    @Test("vote refusals: feature off, unknown poll, closed poll, no such option, second vote")
    func voteRefusals() {
        let meeting = Meeting.standard().applying(Self.lunch, by: by(pia)).applying(.vote(poll: "q1", option: 1), by: by(ari))
        var noPolls = meeting
        noPolls.settings.features.polls = false
        let closed = meeting.applying(.closePoll(poll: "q1"), by: by(pia))
        let refusals = [
            Refusal("polls off", noPolls, .vote(poll: "q1", option: 0), by: by(ben), .featureDisabled),
            Refusal("unknown poll", meeting, .vote(poll: "q9", option: 0), by: by(ben), .unknownPoll),
            Refusal("closed", closed, .vote(poll: "q1", option: 0), by: by(ben), .pollClosed),
            Refusal("negative option", meeting, .vote(poll: "q1", option: -1), by: by(ben), .invalidArgument),
            Refusal("option past the end", meeting, .vote(poll: "q1", option: 3), by: by(ben), .invalidArgument),
            Refusal("second vote, same option", meeting, .vote(poll: "q1", option: 1), by: by(ari), .alreadyVoted),
            Refusal("second vote, other option", meeting, .vote(poll: "q1", option: 0), by: by(ari), .alreadyVoted),
        ]
        for refusal in refusals { refusal.check() }
    }

    @Test("the poll's creator or the host closes it; the votes stay")
    func closePoll() {
        let meeting = Meeting.standard().applying(Self.lunch, by: by(pia)).applying(.vote(poll: "q1", option: 1), by: by(ari))
        for closer in [pia, hana] {
            let after = expectAccepted(meeting, .closePoll(poll: "q1"), by: by(closer))
            #expect(after.polls[0].closed)
            #expect(after.polls[0].results == [0, 1, 0])
        }
    }

    @Test("closePoll refusals: someone else, unknown poll, already closed")
    func closePollRefusals() {
        let meeting = Meeting.standard().applying(Self.lunch, by: by(hana))
        let closed = meeting.applying(.closePoll(poll: "q1"), by: by(hana))
        let refusals = [
            Refusal("attendee", meeting, .closePoll(poll: "q1"), by: by(ari), .forbidden),
            Refusal("presenter who did not create it", meeting, .closePoll(poll: "q1"), by: by(pia), .forbidden),
            Refusal("unknown poll", meeting, .closePoll(poll: "q9"), by: by(hana), .unknownPoll),
            Refusal("already closed", closed, .closePoll(poll: "q1"), by: by(hana), .pollClosed),
        ]
        for refusal in refusals { refusal.check() }
    }
}

@Suite("Rules: screen and application sharing, and the control token")
struct ShareRuleTests {
    @Test("the presenter or host starts a share; nobody holds control yet")
    func startShare() {
        let after = expectAccepted(.standard(), .startShare(kind: .application, title: "Editor"), by: by(pia))
        #expect(after.share == ShareSession(sharer: pia, kind: .application, title: "Editor", controlHolder: nil, controlRequests: []))
        _ = expectAccepted(.standard(), .startShare(kind: .screen, title: ""), by: by(hana))
    }

    @Test("startShare refusals: feature off, attendee, long title, share in progress")
    func startShareRefusals() {
        let noSharing = Meeting.standard(settings: MeetingSettings(features: Features(applicationSharing: false)))
        let refusals = [
            Refusal("sharing off", noSharing, .startShare(kind: .screen, title: "S"), by: by(pia), .featureDisabled),
            Refusal("attendee", .standard(), .startShare(kind: .screen, title: "S"), by: by(ari), .notPresenter),
            Refusal("title over 200", .standard(), .startShare(kind: .screen, title: String(repeating: "t", count: 201)), by: by(pia), .invalidArgument),
            Refusal("already sharing", .sharing(), .startShare(kind: .screen, title: "S"), by: by(hana), .shareInProgress),
        ]
        for refusal in refusals { refusal.check() }
    }

    @Test("the sharer or the host stops the share")
    func stopShare() {
        for stopper in [pia, hana] {
            #expect(expectAccepted(.sharing(), .stopShare, by: by(stopper)).share == nil)
        }
    }

    @Test("stopShare refusals: nobody sharing, an attendee, even the control holder")
    func stopShareRefusals() {
        let granted = Meeting.sharing().applying(.grantControl(to: ari), by: by(pia))
        let refusals = [
            Refusal("nobody sharing", .standard(), .stopShare, by: by(hana), .notSharing),
            Refusal("attendee", .sharing(), .stopShare, by: by(ben), .notSharer),
            Refusal("control holder", granted, .stopShare, by: by(ari), .notSharer),
        ]
        for refusal in refusals { refusal.check() }
    }

    @Test("control: request queues in order, grant hands the token and clears that request, release and revoke return it")
    func controlTokenLifecycle() {
        var meeting = expectAccepted(.sharing(), .requestControl, by: by(ari))
        meeting = expectAccepted(meeting, .requestControl, by: by(ben))
        #expect(meeting.share?.controlRequests == [ari, ben])
        #expect(meeting.mayControlShare(pia), "the sharer controls while nobody holds the token")
        #expect(!meeting.mayControlShare(ari))

        meeting = expectAccepted(meeting, .grantControl(to: ben), by: by(pia))
        #expect(meeting.share?.controlHolder == ben)
        #expect(meeting.share?.controlRequests == [ari])
        #expect(meeting.mayControlShare(ben))
        #expect(!meeting.mayControlShare(pia), "the sharer gives up control while someone holds the token")

        let released = expectAccepted(meeting, .releaseControl, by: by(ben))
        #expect(released.share?.controlHolder == nil)
        #expect(released.mayControlShare(pia))

        let revoked = expectAccepted(meeting, .revokeControl, by: by(pia))
        #expect(revoked.share?.controlHolder == nil)
        #expect(revoked.share?.controlRequests == [ari])

        // The sharer may grant without a request, and move the token from one holder to another.
        let moved = expectAccepted(meeting, .grantControl(to: hana), by: by(pia))
        #expect(moved.share?.controlHolder == hana)
    }

    @Test("requestControl refusals: nobody sharing, the sharer, the holder, a second request")
    func requestControlRefusals() {
        let requested = Meeting.sharing().applying(.requestControl, by: by(ari))
        let granted = Meeting.sharing().applying(.grantControl(to: ari), by: by(pia))
        let refusals = [
            Refusal("nobody sharing", .standard(), .requestControl, by: by(ari), .notSharing),
            Refusal("the sharer", .sharing(), .requestControl, by: by(pia), .invalidArgument),
            Refusal("the holder", granted, .requestControl, by: by(ari), .invalidArgument),
            Refusal("second request", requested, .requestControl, by: by(ari), .invalidArgument),
        ]
        for refusal in refusals { refusal.check() }
    }

    @Test("grantControl refusals: nobody sharing, not the sharer (even the host), unknown target, to oneself")
    func grantControlRefusals() {
        let refusals = [
            Refusal("nobody sharing", .standard(), .grantControl(to: ari), by: by(pia), .notSharing),
            Refusal("host is not the sharer", .sharing(), .grantControl(to: ari), by: by(hana), .notSharer),
            Refusal("attendee grants themselves", .sharing(), .grantControl(to: ari), by: by(ari), .notSharer),
            Refusal("target never joined", .sharing(), .grantControl(to: zed), by: by(pia), .unknownParticipant),
            Refusal("to the sharer", .sharing(), .grantControl(to: pia), by: by(pia), .invalidArgument),
        ]
        for refusal in refusals { refusal.check() }
    }

    @Test("revokeControl refusals: nobody sharing, not the sharer, nobody holding")
    func revokeControlRefusals() {
        let granted = Meeting.sharing().applying(.grantControl(to: ari), by: by(pia))
        let refusals = [
            Refusal("nobody sharing", .standard(), .revokeControl, by: by(pia), .notSharing),
            Refusal("holder cannot revoke", granted, .revokeControl, by: by(ari), .notSharer),
            Refusal("host is not the sharer", granted, .revokeControl, by: by(hana), .notSharer),
            Refusal("nobody holds control", .sharing(), .revokeControl, by: by(pia), .notControlHolder),
        ]
        for refusal in refusals { refusal.check() }
    }

    @Test("releaseControl refusals: nobody sharing, not the holder")
    func releaseControlRefusals() {
        let granted = Meeting.sharing().applying(.grantControl(to: ari), by: by(pia))
        let refusals = [
            Refusal("nobody sharing", .standard(), .releaseControl, by: by(ari), .notSharing),
            Refusal("not the holder", granted, .releaseControl, by: by(ben), .notControlHolder),
            Refusal("the sharer does not hold the token", granted, .releaseControl, by: by(pia), .notControlHolder),
            Refusal("nobody holds it", .sharing(), .releaseControl, by: by(pia), .notControlHolder),
        ]
        for refusal in refusals { refusal.check() }
    }
}

@Suite("Rules: signals")
struct SignalRuleTests {
    static let click = Signal.input(event: "click", x: 1, y: 2, key: nil)
    static let frame = Signal.shareFrame(mime: "image/png", width: 1, height: 1, data: "AA==")

    func expectSignal(_ meeting: Meeting, _ signal: Signal, from sender: ParticipantID, _ code: RejectionCode?,
                      sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            try meeting.checkSignal(signal, from: sender)
            #expect(code == nil, "\(signal.kind) from \(sender) was allowed", sourceLocation: sourceLocation)
        } catch {
            #expect(error.code == code, "\(signal.kind) from \(sender): \(error.message)", sourceLocation: sourceLocation)
        }
    }

    @Test("cursor, pointer and typing are open to everyone present")
    func openSignals() {
        let reconnecting = Meeting.standard().applying(.presence(participant: ari, presence: .reconnecting), by: .system)
        for signal in [Signal.cursor(page: "p1", x: 1, y: 2), .pointer(page: nil, x: 0, y: 0), .typing(active: true)] {
            expectSignal(.standard(), signal, from: ari, nil)
            expectSignal(reconnecting, signal, from: ari, nil)
        }
    }

    @Test("input goes only from the control holder, or from the sharer while nobody holds the token")
    func inputNeedsControl() {
        let sharing = Meeting.sharing()
        expectSignal(.standard(), Self.click, from: pia, .notSharing)
        expectSignal(sharing, Self.click, from: pia, nil)
        expectSignal(sharing, Self.click, from: ari, .notControlHolder)
        expectSignal(sharing, Self.click, from: hana, .notControlHolder)
        let granted = sharing.applying(.grantControl(to: ari), by: by(pia))
        expectSignal(granted, Self.click, from: ari, nil)
        expectSignal(granted, Self.click, from: pia, .notControlHolder)
        expectSignal(granted, Self.click, from: ben, .notControlHolder)
        let revoked = granted.applying(.revokeControl, by: by(pia))
        expectSignal(revoked, Self.click, from: ari, .notControlHolder)
    }

    @Test("share frames come only from the sharer")
    func shareFrames() {
        expectSignal(.standard(), Self.frame, from: pia, .notSharing)
        expectSignal(.sharing(), Self.frame, from: pia, nil)
        expectSignal(.sharing(), Self.frame, from: hana, .notSharer)
        let granted = Meeting.sharing().applying(.grantControl(to: ari), by: by(pia))
        expectSignal(granted, Self.frame, from: ari, .notSharer)
    }

    @Test("non-participants and ended meetings send no signals")
    func signalRefusals() {
        let left = Meeting.sharing().applying(.leave(participant: ari), by: .system)
        expectSignal(left, .typing(active: true), from: ari, .notParticipant)
        expectSignal(.standard(), .typing(active: true), from: zed, .notParticipant)
        let ended = Meeting.sharing().applying(.end, by: by(hana))
        expectSignal(ended, .typing(active: true), from: hana, .meetingEnded)
        expectSignal(ended, Self.click, from: pia, .meetingEnded)
    }

    @Test("every signal kind is listed in allKinds")
    func signalKinds() {
        let all: [Signal] = [.cursor(page: nil, x: 0, y: 0), .pointer(page: nil, x: 0, y: 0), .typing(active: false), Self.frame, Self.click]
        #expect(Set(all.map(\.kind)) == Signal.allKinds)
    }
}

@Suite("Rules: lock and end")
struct MeetingRuleTests {
    @Test("the host locks and unlocks; both are idempotent")
    func lockUnlock() {
        let locked = expectAccepted(.standard(), .lock, by: by(hana))
        #expect(locked.locked)
        #expect(expectAccepted(locked, .lock, by: by(hana)).locked)
        let unlocked = expectAccepted(locked, .unlock, by: by(hana))
        #expect(!unlocked.locked)
        #expect(unlocked == .standard())
        _ = expectAccepted(unlocked, .join(participant: "cy", name: "Cy", role: .attendee), by: .system)
    }

    @Test("lock, unlock and end refusals: not the host")
    func hostOnly() {
        let locked = Meeting.standard().applying(.lock, by: by(hana))
        let refusals = [
            Refusal("presenter locks", .standard(), .lock, by: by(pia), .notHost),
            Refusal("attendee unlocks", locked, .unlock, by: by(ari), .notHost),
            Refusal("presenter ends", .standard(), .end, by: by(pia), .notHost),
            Refusal("attendee ends", .standard(), .end, by: by(ari), .notHost),
        ]
        for refusal in refusals { refusal.check() }
    }

    @Test("ending the meeting stops any share")
    func endStopsShare() {
        let after = expectAccepted(.sharing(), .end, by: by(hana))
        #expect(after.ended)
        #expect(after.share == nil)
        #expect(after.participants == Meeting.sharing().participants, "ending does not remove anyone")
    }

    @Test("after the end, every operation from anyone is refused with meeting_ended")
    func endedRefusesEverything() {
        let live = Meeting.withDocuments()
            .applying(PollRuleTests.lunch, by: by(pia))
            .applying(.draw(page: "p1", stroke: "s1", tool: .pen, color: "#000000", width: 1, points: [Point(x: 0, y: 0)], text: nil), by: by(ari))
            .applying(.startShare(kind: .screen, title: "S"), by: by(pia))
            .applying(.requestControl, by: by(ari))
        let ended = live.applying(.end, by: by(hana))
        let everyOperation = OperationSamples.all
        #expect(Set(everyOperation.map(\.kind)) == MeetingOp.allKinds, "the table covers every kind")
        for operation in everyOperation {
            for issuer in [Issuer.system, by(hana), by(pia), by(ari), by(zed)] {
                expectRefused(ended, operation, by: issuer, .meetingEnded)
            }
        }
    }
}

/// One valid-looking instance of every operation kind, aimed at the `withDocuments` meeting.
enum OperationSamples {
    static let all: [MeetingOp] = [
        .join(participant: "cy", name: "Cy", role: .attendee),
        .leave(participant: ari),
        .presence(participant: ari, presence: .reconnecting),
        .handOverHost(to: ari),
        .setPresenter(to: ari),
        .chat(text: "hi"),
        .privateMessage(to: ben, text: "psst"),
        .addDocument(id: "d2", title: "D2", pages: ["x1"]),
        .addWhiteboard(id: "wb2", title: "B2"),
        .addWhiteboardPage(document: "wb", page: "wb.2"),
        .turnPage(to: "p2"),
        .draw(page: "p1", stroke: "s2", tool: .highlighter, color: "#ffff00", width: 8, points: [Point(x: 1, y: 1)], text: nil),
        .erase(page: "p1", stroke: "s1"),
        .clearPage(page: "p1"),
        .createPoll(id: "q2", question: "Q", options: ["a", "b"]),
        .vote(poll: "q1", option: 0),
        .closePoll(poll: "q1"),
        .startShare(kind: .application, title: "App"),
        .stopShare,
        .requestControl,
        .grantControl(to: ari),
        .revokeControl,
        .releaseControl,
        .lock,
        .unlock,
        .end,
    ]
}
