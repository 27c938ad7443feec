@testable import ParleyCore
import Testing

@Suite("Rules: roles, chat and private messages")
struct RoleAndMessageRuleTests {
    @Test("the host hands the host role over and becomes an attendee")
    func handOverHost() {
        let after = expectAccepted(.standard(), .handOverHost(to: ari), by: by(hana))
        #expect(after.host?.id == ari)
        #expect(after.role(of: hana) == .attendee)
        #expect(after.participants.count { $0.role == .host } == 1)
        #expect(after.presenter?.id == pia, "handing over the host role does not move presenting")
        // The new host has the host's powers, the old one has lost them.
        _ = expectAccepted(after, .lock, by: by(ari))
        expectRefused(after, .lock, by: by(hana), .notHost)
    }

    @Test("a presenting host who hands over keeps presenting")
    func presentingHostHandsOver() {
        let meeting = Meeting.standard().applying(.setPresenter(to: hana), by: by(hana))
        let after = expectAccepted(meeting, .handOverHost(to: ari), by: by(hana))
        #expect(after.presenter?.id == hana)
        #expect(after.host?.id == ari)
    }

    @Test("handOverHost refusals: not host, unknown or departed target, self")
    func handOverHostRefusals() {
        let standard = Meeting.standard()
        let refusals = [
            Refusal("presenter is not host", standard, .handOverHost(to: ari), by: by(pia), .notHost),
            Refusal("attendee is not host", standard, .handOverHost(to: ari), by: by(ari), .notHost),
            Refusal("target never joined", standard, .handOverHost(to: zed), by: by(hana), .unknownParticipant),
            Refusal("target has left", standard.applying(.leave(participant: ari), by: .system), .handOverHost(to: ari), by: by(hana), .unknownParticipant),
            Refusal("to oneself", standard, .handOverHost(to: hana), by: by(hana), .invalidArgument),
        ]
        for refusal in refusals { refusal.check() }
    }

    @Test("the host chooses the presenter; exactly one participant presents")
    func setPresenter() {
        let after = expectAccepted(.standard(), .setPresenter(to: ari), by: by(hana))
        #expect(after.participants.filter(\.isPresenter).map(\.id) == [ari])
        #expect(after.role(of: ari) == .attendee, "presenting is a flag, not a role change")
        let hostPresents = expectAccepted(.standard(), .setPresenter(to: hana), by: by(hana))
        #expect(hostPresents.participants.filter(\.isPresenter).map(\.id) == [hana])
    }

    @Test("setPresenter refusals: not host, unknown or departed target")
    func setPresenterRefusals() {
        let standard = Meeting.standard()
        let refusals = [
            Refusal("presenter cannot pass presenting on", standard, .setPresenter(to: ari), by: by(pia), .notHost),
            Refusal("attendee", standard, .setPresenter(to: ari), by: by(ari), .notHost),
            Refusal("target never joined", standard, .setPresenter(to: zed), by: by(hana), .unknownParticipant),
            Refusal("target has left", standard.applying(.leave(participant: ari), by: .system), .setPresenter(to: ari), by: by(hana), .unknownParticipant),
        ]
        for refusal in refusals { refusal.check() }
    }

    @Test("the state keeps only the newest messages of each kind, so a snapshot stays bounded")
    func messageHistoryIsBounded() throws {
        var meeting = Meeting.standard()
        let limit = ModelLimits.messageHistory
        for index in 1...(limit + 5) {
            try meeting.apply(.chat(text: "c\(index)"), by: by(ari), at: 1_000, seq: Seq(100 + index))
            try meeting.apply(.privateMessage(to: hana, text: "p\(index)"), by: by(ari), at: 1_000, seq: Seq(10_000 + index))
        }
        #expect(meeting.chat.count == limit)
        #expect(meeting.chat.first?.text == "c6")
        #expect(meeting.chat.last?.text == "c\(limit + 5)")
        #expect(meeting.privateMessages.count == limit)
        #expect(meeting.privateMessages.first?.text == "p6")
    }

    @Test("anyone present may chat; the message carries its seq, sender and commit time")
    func chat() {
        let after = expectAccepted(.standard(), .chat(text: "hello"), by: by(ben), at: 5_000, seq: 42)
        #expect(after.chat == [ChatMessage(seq: 42, from: ben, text: "hello", at: 5_000)])
        let longest = String(repeating: "x", count: ModelLimits.textLength)
        _ = expectAccepted(.standard(), .chat(text: longest), by: by(ben))
    }

    @Test("chat refusals: feature off, empty text, text over 4,000 characters")
    func chatRefusals() {
        let noChat = Meeting.standard(settings: MeetingSettings(features: Features(chat: false)))
        let standard = Meeting.standard()
        let refusals = [
            Refusal("chat turned off", noChat, .chat(text: "hi"), by: by(hana), .featureDisabled),
            Refusal("empty", standard, .chat(text: ""), by: by(ari), .invalidArgument),
            Refusal("too long", standard, .chat(text: String(repeating: "x", count: ModelLimits.textLength + 1)), by: by(ari), .invalidArgument),
        ]
        for refusal in refusals { refusal.check() }
    }

    @Test("a private message is stored with both parties and is visible only to them")
    func privateMessage() {
        let after = expectAccepted(.standard(), .privateMessage(to: ben, text: "psst"), by: by(ari), at: 3_000, seq: 7)
        let message = PrivateMessage(seq: 7, from: ari, to: ben, text: "psst", at: 3_000)
        #expect(after.privateMessages == [message])
        #expect(after.visible(to: ari).privateMessages == [message])
        #expect(after.visible(to: ben).privateMessages == [message])
        #expect(after.visible(to: hana).privateMessages == [], "not even the host reads other people's private messages")
        #expect(after.chat.isEmpty)
    }

    @Test("privateMessage refusals: feature off, unknown or departed recipient, to oneself, bad text")
    func privateMessageRefusals() {
        let noPrivate = Meeting.standard(settings: MeetingSettings(features: Features(privateChat: false)))
        let standard = Meeting.standard()
        let refusals = [
            Refusal("private chat turned off", noPrivate, .privateMessage(to: ben, text: "hi"), by: by(ari), .featureDisabled),
            Refusal("recipient never joined", standard, .privateMessage(to: zed, text: "hi"), by: by(ari), .unknownParticipant),
            Refusal("recipient left", standard.applying(.leave(participant: ben), by: .system), .privateMessage(to: ben, text: "hi"), by: by(ari), .unknownParticipant),
            Refusal("to oneself", standard, .privateMessage(to: ari, text: "hi"), by: by(ari), .invalidArgument),
            Refusal("empty", standard, .privateMessage(to: ben, text: ""), by: by(ari), .invalidArgument),
            Refusal("too long", standard, .privateMessage(to: ben, text: String(repeating: "x", count: ModelLimits.textLength + 1)), by: by(ari), .invalidArgument),
        ]
        for refusal in refusals { refusal.check() }
    }

    @Test("only a private message has a private recipient, and its log entry is visible to its two parties only")
    func privateEntryVisibility() {
        let entry = LogEntry(seq: 3, epoch: Epoch(1), at: 1, issuer: by(ari), opID: "o1",
                             operation: .privateMessage(to: ben, text: "psst"))
        #expect(entry.operation.privateRecipient == ben)
        #expect(entry.isVisible(to: ari))
        #expect(entry.isVisible(to: ben))
        #expect(!entry.isVisible(to: hana))
        #expect(!entry.isVisible(to: pia))
        let chat = LogEntry(seq: 4, epoch: Epoch(1), at: 1, issuer: by(ari), opID: "o2", operation: .chat(text: "hi"))
        #expect(chat.operation.privateRecipient == nil)
        #expect(chat.isVisible(to: hana))
    }
}
