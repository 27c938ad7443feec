import Foundation
import ParleyClient
import ParleyCore
@testable import ParleyNode
import ParleyTestSupport
import ParleyZone
import Subprocess
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

private let standup = MeetingID("standup")

@Suite("Zone outbox: a link's queue is bounded, and a full one cuts the link instead of dropping a message", .timeLimit(.minutes(1)))
struct ZoneOutboxTests {
    @Test("a full outbox cuts its link: the message that did not fit and every one queued are dropped, and nothing more is written")
    func fullCutsTheLink() async {
        let outbox = ZoneOutbox(capacity: 2)
        #expect(outbox.send(.startCollab) == .queued)
        #expect(outbox.send(.load(ServerLoad(connections: 1))) == .queued)
        #expect(outbox.send(.load(ServerLoad(connections: 2))) == .full)
        #expect(outbox.isCut)
        #expect(outbox.send(.load(ServerLoad(connections: 3))) == .closed)
        let written = Mutex<[ZoneMessage]>([])
        await outbox.write { message in written.withLock { $0.append(message) } }
        #expect(written.withLock { $0 } == [])
    }

    @Test("a finished outbox writes everything queued, in order, then ends; later messages are refused")
    func finishWritesTheRest() async {
        let outbox = ZoneOutbox(capacity: 2)
        outbox.send(.startCollab)
        outbox.send(.release(meeting: standup, term: 4))
        outbox.finish()
        #expect(outbox.send(.startCollab) == .closed)
        #expect(!outbox.isCut)
        let written = Mutex<[ZoneMessage]>([])
        await outbox.write { message in written.withLock { $0.append(message) } }
        #expect(written.withLock { $0 } == [.startCollab, .release(meeting: standup, term: 4)])
    }

    @Test("a cut ends a writer stuck in a write at once: a peer that never reads does not keep the link")
    func cutEndsAStuckWrite() async throws {
        let outbox = ZoneOutbox(capacity: 2)
        outbox.send(.startCollab)
        let (entered, enteredWrite) = AsyncStream<Void>.makeStream()
        async let writer: Void = outbox.write { _ in
            enteredWrite.yield()
            try await Task.sleep(for: .seconds(60))  // a peer that never reads
        }
        for await _ in entered { break }
        let cutAt = ContinuousClock.now
        outbox.cut()
        await writer
        #expect(ContinuousClock.now - cutAt < .seconds(5))
    }
}

@Suite("Collab order queue: bounded; an overflow discards what waits and refuses orders until the server registers again")
struct OrderQueueTests {
    @Test("on overflow every waiting order is skipped and later ones refused; after the agent registers again orders are carried out")
    func overflow() async throws {
        let queue = OrderQueue(capacity: 2)
        let open = ZoneMessage.open(meeting: standup, standby: nil, term: 3)
        let release = ZoneMessage.release(meeting: standup, term: 3)
        let follow = ZoneMessage.follow(meeting: standup, host: "collab-2",
                                        hostAddress: ServerAddress(client: "http://c2:1", zone: "http://c2:2"), term: 3)
        #expect(queue.add(open) == .queued)
        #expect(queue.add(release) == .queued)
        #expect(queue.add(follow) == .overflowed)
        #expect(queue.add(open) == .discarded, "refused until the agent registers again")
        var orders = queue.stream.makeAsyncIterator()
        let first = try #require(await orders.next())
        let second = try #require(await orders.next())
        #expect(first.message == open && !queue.isCurrent(first))
        #expect(second.message == release && !queue.isCurrent(second))
        queue.registering()
        #expect(queue.add(follow) == .queued)
        let third = try #require(await orders.next())
        #expect(third.message == follow && queue.isCurrent(third))
    }
}

/// A manager that stops leading while an operator waits for a drain answers the operator,
/// with real processes: before, the drain waited for the operator's own timeout.
@Suite("Failover: an operator's drain is answered when the manager steps down", MachineLoad.processes, .serialized, .timeLimit(.minutes(3)))
struct StepDownProcessTests {
    @Test("ctl drain fails at once with 'the manager stepped down' when the leading manager loses its lease mid-drain")
    func drainAnsweredOnStepDown() async throws {
        // Heartbeats may be missed for 10 s before the manager counts a server lost, so the
        // stopped standby still counts as alive: the drain waits on it, and does not finish.
        // The supervisor waits 20 s before killing a silent process, so the stopped manager
        // wakes up instead of being replaced.
        try await ZoneHarness.run(processes: ZoneHarness.fullZone, killAfterMs: 20_000,
                                  heartbeat: (intervalMs: ZoneHarness.heartbeatIntervalMs, timeoutMs: 10_000)) { zone in
            let web = try await zone.publicURL()
            let created = try await ParleyHTTP.createMeeting(server: web, title: "Drain during a step-down")
            _ = try await ParleyHTTP.locate(server: web, meeting: created.meeting.id)
            let (host, standby) = try await zone.hostAndStandby(of: created.meeting.id)
            let leader = try await zone.leadingManager()
            let manager = try await zone.running(leader.name)
            let follower = try await zone.running(standby)
            let leaderships = zone.leadershipsTaken()
            // Whatever happens, nothing stays stopped for the zone's own stop.
            defer {
                kill(pid_t(follower.pid), SIGCONT)
                kill(pid_t(manager.pid), SIGCONT)
            }
            // The drain promotes the standby, which never confirms: the drain waits.
            try zone.signal(follower.pid, SIGSTOP)
            async let drain = ZoneHarness.parley(["ctl", "drain", host.name.rawValue, "--timeout", "30", "--data", zone.data])
            try await zone.waitForNodeLog(leader.name, "drain requested")
            // The leader sleeps past its lease; the other manager takes the zone over.
            try zone.signal(manager.pid, SIGSTOP)
            try await zone.waitForNewLeader(after: leaderships)
            let wokeAt = ContinuousClock.now
            try zone.signal(manager.pid, SIGCONT)
            let result = try await drain
            #expect(ContinuousClock.now - wokeAt < .seconds(15), "the operator waited for its own timeout")
            #expect(result.status != .exited(0))
            #expect(result.error.contains("the manager stepped down"), "ctl drain said: \(result.output) \(result.error)")
            #expect(result.error.contains("run the drain again once a manager leads"))
            #expect(zone.nodeLog(leader.name).contains("stepping down"))
        }
    }
}

extension ZoneHarness {
    /// Waits until `name`'s own log contains `text`; returns the log.
    @discardableResult
    func waitForNodeLog(_ name: NodeName, _ text: String, timeout: Duration = .seconds(15)) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let log = nodeLog(name)
            if log.contains(text) { return log }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw HarnessFailure("\(name)'s log did not say '\(text)' within \(timeout)")
    }
}
