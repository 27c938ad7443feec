import ParleyCore
import ParleyZone
import Testing

private let c1: NodeName = "collab-1"
private let c2: NodeName = "collab-2"
private let c3: NodeName = "collab-3"
private let standup = MeetingID("standup")
private let review = MeetingID("review")

private func address(_ name: NodeName) -> ServerAddress {
    ServerAddress(client: "http://\(name):1", zone: "http://\(name):2")
}

/// A zone with the given servers registered at t=0, holding nothing.
private func zone(_ names: [NodeName], tuning: Placement.Tuning = .init()) -> Placement {
    var placement = Placement(tuning: tuning)
    for name in names { _ = placement.register(name, at: address(name), holding: [], nowMs: 0) }
    return placement
}

@Suite("Placement: the manager's rules for hosts, standbys and failover")
struct PlacementTests {
    @Test("a first locate opens the meeting on the least loaded server with a standby on another; the answer waits for the host")
    func firstLocate() {
        var placement = zone([c1, c2])
        _ = placement.heard(c1, load: ServerLoad(connections: 50), nowMs: 10)
        #expect(placement.locate(standup, request: LocateRequest(1), nowMs: 20) == [.open(standup, on: c2, standby: c1)])
        // A second client asking meanwhile also waits.
        #expect(placement.locate(standup, request: LocateRequest(2), nowMs: 25) == [])
        #expect(placement.hosting(standup, on: c2, epoch: Epoch(1)) == [
            .answer(LocateRequest(1), .at(c2, address(c2))),
            .answer(LocateRequest(2), .at(c2, address(c2))),
            .follow(standup, on: c1, host: c2),
        ])
        #expect(placement.locate(standup, request: LocateRequest(3), nowMs: 30) == [.answer(LocateRequest(3), .at(c2, address(c2)))])
    }

    @Test("with edges on, one meeting's participants fill its host and standby up to connectionsPerCopy each, then another server becomes an edge; a copy looking for the host is always told the host")
    func edgesSpreadOneMeeting() {
        let c4: NodeName = "collab-4"
        var placement = zone([c1, c2, c3, c4], tuning: .init(connectionsPerCopy: 2))
        _ = placement.locate(standup, request: LocateRequest(0), nowMs: 0)
        let host = placement.places[standup]!.host
        let standby = placement.places[standup]!.standby!
        _ = placement.hosting(standup, on: host, epoch: Epoch(1))
        // Request 0 was answered with the host and counted there.
        var sentTo: [NodeName] = []
        for request in 1...5 {
            guard case .answer(_, .at(let name, _))? = placement.locate(standup, request: LocateRequest(UInt64(request)), nowMs: 1).first else {
                Issue.record("locate \(request) was not answered")
                return
            }
            sentTo.append(name)
        }
        #expect(Set(sentTo.prefix(3)) == [host, standby], "host and standby take two each before anyone else: \(sentTo)")
        let edge = sentTo[3]
        #expect(edge != host && edge != standby)
        #expect(placement.places[standup]!.edges == [edge])
        #expect(sentTo[4] == edge, "the new edge is filled next, not yet another server")
        #expect(placement.locate(standup, request: LocateRequest(9), forClient: false, nowMs: 2) == [.answer(LocateRequest(9), .at(host, address(host)))])
    }

    @Test("an edge dropped unused no longer counts among the meeting's copies: the next participants fill the host and standby first again; a report from the host or standby changes nothing")
    func droppedEdgeIsForgotten() {
        var placement = zone([c1, c2, c3], tuning: .init(connectionsPerCopy: 1))
        _ = placement.locate(standup, request: LocateRequest(0), nowMs: 0)
        let host = placement.places[standup]!.host
        let standby = placement.places[standup]!.standby!
        _ = placement.hosting(standup, on: host, epoch: Epoch(1))
        _ = placement.locate(standup, request: LocateRequest(1), nowMs: 1)
        _ = placement.locate(standup, request: LocateRequest(2), nowMs: 1)
        guard let edge = placement.places[standup]!.edges.first else {
            Issue.record("no edge after three participants with one per copy")
            return
        }
        placement.edgeDropped(standup, on: host)
        placement.edgeDropped(standup, on: standby)
        #expect(placement.places[standup]!.sent[host] == 1 && placement.places[standup]!.sent[standby] == 1)
        placement.edgeDropped(standup, on: edge)
        #expect(placement.places[standup]!.edges.isEmpty)
        #expect(placement.places[standup]!.sent[edge] == nil)
        // Host and standby are past their share: the dropped server becomes an edge again.
        guard case .answer(_, .at(let next, _))? = placement.locate(standup, request: LocateRequest(3), nowMs: 2).first else {
            Issue.record("locate 3 was not answered")
            return
        }
        #expect(next == edge)
        #expect(placement.places[standup]!.edges == [edge])
    }

    @Test("with edges on in a cluster, a participant asking through a front on machine m2 goes to a server on m2: one holding a copy if there is one, else one that becomes an edge there")
    func edgesNearTheFront() {
        var placement = Placement(tuning: .init(connectionsPerCopy: 100))
        let machines: [NodeName: String] = [c1: "m1", c2: "m1", c3: "m2"]
        for name in [c1, c2, c3] {
            _ = placement.register(name, at: ServerAddress(client: "http://\(name):1", zone: "http://\(name):2", machine: machines[name]),
                                   holding: [], nowMs: 0)
        }
        _ = placement.locate(standup, request: LocateRequest(0), nowMs: 0)
        let host = placement.places[standup]!.host
        _ = placement.hosting(standup, on: host, epoch: Epoch(1))
        let holders = [host, placement.places[standup]!.standby!]
        // The host and its standby are on m1 (or one of them is c3, on m2).
        let asked = placement.locate(standup, request: LocateRequest(1), near: "m2", nowMs: 1)
        guard case .answer(_, .at(let server, _))? = asked.first else {
            Issue.record("not answered: \(asked)")
            return
        }
        #expect(server == c3, "sent to \(server), holders \(holders)")
        // Through a front on m1, the next goes to a holder on m1.
        guard case .answer(_, .at(let other, _))? = placement.locate(standup, request: LocateRequest(2), near: "m1", nowMs: 2).first else {
            Issue.record("not answered")
            return
        }
        #expect(machines[other] == "m1")
    }

    @Test("with edges off, every participant goes to the host")
    func edgesOff() {
        var placement = zone([c1, c2, c3])
        _ = placement.locate(standup, request: LocateRequest(0), nowMs: 0)
        let host = placement.places[standup]!.host
        _ = placement.hosting(standup, on: host, epoch: Epoch(1))
        for request in 1...5 {
            #expect(placement.locate(standup, request: LocateRequest(UInt64(request)), nowMs: 1) == [.answer(LocateRequest(UInt64(request)), .at(host, address(host)))])
        }
    }

    @Test("meetings spread: the second meeting goes to the server that hosts fewer")
    func spread() {
        var placement = zone([c1, c2])
        _ = placement.locate(standup, request: LocateRequest(1), nowMs: 0)
        _ = placement.hosting(standup, on: c1, epoch: Epoch(1))
        #expect(placement.locate(review, request: LocateRequest(2), nowMs: 1) == [.open(review, on: c2, standby: c1)])
    }

    @Test("when the host is lost its standby is promoted, a new standby is chosen, and locates wait for the promotion")
    func failover() {
        var placement = zone([c1, c2, c3])
        _ = placement.locate(standup, request: LocateRequest(1), nowMs: 0)
        _ = placement.hosting(standup, on: c1, epoch: Epoch(1))
        #expect(placement.places[standup]?.standby == c2)
        #expect(placement.lost(c1, reason: .linkClosed("link closed"), nowMs: 100) == [
            .disconnect(c1, reason: .linkClosed("link closed")),
            .promote(standup, on: c2, standby: c3),
        ])
        #expect(placement.locate(standup, request: LocateRequest(2), nowMs: 110) == [])
        #expect(placement.hosting(standup, on: c2, epoch: Epoch(2)) == [
            .answer(LocateRequest(2), .at(c2, address(c2))),
            .follow(standup, on: c3, host: c2),
        ])
        #expect(placement.places[standup]?.epoch == Epoch(2))
    }

    @Test("a server silent past the heartbeat timeout is treated as lost on the next tick")
    func hang() {
        var placement = zone([c1, c2], tuning: .init(heartbeatTimeoutMs: 1_000))
        _ = placement.locate(standup, request: LocateRequest(1), nowMs: 0)
        _ = placement.hosting(standup, on: c1, epoch: Epoch(1))
        _ = placement.heard(c2, load: ServerLoad(), nowMs: 900)
        #expect(placement.tick(nowMs: 1_000) == [], "exactly at the timeout is not yet late")
        #expect(placement.tick(nowMs: 1_001) == [
            .disconnect(c1, reason: .silent(forMs: 1001)),
            .promote(standup, on: c2, standby: nil),
        ])
    }

    @Test("with no standby the meeting is reopened from the store on a live server")
    func noStandby() {
        var placement = zone([c1])
        _ = placement.locate(standup, request: LocateRequest(1), nowMs: 0)
        _ = placement.hosting(standup, on: c1, epoch: Epoch(1))
        #expect(placement.places[standup]?.standby == nil)
        // The only server dies: nowhere to go yet; clients wait.
        #expect(placement.lost(c1, reason: .linkClosed("exited"), nowMs: 10) == [.disconnect(c1, reason: .linkClosed("exited"))])
        #expect(placement.locate(standup, request: LocateRequest(2), nowMs: 20) == [])
        // It is restarted by the supervisor and registers, empty: the meeting is opened there.
        #expect(placement.register(c1, at: address(c1), holding: [], nowMs: 300) == [.open(standup, on: c1, standby: nil)])
        #expect(placement.hosting(standup, on: c1, epoch: Epoch(2)) == [.answer(LocateRequest(2), .at(c1, address(c1)))])
    }

    @Test("a new manager rebuilds the placement from what servers report; the newest epoch wins and stale copies are released")
    func rebuildAfterManagerFailover() {
        var placement = Placement()
        #expect(placement.register(c1, at: address(c1), holding: [
            HeldMeeting(meeting: standup, role: .host, epoch: Epoch(3)),
            HeldMeeting(meeting: review, role: .standby, epoch: Epoch(1)),
        ], nowMs: 0) == [])
        // A stale host of `standup` (it was paused) comes back claiming an older epoch.
        #expect(placement.register(c2, at: address(c2), holding: [
            HeldMeeting(meeting: standup, role: .host, epoch: Epoch(2)),
            HeldMeeting(meeting: review, role: .host, epoch: Epoch(1)),
        ], nowMs: 5) == [
            .release(standup, on: c2),
            .follow(standup, on: c2, host: c1),
        ])
        #expect(placement.places[standup] == Placement.Place(host: c1, standby: c2, epoch: Epoch(3), movingSinceMs: nil))
        #expect(placement.places[review]?.host == c2)
        #expect(placement.locate(review, request: LocateRequest(1), nowMs: 6) == [.answer(LocateRequest(1), .at(c2, address(c2)))])
    }

    @Test("a server reporting a newer epoch than the placement takes over; the older host is released")
    func newerEpochWins() {
        var placement = Placement()
        _ = placement.register(c1, at: address(c1), holding: [HeldMeeting(meeting: standup, role: .host, epoch: Epoch(2))], nowMs: 0)
        let actions = placement.register(c2, at: address(c2), holding: [HeldMeeting(meeting: standup, role: .host, epoch: Epoch(4))], nowMs: 1)
        #expect(actions == [.release(standup, on: c1), .follow(standup, on: c1, host: c2)])
        #expect(placement.places[standup]?.host == c2)
    }

    @Test("a server reporting a newer epoch takes over with the meeting's standby, which is told to follow it instead of the released host")
    func newerEpochHostKeepsStandby() {
        var placement = Placement()
        _ = placement.register(c1, at: address(c1), holding: [HeldMeeting(meeting: standup, role: .host, epoch: Epoch(2))], nowMs: 0)
        #expect(placement.register(c2, at: address(c2), holding: [HeldMeeting(meeting: standup, role: .standby, epoch: Epoch(2))],
                                   nowMs: 1) == [])
        #expect(placement.register(c3, at: address(c3), holding: [HeldMeeting(meeting: standup, role: .host, epoch: Epoch(3))],
                                   nowMs: 2) == [.release(standup, on: c1), .follow(standup, on: c2, host: c3)])
        #expect(placement.places[standup] == Placement.Place(host: c3, standby: c2, epoch: Epoch(3), movingSinceMs: nil))
    }

    @Test("drain promotes each standby before releasing the drained host, and reports drained once the moves are confirmed")
    func drain() {
        var placement = zone([c1, c2, c3])
        _ = placement.locate(standup, request: LocateRequest(1), nowMs: 0)
        _ = placement.hosting(standup, on: c1, epoch: Epoch(1))  // standby c2
        _ = placement.locate(review, request: LocateRequest(2), nowMs: 0)
        _ = placement.hosting(review, on: c3, epoch: Epoch(1))  // standby: c1 or c2, whichever holds less
        let reviewStandby = placement.places[review]?.standby
        #expect(reviewStandby == c2 || reviewStandby == c1)

        let actions = placement.drain(c1, nowMs: 10)
        #expect(actions.prefix(2) == [.promote(standup, on: c2, standby: c3), .release(standup, on: c1)])
        #expect(!actions.contains(.drained(c1)), "not drained while a promotion is unconfirmed")
        #expect(placement.locate(review, request: LocateRequest(3), nowMs: 11).count == 1, "other meetings are not disturbed")
        let confirmed = placement.hosting(standup, on: c2, epoch: Epoch(2))
        #expect(confirmed.last == .drained(c1))
        #expect(!placement.places.values.contains { $0.host == c1 || $0.standby == c1 })
        // New meetings avoid the drained server.
        #expect(placement.locate(MeetingID("new"), request: LocateRequest(4), nowMs: 20).first.map {
            if case .open(_, let host, let standby) = $0 { host != c1 && standby != c1 } else { false }
        } == true)
    }

    @Test("a draining server that registers again after its link dropped stays draining, and is reported drained once its meetings have moved")
    func drainOutlivesReconnect() {
        var placement = zone([c1, c2, c3])
        _ = placement.locate(standup, request: LocateRequest(1), nowMs: 0)
        _ = placement.hosting(standup, on: c1, epoch: Epoch(1))  // standby c2
        #expect(placement.drain(c1, nowMs: 10) == [.promote(standup, on: c2, standby: c3), .release(standup, on: c1)])
        #expect(placement.lost(c1, reason: .linkClosed("link closed"), nowMs: 11) == [.disconnect(c1, reason: .linkClosed("link closed"))])
        #expect(placement.register(c1, at: address(c1), holding: [], nowMs: 12) == [])
        #expect(placement.servers[c1]?.draining == true)
        #expect(placement.hosting(standup, on: c2, epoch: Epoch(2)) == [.follow(standup, on: c3, host: c2), .drained(c1)])
        // New meetings avoid it: collab-3 (a standby) hosts, collab-2 (a host) follows.
        #expect(placement.locate(review, request: LocateRequest(2), nowMs: 13) == [.open(review, on: c3, standby: c2)])
    }

    @Test("a draining server that registers again is not given back the copies it still reports: they are released")
    func drainingServerReportsCopies() {
        var placement = zone([c1, c2])
        _ = placement.locate(standup, request: LocateRequest(1), nowMs: 0)
        _ = placement.hosting(standup, on: c1, epoch: Epoch(1))  // standby c2
        // No other server can follow standup: it is left without a standby.
        #expect(placement.drain(c2, nowMs: 10) == [.release(standup, on: c2), .drained(c2)])
        // collab-2 registers again before the release reached it, still following standup.
        #expect(placement.register(c2, at: address(c2), holding: [HeldMeeting(meeting: standup, role: .standby, epoch: Epoch(1))],
                                   nowMs: 11) == [.release(standup, on: c2)])
        #expect(placement.places[standup]?.standby == nil)
    }

    @Test("a draining server that registers again reporting a meeting whose move off it is in flight is released; the move goes on")
    func drainingServerReportsHostDuringMove() {
        var placement = zone([c1, c2, c3])
        #expect(placement.locate(standup, request: LocateRequest(1), nowMs: 0) == [.open(standup, on: c1, standby: c2)])
        // Drained while the open is unconfirmed; collab-1 opens it under e1 all the same.
        #expect(placement.drain(c1, nowMs: 10) == [.promote(standup, on: c2, standby: c3), .release(standup, on: c1)])
        _ = placement.lost(c1, reason: .linkClosed("link closed"), nowMs: 11)
        // collab-2's promotion claims an epoch after e1, which fences collab-1's copy.
        #expect(placement.register(c1, at: address(c1), holding: [HeldMeeting(meeting: standup, role: .host, epoch: Epoch(1))],
                                   nowMs: 12) == [.release(standup, on: c1)])
        #expect(placement.hosting(standup, on: c2, epoch: Epoch(2)) == [
            .answer(LocateRequest(1), .at(c2, address(c2))),
            .follow(standup, on: c3, host: c2),
            .drained(c1),
        ])
    }

    @Test("a draining server that registers again as the only host of a meeting is given it back only to move it off again")
    func drainingServerReportsUnplacedHost() {
        var placement = zone([c1, c2])
        #expect(placement.locate(standup, request: LocateRequest(1), nowMs: 0) == [.open(standup, on: c1, standby: c2)])
        // Drained while the open is unconfirmed; collab-1 opens it under e1 all the same.
        #expect(placement.drain(c1, nowMs: 10) == [.promote(standup, on: c2, standby: nil), .release(standup, on: c1)])
        _ = placement.lost(c1, reason: .linkClosed("link closed"), nowMs: 11)
        // collab-2 cannot take it, and no other server can: the placement drops it.
        #expect(placement.failedToHost(standup, on: c2, nowMs: 12) == [])
        #expect(placement.places[standup] == nil)
        #expect(placement.register(c1, at: address(c1), holding: [HeldMeeting(meeting: standup, role: .host, epoch: Epoch(1))],
                                   nowMs: 13) == [.open(standup, on: c2, standby: nil), .release(standup, on: c1)])
        #expect(placement.hosting(standup, on: c2, epoch: Epoch(2)) == [.answer(LocateRequest(1), .at(c2, address(c2))), .drained(c1)])
    }

    @Test("while a promotion is in flight, another server reporting the meeting under an earlier epoch is released: the promotion's claim fences it")
    func staleReportDuringPromotion() {
        var placement = zone([c1, c2, c3])
        #expect(placement.locate(standup, request: LocateRequest(1), nowMs: 0) == [.open(standup, on: c1, standby: c2)])
        // collab-1 opens it under e1, but its link closes before its `hosting` arrives: no epoch is known.
        #expect(placement.lost(c1, reason: .linkClosed("link closed"), nowMs: 10) == [
            .disconnect(c1, reason: .linkClosed("link closed")),
            .promote(standup, on: c2, standby: c3),
        ])
        #expect(placement.register(c1, at: address(c1), holding: [HeldMeeting(meeting: standup, role: .host, epoch: Epoch(1))],
                                   nowMs: 20) == [.release(standup, on: c1)])
        #expect(placement.places[standup] == Placement.Place(host: c2, standby: c3, epoch: nil, movingSinceMs: 10))
        #expect(placement.hosting(standup, on: c2, epoch: Epoch(2)) == [
            .answer(LocateRequest(1), .at(c2, address(c2))),
            .follow(standup, on: c3, host: c2),
        ])
    }

    @Test("while a promotion is in flight, another server reporting the meeting is released even under an epoch newer than any the placement knows")
    func newerReportDuringPromotion() {
        let c4: NodeName = "collab-4"
        var placement = zone([c1, c2, c3])
        _ = placement.locate(standup, request: LocateRequest(1), nowMs: 0)
        _ = placement.hosting(standup, on: c1, epoch: Epoch(1))  // standby c2
        #expect(placement.lost(c1, reason: .linkClosed("link closed"), nowMs: 10) == [
            .disconnect(c1, reason: .linkClosed("link closed")),
            .promote(standup, on: c2, standby: c3),
        ])
        // collab-4 claimed e3 on an order this placement never gave (a previous manager's): collab-2
        // claims the next epoch when it promotes, which fences collab-4's copy all the same.
        #expect(placement.register(c4, at: address(c4), holding: [HeldMeeting(meeting: standup, role: .host, epoch: Epoch(3))],
                                   nowMs: 20) == [.release(standup, on: c4)])
        #expect(placement.hosting(standup, on: c2, epoch: Epoch(4)) == [.follow(standup, on: c3, host: c2)])
        #expect(placement.places[standup] == Placement.Place(host: c2, standby: c3, epoch: Epoch(4), movingSinceMs: nil))
    }

    /// collab-1 hosts standup under e1 and is being drained: collab-2, the only other server, is
    /// promoting it with no standby of its own.
    private func drainWithPromotionInFlight() -> Placement {
        var placement = zone([c1, c2], tuning: .init(heartbeatTimeoutMs: 60_000, moveTimeoutMs: 1_000))
        _ = placement.locate(standup, request: LocateRequest(1), nowMs: 0)
        _ = placement.hosting(standup, on: c1, epoch: Epoch(1))  // standby c2
        #expect(placement.drain(c1, nowMs: 10) == [.promote(standup, on: c2, standby: nil), .release(standup, on: c1)])
        return placement
    }

    @Test("a drain whose promotion's server is lost, leaving the meeting nowhere to go, is reported drained")
    func drainTargetLost() {
        var placement = drainWithPromotionInFlight()
        #expect(placement.lost(c2, reason: .linkClosed("link closed"), nowMs: 20) == [.disconnect(c2, reason: .linkClosed("link closed")), .drained(c1)])
        #expect(placement.places[standup] == nil)
    }

    @Test("a drain whose promotion times out with nowhere else to go is reported drained on that tick")
    func drainTargetStuck() {
        var placement = drainWithPromotionInFlight()
        #expect(placement.tick(nowMs: 1_010) == [])
        #expect(placement.tick(nowMs: 1_011) == [.release(standup, on: c2), .drained(c1)])
        #expect(placement.places[standup] == nil)
    }

    @Test("a drain whose promotion fails with nowhere else to go is reported drained")
    func drainTargetFails() {
        var placement = drainWithPromotionInFlight()
        #expect(placement.failedToHost(standup, on: c2, nowMs: 20) == [.drained(c1)])
        #expect(placement.places[standup] == nil)
    }

    @Test("a server already reported drained and asked to drain again is reported drained again, as a first drain would be: once no move is in flight")
    func drainAgain() {
        var placement = zone([c1, c2, c3])
        #expect(placement.drain(c1, nowMs: 10) == [.drained(c1)])
        #expect(placement.drain(c1, nowMs: 20) == [.drained(c1)], "it holds nothing and nothing moves: at once")
        #expect(placement.locate(review, request: LocateRequest(2), nowMs: 30) == [.open(review, on: c2, standby: c3)])
        #expect(placement.drain(c1, nowMs: 40) == [], "an open is in flight")
        let confirmed = placement.hosting(review, on: c2, epoch: Epoch(1))
        #expect(confirmed == [.answer(LocateRequest(2), .at(c2, address(c2))), .follow(review, on: c3, host: c2), .drained(c1)])
    }

    @Test("a drain ends with its report: once the drained server is gone, one that registers under its name takes work")
    func drainEndsWhenDrainedServerIsLost() {
        var placement = zone([c1, c2])
        #expect(placement.drain(c1, nowMs: 10) == [.drained(c1)])
        // The supervisor stops it; `parley ctl restart` starts it again.
        _ = placement.lost(c1, reason: .linkClosed("link closed"), nowMs: 20)
        _ = placement.register(c1, at: address(c1), holding: [], nowMs: 30)
        #expect(placement.servers[c1]?.draining == false)
        #expect(placement.locate(standup, request: LocateRequest(1), nowMs: 31) == [.open(standup, on: c1, standby: c2)])
    }

    @Test("a locate nobody can answer times out with unavailable")
    func locateTimeout() {
        var placement = Placement(tuning: .init(locateTimeoutMs: 500))
        #expect(placement.locate(standup, request: LocateRequest(1), nowMs: 0) == [])
        #expect(placement.tick(nowMs: 500) == [])
        #expect(placement.tick(nowMs: 501) == [.answer(LocateRequest(1), .unavailable(.noHostYet(standup)))])
    }

    @Test("an open that is never confirmed is moved elsewhere, and a late confirmation is refused")
    func stuckOpen() {
        var placement = zone([c1, c2], tuning: .init(heartbeatTimeoutMs: 60_000, moveTimeoutMs: 1_000))
        #expect(placement.locate(standup, request: LocateRequest(1), nowMs: 0) == [.open(standup, on: c1, standby: c2)])
        #expect(placement.tick(nowMs: 1_001) == [.release(standup, on: c1), .open(standup, on: c2, standby: nil)])
        #expect(placement.hosting(standup, on: c1, epoch: Epoch(1)) == [.release(standup, on: c1)])
        #expect(placement.hosting(standup, on: c2, epoch: Epoch(2)) == [
            .answer(LocateRequest(1), .at(c2, address(c2))),
            .follow(standup, on: c1, host: c2),
        ])
    }

    @Test("a server that registers again reporting a meeting it was sent to open has confirmed it: locates are answered and the move does not time out")
    func reregistrationConfirmsOpen() {
        var placement = zone([c1, c2], tuning: .init(heartbeatTimeoutMs: 60_000, moveTimeoutMs: 1_000))
        #expect(placement.locate(standup, request: LocateRequest(1), nowMs: 0) == [.open(standup, on: c1, standby: c2)])
        // collab-1 opened it under e1, but its `hosting` was lost with the link it replaces.
        #expect(placement.register(c1, at: address(c1), holding: [HeldMeeting(meeting: standup, role: .host, epoch: Epoch(1))],
                                   nowMs: 500) == [
            .answer(LocateRequest(1), .at(c1, address(c1))),
            .follow(standup, on: c2, host: c1),
        ])
        #expect(placement.places[standup] == Placement.Place(host: c1, standby: c2, epoch: Epoch(1), movingSinceMs: nil))
        #expect(placement.tick(nowMs: 1_001) == [], "past the open's move timeout, nothing is stuck")
    }

    @Test("a meeting located before any server exists is opened when one registers, timed from the registration, not from the locate")
    func openTimedFromRegistration() {
        // Default tuning: a locate waits up to 5 s, a move is stuck after 3 s, so a server that
        // registers 3.5 s after the locate is still in time for it.
        var placement = Placement()
        #expect(placement.locate(standup, request: LocateRequest(1), nowMs: 0) == [])
        #expect(placement.register(c1, at: address(c1), holding: [], nowMs: 3_500) == [.open(standup, on: c1, standby: nil)])
        #expect(placement.places[standup]?.movingSinceMs == 3_500)
        #expect(placement.tick(nowMs: 3_600) == [], "the open was sent 100 ms ago; it is not stuck")
        #expect(placement.hosting(standup, on: c1, epoch: Epoch(1)) == [.answer(LocateRequest(1), .at(c1, address(c1)))])
    }

    @Test("when every server is past the connection threshold the manager asks for one more, once")
    func scaleUp() {
        var placement = zone([c1, c2], tuning: .init(connectionsPerServer: 100, maxServers: 3))
        #expect(placement.heard(c1, load: ServerLoad(connections: 150), nowMs: 1) == [])
        #expect(placement.heard(c2, load: ServerLoad(connections: 101), nowMs: 2) == [.requestServer])
        #expect(placement.heard(c2, load: ServerLoad(connections: 120), nowMs: 3) == [], "one request at a time")
        _ = placement.register(c3, at: address(c3), holding: [], nowMs: 4)
        #expect(placement.heard(c3, load: ServerLoad(connections: 500), nowMs: 100_000) == [], "at the maximum")
    }
}

@Suite("Placement across machines")
struct MachinePlacementTests {
    /// Servers on machines: `machines[name]` is the machine of server `name`.
    private func cluster(_ machines: [(NodeName, String)]) -> Placement {
        var placement = Placement()
        for (name, machine) in machines {
            let at = ServerAddress(client: "http://\(name):1", zone: "http://\(name):2", machine: machine)
            _ = placement.register(name, at: at, holding: [], nowMs: 0)
        }
        return placement
    }

    @Test("a meeting's standby goes on another machine than its host, even when a server on the host's machine is idler")
    func standbyOnAnotherMachine() {
        var placement = cluster([(c1, "m1"), (c2, "m1"), (c3, "m2")])
        // collab-3 is the busiest; collab-2 (on m1 with the host) the idlest.
        _ = placement.heard(c3, load: ServerLoad(connections: 500), nowMs: 1)
        _ = placement.heard(c1, load: ServerLoad(connections: 10), nowMs: 1)
        #expect(placement.locate(standup, request: LocateRequest(1), nowMs: 2) == [.open(standup, on: c2, standby: c3)])
    }

    @Test("when the host's machine is lost, the standby on another machine takes over and gets a standby away from itself")
    func machineLoss() {
        let c4: NodeName = "collab-4"
        var placement = cluster([(c1, "m1"), (c2, "m2"), (c3, "m2"), (c4, "m3")])
        #expect(placement.locate(standup, request: LocateRequest(1), nowMs: 1) == [.open(standup, on: c1, standby: c2)])
        _ = placement.hosting(standup, on: c1, epoch: Epoch(1))
        // Machine m1 goes: collab-2 takes over; its new standby is on m3, not on m2 with it.
        let actions = placement.lost(c1, reason: .linkClosed("machine m1 lost"), nowMs: 100)
        #expect(actions.contains(.promote(standup, on: c2, standby: c4)), "\(actions)")
    }

    @Test("a new collab server goes to the machine that is up with the fewest collab servers, then the fewest connections")
    func machineWithMostRoom() {
        let c4: NodeName = "collab-4"
        var placement = cluster([(c1, "m2"), (c2, "m2"), (c3, "m3"), (c4, "m4")])
        _ = placement.heard(c3, load: ServerLoad(connections: 900), nowMs: 1)
        _ = placement.heard(c4, load: ServerLoad(connections: 100), nowMs: 1)
        // m1 runs no collab server at all: it has the most room.
        #expect(placement.machineForNewServer(up: ["m1", "m2", "m3", "m4"]) == "m1")
        // Without m1: m3 and m4 run one each, m4's carries fewer connections.
        #expect(placement.machineForNewServer(up: ["m2", "m3", "m4"]) == "m4")
        // Only machines that are up count, however idle the others look.
        #expect(placement.machineForNewServer(up: ["m2", "m3"]) == "m3")
        #expect(placement.machineForNewServer(up: []) == nil)
    }

    @Test("a standby that had to share its host's machine moves to a machine that joins, and only such standbys move")
    func standbyMovesToJoiningMachine() {
        let c4: NodeName = "collab-4"
        var placement = cluster([(c1, "m1"), (c2, "m1")])
        #expect(placement.locate(standup, request: LocateRequest(1), nowMs: 1) == [.open(standup, on: c1, standby: c2)])
        _ = placement.hosting(standup, on: c1, epoch: Epoch(1))
        #expect(placement.locate(review, request: LocateRequest(2), nowMs: 2) == [.open(review, on: c2, standby: c1)])
        _ = placement.hosting(review, on: c2, epoch: Epoch(1))
        // m2 joins with one server: both standbys share their host's machine; both move there.
        let joined = placement.register(c3, at: ServerAddress(client: "http://c3:1", zone: "http://c3:2", machine: "m2"),
                                        holding: [], nowMs: 3)
        #expect(joined == [
            .follow(review, on: c3, host: c2), .release(review, on: c1),
            .follow(standup, on: c3, host: c1), .release(standup, on: c2),
        ])
        #expect(placement.places[standup]?.standby == c3 && placement.places[review]?.standby == c3)
        // Another machine joining moves nothing: every standby is already away from its host.
        let another = placement.register(c4, at: ServerAddress(client: "http://c4:1", zone: "http://c4:2", machine: "m3"),
                                         holding: [], nowMs: 4)
        #expect(another == [])
    }

    @Test("with one machine only, standbys still go to another server of it")
    func oneMachine() {
        var placement = cluster([(c1, "m1"), (c2, "m1")])
        #expect(placement.locate(standup, request: LocateRequest(1), nowMs: 2) == [.open(standup, on: c1, standby: c2)])
    }
}
