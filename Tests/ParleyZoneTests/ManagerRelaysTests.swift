import ParleyCore
import ParleyZone
import Testing

private typealias LinkID = ManagerRelays.LinkID
private let web = LinkID(1)
private let web2 = LinkID(2)
private let collab = LinkID(3)
private let license = LinkID(4)
private let license2 = LinkID(5)
private let ctl = LinkID(6)
private let standup = MeetingID("standup")
private let review = MeetingID("review")
private let ada = ParticipantID("ada")
private let bob = ParticipantID("bob")
private let c1: NodeName = "collab-1"
private let c2: NodeName = "collab-2"
private let here = ServerAddress(client: "http://collab-1:1", zone: "http://collab-1:2")

@Suite("Manager relays: every locate, admission and drain is answered once, on its own link, or dropped with it")
struct ManagerRelaysTests {
    @Test("locate answers reach their own asker's link under the asker's own request id, whatever order Placement answers in")
    func locatesReachTheirAskers() {
        var relays = ManagerRelays()
        // Two web processes number their requests independently: both use id 7.
        let first = relays.locateAsked(by: web, request: 7)
        let second = relays.locateAsked(by: web2, request: 7)
        #expect(first != second)
        #expect(relays.located(second, .unavailable(.noHostYet(standup))) == [
            .send(.located(request: 7, answer: .unavailable("meeting standup has no host yet; retry shortly")), on: web2),
        ])
        #expect(relays.located(first, .at(c1, here)) == [.send(.located(request: 7, answer: .at(c1, here)), on: web)])
        #expect(relays.located(first, .at(c1, here)) == [], "answered once")
        #expect(relays.waiting == 0)
    }

    @Test("an admission goes to the license service under the manager's id and comes back to the host under the host's id")
    func admissionRoundTrip() {
        var relays = ManagerRelays()
        let asked = relays.admitAsked(by: collab, request: 3, meeting: standup, participant: ada, licenseService: license)
        guard case .send(.admit(let relayed, standup, ada), on: license)? = asked.first, asked.count == 1 else {
            Issue.record("not passed on to the license service: \(asked)")
            return
        }
        // Ids for passed-on questions are the manager's own, shared with locates: never reused.
        let locate = relays.locateAsked(by: web, request: 1)
        #expect(locate.rawValue != relayed)
        #expect(relays.admitted(relayed, ok: false, reason: "zone full") == [
            .send(.admitted(request: 3, ok: false, reason: "zone full"), on: collab),
        ])
        #expect(relays.admitted(relayed, ok: true, reason: "") == [], "a second answer is ignored")
    }

    @Test("with no license service registered a join is admitted at once, loudly")
    func noLicenseService() {
        var relays = ManagerRelays()
        #expect(relays.admitAsked(by: collab, request: 9, meeting: standup, participant: ada, licenseService: nil) == [
            .admitUnlicensed(request: 9, on: collab, reason: "no license service reachable"),
        ])
        #expect(relays.waiting == 0)
    }

    @Test("a closed link's own questions are dropped: later answers for them send nothing, others' still arrive")
    func closedAskerDropped() {
        var relays = ManagerRelays()
        let gone = relays.locateAsked(by: web, request: 1)
        let stays = relays.locateAsked(by: web2, request: 1)
        let admission = relays.admitAsked(by: web, request: 2, meeting: standup, participant: ada, licenseService: license)
        relays.drainAsked(c1, by: ctl)
        relays.drainAsked(c1, by: web)
        #expect(relays.linkClosed(web) == [])
        #expect(relays.waiting == 2, "web2's locate and ctl's drain")
        #expect(relays.located(gone, .at(c1, here)) == [])
        if case .send(.admit(let relayed, _, _), _)? = admission.first {
            #expect(relays.admitted(relayed, ok: true, reason: "") == [])
        } else {
            Issue.record("not passed on: \(admission)")
        }
        #expect(relays.located(stays, .at(c1, here)) == [.send(.located(request: 1, answer: .at(c1, here)), on: web2)])
        #expect(relays.drained(c1) == [.send(.drained(server: c1, ok: true, detail: "every meeting moved off collab-1"), on: ctl)])
    }

    @Test("when the license service's link closes, the admissions passed to it are admitted at once; those passed to another service wait")
    func licenseServiceLinkClosed() {
        var relays = ManagerRelays()
        _ = relays.admitAsked(by: collab, request: 1, meeting: standup, participant: ada, licenseService: license)
        _ = relays.admitAsked(by: collab, request: 2, meeting: review, participant: bob, licenseService: license2)
        #expect(relays.linkClosed(license) == [
            .admitUnlicensed(request: 1, on: collab, reason: "the license service's link closed before it answered"),
        ])
        #expect(relays.waiting == 1)
    }

    @Test("every operator waiting for a drain is told once it finishes; a drain of another server is not answered")
    func drainAnswered() {
        var relays = ManagerRelays()
        relays.drainAsked(c1, by: ctl)
        relays.drainAsked(c1, by: web)
        relays.drainAsked(c2, by: ctl)
        #expect(relays.drained(c1) == [
            .send(.drained(server: c1, ok: true, detail: "every meeting moved off collab-1"), on: ctl),
            .send(.drained(server: c1, ok: true, detail: "every meeting moved off collab-1"), on: web),
        ])
        #expect(relays.drained(c1) == [])
        #expect(relays.waiting == 1)
    }

    @Test("a step-down answers every waiter: locates unavailable, admissions admitted, drains not finished; nothing is left")
    func stepDownAnswersEveryone() {
        var relays = ManagerRelays()
        let late = relays.locateAsked(by: web, request: 11)
        _ = relays.locateAsked(by: web2, request: 12)
        let admission = relays.admitAsked(by: collab, request: 13, meeting: standup, participant: ada, licenseService: license)
        relays.drainAsked(c2, by: ctl)
        relays.drainAsked(c1, by: ctl)
        let reason = StepDownReason.renewalOverdue
        #expect(relays.steppedDown(reason: reason) == [
            .send(.located(request: 11, answer: .unavailable("the zone's manager stepped down (\(reason)); retry shortly")), on: web),
            .send(.located(request: 12, answer: .unavailable("the zone's manager stepped down (\(reason)); retry shortly")), on: web2),
            .admitUnlicensed(request: 13, on: collab, reason: "the manager stepped down (\(reason)) before the license service answered"),
            .send(.drained(server: c1, ok: false,
                           detail: "the manager stepped down: \(reason); collab-1 may still hold meetings: run the drain again once a manager leads"),
                  on: ctl),
            .send(.drained(server: c2, ok: false,
                           detail: "the manager stepped down: \(reason); collab-2 may still hold meetings: run the drain again once a manager leads"),
                  on: ctl),
        ])
        #expect(relays.waiting == 0)
        // Answers that come in after the step-down match nothing.
        #expect(relays.located(late, .at(c1, here)) == [])
        if case .send(.admit(let relayed, _, _), _)? = admission.first {
            #expect(relays.admitted(relayed, ok: true, reason: "") == [])
        }
        #expect(relays.drained(c1) == [])
        #expect(relays.steppedDown(reason: reason) == [], "a second step-down has nobody left to tell")
    }

    @Test("questions asked after a step-down get ids never given before, so a late answer from the previous term matches none of them")
    func idsNeverRepeat() {
        var relays = ManagerRelays()
        let before = relays.locateAsked(by: web, request: 1)
        _ = relays.steppedDown(reason: .shuttingDown)
        let after = relays.locateAsked(by: web, request: 1)
        #expect(after > before)
        #expect(relays.located(before, .at(c1, here)) == [])
        #expect(relays.located(after, .at(c1, here)) == [.send(.located(request: 1, answer: .at(c1, here)), on: web)])
    }
}
