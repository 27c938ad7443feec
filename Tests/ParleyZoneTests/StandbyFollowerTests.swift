import ParleyCore
import ParleyZone
import Testing

@Suite("StandbyFollower: how a standby copy keeps up with its host")
struct StandbyFollowerTests {
    @Test("load, subscribe after the copy's last seq, and after the link ends subscribe again from where the copy is")
    func resubscribesFromTheCopy() {
        var follower = StandbyFollower()
        #expect(follower.start() == [.load])
        #expect(follower.loaded(through: 40) == [.subscribe(after: 40)])
        follower.applied(through: 45)
        follower.applied(through: 52)
        #expect(follower.linkEnded() == [.wait(ms: StandbyFollower.retryMs)])
        #expect(follower.retryDue(copyHeld: true) == [.subscribe(after: 52)])
        #expect(follower.held == 52)
    }

    @Test("a copy that was dropped meanwhile, a gap, or the host's request rebuilds from the store")
    func rebuilds() {
        var dropped = StandbyFollower()
        _ = dropped.loaded(through: 10)
        _ = dropped.linkEnded()
        #expect(dropped.retryDue(copyHeld: false) == [.load])
        #expect(dropped.held == nil)

        for input in [{ (f: inout StandbyFollower) in f.notApplied() }, { (f: inout StandbyFollower) in f.reloadAsked() }] {
            var follower = StandbyFollower()
            _ = follower.loaded(through: 10)
            #expect(input(&follower) == [.closeLink, .wait(ms: StandbyFollower.retryMs)])
            // Even if the copy is still there, it is not trusted: it is rebuilt.
            #expect(follower.retryDue(copyHeld: true) == [.load])
            #expect(follower.loaded(through: 12) == [.subscribe(after: 12)])
        }
    }

    @Test("a failed load is tried again; inputs that do not fit the phase change nothing")
    func outOfPhase() {
        var follower = StandbyFollower()
        #expect(follower.loadFailed() == [.wait(ms: StandbyFollower.retryMs)])
        #expect(follower.linkEnded() == [], "no link while waiting")
        #expect(follower.loaded(through: 5) == [], "no load was asked for")
        #expect(follower.retryDue(copyHeld: true) == [.load], "nothing is known to be held")
        #expect(follower.retryDue(copyHeld: true) == [], "not waiting")
        follower.applied(through: 99)
        #expect(follower.held == nil, "nothing applies while loading")
        #expect(follower.loaded(through: 5) == [.subscribe(after: 5)])
        // A late end of a link already given up on changes nothing.
        _ = follower.reloadAsked()
        #expect(follower.linkEnded() == [])
        #expect(follower.phase == .waiting)
    }
}
