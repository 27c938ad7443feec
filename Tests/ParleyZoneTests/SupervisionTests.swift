import ParleyZone
import Testing

/// The supervisor's rules, step by step: each line feeds one input and states the exact actions.
@Suite("Supervision: restart, hang detection, intensity and ordered stop")
struct SupervisionTests {
    static let paths = ZonePaths(data: "/srv/parley")
    static let manager = ZoneConfiguration.ProcessSpec(name: "manager-1", role: .manager)
    static let collab1 = ZoneConfiguration.ProcessSpec(name: "collab-1", role: .collab)
    static let collab2 = ZoneConfiguration.ProcessSpec(name: "collab-2", role: .collab)
    static let web = ZoneConfiguration.ProcessSpec(name: "web", role: .web)
    static let services = ZoneConfiguration.ProcessSpec(name: "services", role: .services)

    static func configuration(maxRestarts: Int = 10, collabs: [ZoneConfiguration.ProcessSpec] = [collab1]) -> ZoneConfiguration {
        var configuration = ZoneConfiguration()
        configuration.processes = [manager] + collabs + [web, services]
        configuration.restart.initialBackoffMs = 100
        configuration.restart.maxBackoffMs = 1_000
        configuration.restart.maxRestarts = maxRestarts
        configuration.restart.windowSeconds = 60
        configuration.restart.stableAfterSeconds = 30
        configuration.heartbeat.intervalMs = 200
        configuration.heartbeat.timeoutMs = 1_000
        return configuration
    }

    /// A zone whose processes all run and have registered at time 0; pids are 101, 102, ….
    static func runningZone(_ configuration: ZoneConfiguration) -> (Supervision, [NodeName: Int]) {
        var supervision = Supervision(configuration: configuration, paths: paths)
        var pids: [NodeName: Int] = [:]
        for case .spawn(let spec) in supervision.start(nowMs: 0) {
            let pid = 101 + pids.count
            pids[spec.name] = pid
            #expect(supervision.started(spec.name, pid: pid, atMs: 0) == [])
            #expect(throws: Never.self) { try supervision.registered(spec.name, pid: pid, atMs: 0) }
        }
        #expect(pids.count == configuration.processes.count)
        return (supervision, pids)
    }

    /// Every process in `pids` sends a heartbeat; stale pids are ignored by the machine.
    static func beat(_ supervision: inout Supervision, _ pids: [NodeName: Int], atMs: Int) {
        for (name, pid) in pids { supervision.heartbeat(name, pid: pid, load: nil, atMs: atMs) }
    }

    /// A tick in a zone whose other processes are healthy: each of `pids` beats first.
    static func tick(_ supervision: inout Supervision, healthy pids: [NodeName: Int], nowMs: Int) -> [SupervisionAction] {
        beat(&supervision, pids, atMs: nowMs)
        return supervision.tick(nowMs: nowMs)
    }

    @Test("the zone starts managers first and the web front last")
    func startOrder() {
        var supervision = Supervision(configuration: Self.configuration(), paths: Self.paths)
        #expect(supervision.start(nowMs: 0) == [.spawn(Self.manager), .spawn(Self.services), .spawn(Self.collab1), .spawn(Self.web)])
        #expect(supervision.status(nowMs: 0).map(\.state) == [.starting, .starting, .starting, .starting])
    }

    @Test("a crashed process is restarted after a backoff that doubles with each crash, up to the cap")
    func backoffGrows() {
        var (supervision, pids) = Self.runningZone(Self.configuration())
        var highest = Highest()
        var nowMs = 1_000
        var pid = 200
        for expectedDelayMs in [100, 200, 400, 800, 1_000, 1_000] {
            #expect(supervision.exited("collab-1", status: .signaled(9), atMs: nowMs, using: &highest)
                == [.restartLater("collab-1", delayMs: expectedDelayMs, after: .signaled(9))])
            #expect(supervision.status(nowMs: nowMs)[2].state == .waiting)
            #expect(supervision.status(nowMs: nowMs)[2].detail == "restarting in \(expectedDelayMs) ms")
            // Not a millisecond early.
            #expect(Self.tick(&supervision, healthy: pids, nowMs: nowMs + expectedDelayMs - 1) == [])
            nowMs += expectedDelayMs
            #expect(Self.tick(&supervision, healthy: pids, nowMs: nowMs) == [.spawn(Self.collab1)])
            pid += 1
            #expect(supervision.started("collab-1", pid: pid, atMs: nowMs) == [])
            nowMs += 1_000
        }
        let status = supervision.status(nowMs: nowMs)[2]
        #expect(status.restarts == 6)
        #expect(status.pid == pid)
        #expect(status.lastExit == .signaled(9))
    }

    @Test("jitter keeps every delay within the upper half of its doubled step, and the cap")
    func jitterBounds() {
        let restart = Self.configuration().restart
        var generator = XorShift(seed: 42)
        var seen: Set<Int> = []
        for step in 1...8 {
            let baseMs = min(100 << (step - 1), 1_000)
            for _ in 0..<200 {
                let delayMs = Supervision.backoffMs(step: step, restart: restart, using: &generator)
                #expect(delayMs >= baseMs - baseMs / 2 && delayMs <= baseMs, "step \(step): \(delayMs) ms")
                seen.insert(delayMs)
            }
        }
        #expect(seen.count > 50, "the jitter does not vary")
    }

    @Test("more than maxRestarts restarts within the window gives up, with a message that says what to do")
    func intensityLimit() throws {
        var (supervision, pids) = Self.runningZone(Self.configuration(maxRestarts: 3))
        var highest = Highest()
        var nowMs = 1_000
        for (index, delayMs) in [100, 200, 400].enumerated() {
            #expect(supervision.exited("collab-1", status: .exited(code: 1), atMs: nowMs, using: &highest)
                == [.restartLater("collab-1", delayMs: delayMs, after: .exited(code: 1))])
            nowMs += delayMs
            #expect(Self.tick(&supervision, healthy: pids, nowMs: nowMs) == [.spawn(Self.collab1)])
            #expect(supervision.started("collab-1", pid: 300 + index, atMs: nowMs) == [])
            nowMs += 500
        }
        let message = "collab-1 restarted 3 times in 60 s; giving up; see its log at /srv/parley/logs/collab-1.log "
            + "(last exit: killed by SIGKILL); once the cause is fixed, run 'parley ctl restart collab-1 --data /srv/parley'"
        #expect(supervision.exited("collab-1", status: .signaled(9), atMs: nowMs, using: &highest)
            == [.giveUp("collab-1", message: message)])
        let status = supervision.status(nowMs: nowMs)[2]
        #expect(status.state == .failed)
        #expect(status.detail == message)
        #expect(status.pid == nil)
        // Given up means given up: no spawn however long we wait.
        #expect(Self.tick(&supervision, healthy: pids, nowMs: nowMs + 3_600_000) == [])
        // Until the operator asks; then it starts at once, with a clean history.
        #expect(try supervision.restartRequested("collab-1", nowMs: nowMs + 3_600_000) == [.spawn(Self.collab1)])
        #expect(supervision.started("collab-1", pid: 400, atMs: nowMs + 3_600_000) == [])
        #expect(supervision.exited("collab-1", status: .signaled(9), atMs: nowMs + 3_600_100, using: &highest)
            == [.restartLater("collab-1", delayMs: 100, after: .signaled(9))])
    }

    @Test("crashes spread wider than the window are restarted forever")
    func slowCrashesNeverGiveUp() {
        var (supervision, pids) = Self.runningZone(Self.configuration(maxRestarts: 3))
        var highest = Highest()
        var nowMs = 0
        for pid in 500..<520 {
            nowMs += 25_000
            let actions = supervision.exited("collab-1", status: .exited(code: 1), atMs: nowMs, using: &highest)
            guard case .restartLater = actions.first, actions.count == 1 else {
                Issue.record("crash at \(nowMs) ms: \(actions)")
                return
            }
            nowMs += 1_000
            #expect(Self.tick(&supervision, healthy: pids, nowMs: nowMs) == [.spawn(Self.collab1)])
            _ = supervision.started("collab-1", pid: pid, atMs: nowMs)
        }
    }

    @Test("a process silent past heartbeat.timeoutMs is killed, then restarted like a crash")
    func hungProcess() throws {
        var (supervision, pids) = Self.runningZone(Self.configuration())
        var highest = Highest()
        let pid = pids["collab-1"]!
        for nowMs in stride(from: 200, through: 1_000, by: 200) {
            for (name, pid) in pids { supervision.heartbeat(name, pid: pid, load: nil, atMs: nowMs) }
            #expect(supervision.tick(nowMs: nowMs) == [])
        }
        // collab-1 goes silent (SIGSTOP); the others keep beating.
        for nowMs in stride(from: 1_200, through: 2_000, by: 200) {
            for (name, pid) in pids where name != "collab-1" { supervision.heartbeat(name, pid: pid, load: nil, atMs: nowMs) }
            #expect(supervision.tick(nowMs: nowMs) == [])
        }
        #expect(supervision.tick(nowMs: 2_001) == [.kill("collab-1", pid: pid, reason: .hung(silentMs: 1_001))])
        #expect(supervision.status(nowMs: 2_001)[2].state == .stopping)
        // Killed once; the exit is what moves it on. A heartbeat that was in flight changes nothing.
        Self.beat(&supervision, pids, atMs: 2_500)
        #expect(supervision.tick(nowMs: 2_500) == [])
        #expect(supervision.exited("collab-1", status: .signaled(9), atMs: 2_510, using: &highest)
            == [.restartLater("collab-1", delayMs: 100, after: .signaled(9))])
        #expect(supervision.tick(nowMs: 2_610) == [.spawn(Self.collab1)])
        #expect(supervision.started("collab-1", pid: 900, atMs: 2_610) == [])
        let status = supervision.status(nowMs: 2_700)[2]
        #expect(status.pid == 900)
        #expect(status.restarts == 1)
        #expect(status.state == .starting)
        try supervision.registered("collab-1", pid: 900, atMs: 2_800)
        #expect(supervision.status(nowMs: 2_800)[2].state == .running)
    }

    @Test("a process that never registers is killed when the startup grace ends")
    func neverRegisters() {
        var supervision = Supervision(configuration: Self.configuration(), paths: Self.paths,
                                      timing: .init(startupGraceMs: 10_000, stopGraceMs: 5_000))
        _ = supervision.start(nowMs: 0)
        for (index, spec) in [Self.manager, Self.services, Self.collab1, Self.web].enumerated() {
            _ = supervision.started(spec.name, pid: 10 + index, atMs: 0)
            if spec != Self.web { try? supervision.registered(spec.name, pid: 10 + index, atMs: 0) }
        }
        #expect(supervision.tick(nowMs: 10_000).allSatisfy { if case .kill("web", _, _) = $0 { false } else { true } })
        #expect(supervision.tick(nowMs: 10_001).contains(.kill("web", pid: 13, reason: .neverRegistered(afterMs: 10_001))))
    }

    @Test("running for stableAfterSeconds resets the backoff to its initial value")
    func stableUptimeResetsBackoff() {
        var (supervision, pids) = Self.runningZone(Self.configuration())
        var highest = Highest()
        var nowMs = 1_000
        for delayMs in [100, 200, 400] {
            #expect(supervision.exited("collab-1", status: .exited(code: 3), atMs: nowMs, using: &highest)
                == [.restartLater("collab-1", delayMs: delayMs, after: .exited(code: 3))])
            nowMs += delayMs
            #expect(Self.tick(&supervision, healthy: pids, nowMs: nowMs) == [.spawn(Self.collab1)])
            _ = supervision.started("collab-1", pid: nowMs, atMs: nowMs)
        }
        // 29.999 s is not stable yet…
        nowMs += 29_999
        #expect(supervision.exited("collab-1", status: .exited(code: 3), atMs: nowMs, using: &highest)
            == [.restartLater("collab-1", delayMs: 800, after: .exited(code: 3))])
        nowMs += 800
        #expect(Self.tick(&supervision, healthy: pids, nowMs: nowMs) == [.spawn(Self.collab1)])
        _ = supervision.started("collab-1", pid: 7, atMs: nowMs)
        // …30 s is.
        nowMs += 30_000
        #expect(supervision.exited("collab-1", status: .exited(code: 3), atMs: nowMs, using: &highest)
            == [.restartLater("collab-1", delayMs: 100, after: .exited(code: 3))])
    }

    @Test("the zone stops web, then collab, then services, then managers; SIGKILL after the grace period")
    func orderedStop() {
        var (supervision, pids) = Self.runningZone(Self.configuration(collabs: [Self.collab1, Self.collab2]))
        var highest = Highest()
        #expect(supervision.stopZone(nowMs: 1_000) == [.terminate("web", pid: pids["web"]!)])
        #expect(supervision.stopZone(nowMs: 1_001) == [], "a second SIGTERM starts nothing new")
        #expect(supervision.exited("web", status: .exited(code: 0), atMs: 1_100, using: &highest)
            == [.terminate("collab-1", pid: pids["collab-1"]!), .terminate("collab-2", pid: pids["collab-2"]!)])
        #expect(supervision.exited("collab-1", status: .exited(code: 0), atMs: 1_200, using: &highest) == [])
        // collab-2 ignores SIGTERM.
        Self.beat(&supervision, pids, atMs: 6_099)
        #expect(supervision.tick(nowMs: 6_099) == [])
        Self.beat(&supervision, pids, atMs: 6_100)
        #expect(supervision.tick(nowMs: 6_100) == [.kill("collab-2", pid: pids["collab-2"]!, reason: .ignoredStop(afterMs: 5_000))])
        Self.beat(&supervision, pids, atMs: 7_000)
        #expect(supervision.tick(nowMs: 7_000) == [])
        // A manager crashing meanwhile is not restarted: the zone is going down.
        #expect(supervision.exited("manager-1", status: .signaled(11), atMs: 6_150, using: &highest) == [])
        #expect(supervision.exited("collab-2", status: .signaled(9), atMs: 6_200, using: &highest)
            == [.terminate("services", pid: pids["services"]!)])
        #expect(supervision.exited("services", status: .exited(code: 0), atMs: 6_300, using: &highest) == [.zoneStopped])
        #expect(supervision.tick(nowMs: 60_000) == [])
        #expect(supervision.status(nowMs: 60_000).allSatisfy { $0.state == .stopped && $0.pid == nil })
    }

    @Test("a zone stop cancels pending restarts and waits for a process still being spawned")
    func stopDuringRestart() {
        var (supervision, pids) = Self.runningZone(Self.configuration(collabs: [Self.collab1, Self.collab2]))
        var highest = Highest()
        _ = supervision.exited("collab-1", status: .signaled(9), atMs: 100, using: &highest)
        _ = supervision.exited("manager-1", status: .signaled(9), atMs: 100, using: &highest)
        #expect(supervision.tick(nowMs: 200) == [.spawn(Self.manager), .spawn(Self.collab1)])
        #expect(supervision.started("manager-1", pid: 77, atMs: 210) == [])
        // collab-1 is being spawned (no pid yet) when SIGTERM comes.
        #expect(supervision.stopZone(nowMs: 250) == [.terminate("web", pid: pids["web"]!)])
        #expect(supervision.exited("web", status: .exited(code: 0), atMs: 300, using: &highest)
            == [.terminate("collab-2", pid: pids["collab-2"]!)])
        // It comes up after its turn has come: stopped at once.
        #expect(supervision.started("collab-1", pid: 88, atMs: 310) == [.terminate("collab-1", pid: 88)])
        #expect(supervision.exited("collab-2", status: .exited(code: 0), atMs: 320, using: &highest) == [])
        #expect(supervision.exited("collab-1", status: .exited(code: 0), atMs: 330, using: &highest)
            == [.terminate("services", pid: pids["services"]!)])
        #expect(supervision.exited("services", status: .exited(code: 0), atMs: 340, using: &highest)
            == [.terminate("manager-1", pid: 77)])
        #expect(supervision.exited("manager-1", status: .exited(code: 0), atMs: 350, using: &highest) == [.zoneStopped])
    }

    @Test("ctl stop keeps a process down; ctl restart brings it back at once, not counted as a crash")
    func operatorStopAndRestart() throws {
        var (supervision, pids) = Self.runningZone(Self.configuration(maxRestarts: 1))
        var highest = Highest()
        #expect(try supervision.stopRequested("collab-1", nowMs: 100) == [.terminate("collab-1", pid: pids["collab-1"]!)])
        #expect(supervision.exited("collab-1", status: .exited(code: 0), atMs: 200, using: &highest) == [])
        Self.beat(&supervision, pids, atMs: 100_000)
        #expect(supervision.tick(nowMs: 100_000) == [])
        #expect(supervision.status(nowMs: 100_000)[2].state == .stopped)
        #expect(try supervision.restartRequested("collab-1", nowMs: 100_000) == [.spawn(Self.collab1)])
        _ = supervision.started("collab-1", pid: 555, atMs: 100_010)
        // Restarting a running process: SIGTERM, then a spawn as soon as it has exited.
        #expect(try supervision.restartRequested("collab-1", nowMs: 100_100) == [.terminate("collab-1", pid: 555)])
        #expect(supervision.exited("collab-1", status: .exited(code: 0), atMs: 100_200, using: &highest) == [.spawn(Self.collab1)])
        _ = supervision.started("collab-1", pid: 556, atMs: 100_210)
        // Operator restarts used none of the intensity: a crash still gets its restart.
        #expect(supervision.exited("collab-1", status: .signaled(6), atMs: 100_300, using: &highest)
            == [.restartLater("collab-1", delayMs: 100, after: .signaled(6))])
        #expect(supervision.status(nowMs: 100_300)[2].restarts == 2)
        #expect(throws: SupervisionRefusal.unknownProcess("collab-9")) { try supervision.stopRequested("collab-9", nowMs: 0) }
        _ = supervision.stopZone(nowMs: 100_400)
        #expect(throws: SupervisionRefusal.zoneStopping) { try supervision.restartRequested("collab-1", nowMs: 100_500) }
    }

    @Test("in a cluster, a machine's supervisor names its added collab servers after the machine, so two machines never start the same name")
    func spawnOnRequestInCluster() throws {
        var configuration = ZoneConfiguration()
        configuration.processes = [.init(name: "manager-1", role: .manager), .init(name: "web", role: .web),
                                   .init(name: "services", role: .services), .init(name: "manager-2", role: .manager),
                                   .init(name: "collab-m2-1", role: .collab)]
        configuration.machines = [.init(name: "m1", address: "10.0.0.1", processes: ["manager-1", "web", "services"]),
                                  .init(name: "m2", address: "10.0.0.2", processes: ["manager-2", "collab-m2-1"])]
        configuration.scaling.maxCollabServers = 4
        var onM1 = Supervision(configuration: try configuration.share(of: "m1"), paths: Self.paths)
        var onM2 = Supervision(configuration: try configuration.share(of: "m2"), paths: Self.paths)
        _ = onM1.start(nowMs: 0)
        _ = onM2.start(nowMs: 0)
        #expect(try onM1.spawnRequested(role: .collab, nowMs: 10).0 == "collab-m1-1")
        // collab-m2-1 is configured on m2 already: the next free one there is 2.
        #expect(try onM2.spawnRequested(role: .collab, nowMs: 10).0 == "collab-m2-2")
        #expect(try onM1.spawnRequested(role: .collab, nowMs: 20).0 == "collab-m1-2")
    }

    @Test("the manager's request for a collab server names the next free collab-N, up to scaling.maxCollabServers")
    func spawnOnRequest() throws {
        var configuration = Self.configuration(collabs: [Self.collab1])
        configuration.scaling.maxCollabServers = 3
        var supervision = Supervision(configuration: configuration, paths: Self.paths)
        _ = supervision.start(nowMs: 0)
        let (second, actions) = try supervision.spawnRequested(role: .collab, nowMs: 10)
        #expect(second == "collab-2")
        #expect(actions == [.spawn(Self.collab2)])
        #expect(try supervision.spawnRequested(role: .collab, nowMs: 20).0 == "collab-3")
        #expect(throws: SupervisionRefusal.atCapacity(.collab, max: 3)) { try supervision.spawnRequested(role: .collab, nowMs: 30) }
        #expect(throws: SupervisionRefusal.notScalable(.manager)) { try supervision.spawnRequested(role: .manager, nowMs: 30) }
        // An added server is supervised like any other and shows in the status.
        #expect(supervision.status(nowMs: 40).map(\.name).suffix(2) == ["collab-2", "collab-3"])
        #expect(supervision.started("collab-3", pid: 33, atMs: 50) == [])
        #expect(supervision.pid(of: "collab-3") == 33)
    }

    @Test("registration is accepted only from the process's current pid")
    func registrationChecksPid() throws {
        var (supervision, pids) = Self.runningZone(Self.configuration())
        #expect(throws: SupervisionRefusal.notCurrentProcess("collab-1", pid: 999, current: pids["collab-1"]!)) {
            try supervision.registered("collab-1", pid: 999, atMs: 10)
        }
        #expect(throws: SupervisionRefusal.unknownProcess("intruder")) { try supervision.registered("intruder", pid: 1, atMs: 10) }
        // A heartbeat from a stale pid does not keep the current process alive.
        supervision.heartbeat("collab-1", pid: 999, load: nil, atMs: 900)
        #expect(supervision.tick(nowMs: 1_001).contains(.kill("collab-1", pid: pids["collab-1"]!, reason: .hung(silentMs: 1_001))))
    }

    @Test("a process that registers before its spawner reports the pid is running from then on")
    func earlyRegistration() throws {
        var supervision = Supervision(configuration: Self.configuration(), paths: Self.paths)
        _ = supervision.start(nowMs: 0)
        try supervision.registered("web", pid: 42, atMs: 5)
        #expect(supervision.started("web", pid: 42, atMs: 6) == [])
        #expect(supervision.pid(of: "web") == 42)
        #expect(supervision.status(nowMs: 10).last?.state == .running)
    }
}

/// Always the top of the range: jitter adds its whole half, so delays are exact.
struct Highest: RandomNumberGenerator {
    mutating func next() -> UInt64 { .max }
}

/// A seeded xorshift64 generator, for reproducible spreads.
struct XorShift: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }
    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
}
