@testable import ParleyCore
import Testing

@Suite("Rules: join, leave and presence (issued by the server)")
struct SystemOperationRuleTests {
    @Test("a new attendee joins connected, as an attendee, not presenting, stamped with the commit time")
    func attendeeJoins() {
        let after = expectAccepted(.standard(), .join(participant: "cy", name: "  Cy  ", role: .attendee), by: .system, at: 7_000)
        #expect(after.participants.last == Participant(
            id: "cy", name: "Cy", role: .attendee, isPresenter: false, presence: .connected, joinedAt: 7_000))
        #expect(after.participants.count == 5)
    }

    @Test("the first host to join presents; a presenter joining while someone presents does not")
    func firstHostPresents() {
        let empty = Meeting(id: "m-1", title: "t")
        let hosted = expectAccepted(empty, .join(participant: hana, name: "Hana", role: .host), by: .system)
        #expect(hosted.host?.id == hana)
        #expect(hosted.presenter?.id == hana)
        let second = expectAccepted(hosted, .join(participant: pia, name: "Pia", role: .presenter), by: .system)
        #expect(second.participant(pia)?.role == .presenter)
        #expect(second.participant(pia)?.isPresenter == false)
        #expect(second.presenter?.id == hana)
    }

    @Test("a presenter joining a meeting nobody presents in becomes the presenter")
    func presenterPresentsWhenNobodyDoes() {
        let meeting = Meeting(id: "m-1", title: "t")
            .applying(.join(participant: ari, name: "Ari", role: .attendee), by: .system)
        let after = expectAccepted(meeting, .join(participant: pia, name: "Pia", role: .presenter), by: .system)
        #expect(after.presenter?.id == pia)
        #expect(after.host == nil)
    }

    @Test("a second host token joins as an attendee while a host is present")
    func secondHostJoinsAsAttendee() {
        let after = expectAccepted(.standard(), .join(participant: "cy", name: "Cy", role: .host), by: .system)
        #expect(after.role(of: "cy") == .attendee)
        #expect(after.host?.id == hana)
        // The event keeps the token's role; the rule that turns it into the role held is one
        // function, which clients applying events share. With no host present, a host token
        // makes a host.
        #expect(Meeting.standard().roleOnJoining(.host) == .attendee)
        #expect(Meeting.standard().roleOnJoining(.presenter) == .presenter)
        #expect(Meeting(id: "m-1", title: "t").roleOnJoining(.host) == .host)
    }

    @Test("join refusals: bad id, bad name, already joined, locked, full, ended")
    func joinRefusals() {
        let standard = Meeting.standard()
        let locked = standard.applying(.lock, by: by(hana))
        let full = Meeting.standard(settings: MeetingSettings(maxParticipants: 4))
        let ended = standard.applying(.end, by: by(hana))
        let longName = String(repeating: "n", count: ModelLimits.nameLength + 1)
        let longID = ParticipantID(String(repeating: "i", count: ModelLimits.identifierLength + 1))
        let refusals = [
            Refusal("empty participant id", standard, .join(participant: "", name: "X", role: .attendee), by: .system, .invalidArgument),
            Refusal("participant id with a space", standard, .join(participant: "a b", name: "X", role: .attendee), by: .system, .invalidArgument),
            Refusal("participant id over 64 bytes", standard, .join(participant: longID, name: "X", role: .attendee), by: .system, .invalidArgument),
            Refusal("empty name", standard, .join(participant: "cy", name: "", role: .attendee), by: .system, .invalidArgument),
            Refusal("whitespace-only name", standard, .join(participant: "cy", name: " \t\n", role: .attendee), by: .system, .invalidArgument),
            Refusal("name over 64 characters", standard, .join(participant: "cy", name: longName, role: .attendee), by: .system, .invalidArgument),
            Refusal("already present", standard, .join(participant: ari, name: "Ari", role: .attendee), by: .system, .alreadyJoined),
            Refusal("present host joins again", standard, .join(participant: hana, name: "Hana", role: .host), by: .system, .alreadyJoined),
            Refusal("locked meeting", locked, .join(participant: "cy", name: "Cy", role: .attendee), by: .system, .meetingLocked),
            Refusal("locked meeting, presenter token", locked, .join(participant: "cy", name: "Cy", role: .presenter), by: .system, .meetingLocked),
            Refusal("full meeting", full, .join(participant: "cy", name: "Cy", role: .attendee), by: .system, .meetingFull),
            Refusal("ended meeting", ended, .join(participant: "cy", name: "Cy", role: .attendee), by: .system, .meetingEnded),
            Refusal("ended meeting, host", ended, .join(participant: "cy", name: "Cy", role: .host), by: .system, .meetingEnded),
        ]
        for refusal in refusals { refusal.check() }
    }

    @Test("a name of exactly 64 characters and an id of exactly 64 bytes are accepted")
    func limitsAreInclusive() {
        let name = String(repeating: "n", count: ModelLimits.nameLength)
        let id = ParticipantID(String(repeating: "i", count: ModelLimits.identifierLength))
        let after = expectAccepted(.standard(), .join(participant: id, name: name, role: .attendee), by: .system)
        #expect(after.participant(id)?.name == name)
    }

    @Test("people who left do not count toward the size limit")
    func leftDoNotCount() {
        let full = Meeting.standard(settings: MeetingSettings(maxParticipants: 4))
        let oneLeft = full.applying(.leave(participant: ben), by: .system)
        let after = expectAccepted(oneLeft, .join(participant: "cy", name: "Cy", role: .attendee), by: .system)
        #expect(after.presence(of: "cy") == .connected)
    }

    @Test("the host may join a full meeting")
    func hostJoinsFullMeeting() {
        let meeting = Meeting(id: "m-1", title: "t", settings: MeetingSettings(maxParticipants: 1))
            .applying(.join(participant: ari, name: "Ari", role: .attendee), by: .system)
        expectRefused(meeting, .join(participant: ben, name: "Ben", role: .attendee), by: .system, .meetingFull)
        let after = expectAccepted(meeting, .join(participant: hana, name: "Hana", role: .host), by: .system)
        #expect(after.host?.id == hana)
        #expect(after.participants.count { $0.presence != .left } == 2)
    }

    @Test("the host who left comes back into a locked meeting as host when nobody inherited the role")
    func hostRejoinsLockedMeeting() {
        let meeting = Meeting(id: "m-1", title: "t")
            .applying(.join(participant: hana, name: "Hana", role: .host), by: .system)
            .applying(.lock, by: by(hana))
            .applying(.leave(participant: hana), by: .system)
        #expect(meeting.host == nil)
        let after = expectAccepted(meeting, .join(participant: hana, name: "Hana", role: .host), by: .system, at: 9_000)
        #expect(after.host?.id == hana)
        #expect(after.presenter?.id == hana)
        #expect(after.locked)
        #expect(after.participants.count == 1, "a rejoin reuses the participant's slot")
        #expect(after.participant(hana)?.joinedAt == 9_000)
    }

    @Test("the host who left comes back into a locked meeting as an attendee when someone inherited the role")
    func hostRejoinsAfterHandOver() {
        let meeting = Meeting.standard()
            .applying(.lock, by: by(hana))
            .applying(.leave(participant: hana), by: .system)
        #expect(meeting.host?.id == pia)
        let after = expectAccepted(meeting, .join(participant: hana, name: "Hana", role: .host), by: .system)
        #expect(after.role(of: hana) == .attendee)
        #expect(after.host?.id == pia)
        #expect(after.presence(of: hana) == .connected)
    }

    @Test("an attendee who left rejoins into the same slot")
    func rejoinReusesSlot() {
        let meeting = Meeting.standard().applying(.leave(participant: ari), by: .system)
        let after = expectAccepted(meeting, .join(participant: ari, name: "Ari Two", role: .attendee), by: .system)
        #expect(after.participants.map(\.id) == [hana, pia, ari, ben])
        #expect(after.participant(ari)?.name == "Ari Two")
        #expect(after.presence(of: ari) == .connected)
    }

    @Test("leaving marks the participant left and strips role and presenting")
    func leave() {
        let after = expectAccepted(.standard(), .leave(participant: pia), by: .system)
        #expect(after.participant(pia) == Participant(
            id: pia, name: "Pia", role: .attendee, isPresenter: false, presence: .left, joinedAt: 1_000))
        #expect(after.participants.count == 4, "a participant who left stays listed")
    }

    @Test("when the host leaves, the first present participant in join order becomes host")
    func hostInheritance() {
        let after = expectAccepted(.standard(), .leave(participant: hana), by: .system)
        #expect(after.host?.id == pia)
        #expect(after.role(of: hana) == .attendee)
        #expect(after.presenter?.id == pia, "the presenter keeps presenting")
        // A reconnecting participant still counts as present.
        let reconnecting = Meeting.standard()
            .applying(.presence(participant: pia, presence: .reconnecting), by: .system)
            .applying(.leave(participant: hana), by: .system)
        #expect(reconnecting.host?.id == pia)
        // Someone who left never inherits.
        let piaGone = Meeting.standard()
            .applying(.leave(participant: pia), by: .system)
            .applying(.leave(participant: hana), by: .system)
        #expect(piaGone.host?.id == ari)
    }

    @Test("when the presenter leaves, the host presents")
    func presenterLeaves() {
        let after = expectAccepted(.standard(), .leave(participant: pia), by: .system)
        #expect(after.presenter?.id == hana)
        #expect(after.participants.filter(\.isPresenter).map(\.id) == [hana])
    }

    @Test("when a presenting host leaves, the heir becomes host and presents")
    func presentingHostLeaves() {
        let meeting = Meeting.standard().applying(.setPresenter(to: hana), by: by(hana))
        let after = expectAccepted(meeting, .leave(participant: hana), by: .system)
        #expect(after.host?.id == pia)
        #expect(after.presenter?.id == pia)
    }

    @Test("when the last participant leaves, nobody hosts or presents")
    func lastLeaves() {
        let meeting = Meeting(id: "m-1", title: "t")
            .applying(.join(participant: hana, name: "Hana", role: .host), by: .system)
        let after = expectAccepted(meeting, .leave(participant: hana), by: .system)
        #expect(after.host == nil)
        #expect(after.presenter == nil)
    }

    @Test("leaving ends the leaver's share, frees control they held and drops their request")
    func leaveCleansShare() {
        let shared = Meeting.sharing()
            .applying(.requestControl, by: by(ari))
            .applying(.requestControl, by: by(ben))
            .applying(.grantControl(to: ari), by: by(pia))
        #expect(shared.share?.controlHolder == ari)
        #expect(shared.share?.controlRequests == [ben])
        let holderLeft = expectAccepted(shared, .leave(participant: ari), by: .system)
        #expect(holderLeft.share?.controlHolder == nil)
        let requesterLeft = expectAccepted(shared, .leave(participant: ben), by: .system)
        #expect(requesterLeft.share?.controlRequests == [])
        #expect(requesterLeft.share?.controlHolder == ari)
        let sharerLeft = expectAccepted(shared, .leave(participant: pia), by: .system)
        #expect(sharerLeft.share == nil)
    }

    @Test("leave refusals: unknown participant, already left, ended")
    func leaveRefusals() {
        let standard = Meeting.standard()
        let refusals = [
            Refusal("never joined", standard, .leave(participant: zed), by: .system, .unknownParticipant),
            Refusal("already left", standard.applying(.leave(participant: ari), by: .system), .leave(participant: ari), by: .system, .unknownParticipant),
            Refusal("ended meeting", standard.applying(.end, by: by(hana)), .leave(participant: ari), by: .system, .meetingEnded),
        ]
        for refusal in refusals { refusal.check() }
    }

    @Test("presence moves between connected and reconnecting")
    func presence() {
        let away = expectAccepted(.standard(), .presence(participant: ari, presence: .reconnecting), by: .system)
        #expect(away.presence(of: ari) == .reconnecting)
        let back = expectAccepted(away, .presence(participant: ari, presence: .connected), by: .system)
        #expect(back.presence(of: ari) == .connected)
        #expect(back == .standard())
    }

    @Test("presence refusals: 'left' through presence, no change, unknown or departed participant")
    func presenceRefusals() {
        let standard = Meeting.standard()
        let refusals = [
            Refusal("left must be a leave", standard, .presence(participant: ari, presence: .left), by: .system, .invalidArgument),
            Refusal("already connected", standard, .presence(participant: ari, presence: .connected), by: .system, .invalidArgument),
            Refusal("already reconnecting", standard.applying(.presence(participant: ari, presence: .reconnecting), by: .system),
                    .presence(participant: ari, presence: .reconnecting), by: .system, .invalidArgument),
            Refusal("never joined", standard, .presence(participant: zed, presence: .reconnecting), by: .system, .unknownParticipant),
            Refusal("has left", standard.applying(.leave(participant: ari), by: .system),
                    .presence(participant: ari, presence: .reconnecting), by: .system, .unknownParticipant),
        ]
        for refusal in refusals { refusal.check() }
    }

    @Test("a client may not issue join, leave or presence, whatever its role")
    func clientsCannotIssueSystemOps() {
        let standard = Meeting.standard()
        let systemOps: [MeetingOp] = [
            .join(participant: "cy", name: "Cy", role: .attendee),
            .join(participant: hana, name: "Hana", role: .host),
            .leave(participant: ari),
            .leave(participant: hana),
            .presence(participant: ari, presence: .reconnecting),
        ]
        for operation in systemOps {
            for issuer in [by(hana), by(pia), by(ari), by(zed)] {
                expectRefused(standard, operation, by: issuer, .forbidden)
            }
        }
        #expect(MeetingOp.systemKinds == ["join", "leave", "presence"])
    }

    @Test("the server may not issue participant operations")
    func systemCannotIssueParticipantOps() {
        let meeting = Meeting.withDocuments()
        for operation in [MeetingOp.chat(text: "hi"), .lock, .end, .turnPage(to: "p2"), .setPresenter(to: ari)] {
            expectRefused(meeting, operation, by: .system, .forbidden)
        }
    }

    @Test("someone who never joined or has left may do nothing")
    func nonParticipants() {
        let meeting = Meeting.withDocuments().applying(.leave(participant: ari), by: .system)
        for operation in [MeetingOp.chat(text: "hi"), .vote(poll: "q", option: 0), .requestControl, .lock] {
            expectRefused(meeting, operation, by: by(zed), .notParticipant)
            expectRefused(meeting, operation, by: by(ari), .notParticipant)
        }
    }

    @Test("a reconnecting participant may still act")
    func reconnectingMayAct() {
        let meeting = Meeting.standard().applying(.presence(participant: ari, presence: .reconnecting), by: .system)
        let after = expectAccepted(meeting, .chat(text: "back soon"), by: by(ari))
        #expect(after.chat.map(\.text) == ["back soon"])
    }
}
