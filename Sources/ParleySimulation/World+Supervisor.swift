import ParleyZone

/// One supervisor per machine, running the real `Supervision` over the processes there:
/// collab-N runs on machine N, and manager-N too where there is one. It restarts what
/// crashed (with its backoff) and kills what stopped sending heartbeats, as
/// `ParleySupervisor` does. A frozen machine (a VM paused) freezes its supervisor with it:
/// then nothing kills its processes, and they wake with the machine.
extension World {
    struct Supervisor: SimulatedProcess {
        var up = true
        var paused = false
        var held: [Event] = []
        var rules: Supervision
    }

    /// How long a spawned process takes to start serving (and beat for the first time).
    static let startupMs: ClosedRange<Int64> = 50...600
    static let supervisorTickMs: Int64 = 100

    /// The supervisors of `options`' machines, with the timing of the real defaults (heartbeat
    /// every 200 ms, a process silent for 1 s is killed) and restarts that never give up
    /// within a run: a process given up on is the operator's to bring back, not a failover.
    static func supervisors(_ options: SimulationOptions) -> [Supervisor] {
        (0..<options.servers).map { machine in
            var configuration = ZoneConfiguration()
            configuration.processes = [ZoneConfiguration.ProcessSpec(name: name(machine), role: .collab)]
            if machine < options.managers {
                configuration.processes.append(ZoneConfiguration.ProcessSpec(name: managerName(machine), role: .manager))
            }
            configuration.heartbeat.intervalMs = Int(heartbeatMs)
            configuration.heartbeat.timeoutMs = 1_000
            configuration.restart.initialBackoffMs = 100
            configuration.restart.maxBackoffMs = 2_000
            configuration.restart.maxRestarts = 1_000
            let rules = Supervision(configuration: configuration, paths: ZonePaths(data: "/sim/m\(machine)"),
                                    timing: Supervision.Timing(startupGraceMs: 5_000, stopGraceMs: 1_000))
            return Supervisor(rules: rules)
        }
    }

    /// Every process starts at time 0 under its machine's supervisor.
    mutating func startSupervisors() {
        for machine in supervisors.indices {
            for case .spawn(let spec) in supervisors[machine].rules.start(nowMs: 0) {
                let pid = newPid()
                supervise(machine, supervisors[machine].rules.started(spec.name, pid: pid, atMs: 0))
                if let manager = Self.managerIndex(spec.name) { managers[manager].pid = pid } else { servers[machine].pid = pid }
            }
            schedule(.supervisorTick(machine), after: Int64(machine) * 13)
        }
    }

    mutating func newPid() -> Int {
        nextPid += 1
        return nextPid
    }

    mutating func supervisorTick(_ machine: Int) {
        if !supervisors[machine].paused { supervise(machine, supervisors[machine].rules.tick(nowMs: Int(now))) }
        schedule(.supervisorTick(machine), after: Self.supervisorTickMs)
    }

    /// A process tells its supervisor it is alive: it registers on its first beat.
    mutating func beat(_ name: NodeName, pid: Int, first: Bool, machine: Int) {
        // A frozen supervisor reads what its processes sent once it wakes.
        atSupervisor(machine, .supervisorBeat(machine: machine, name, pid: pid, first: first)) { world in
            world.handleBeat(name, pid: pid, first: first, machine: machine)
        }
    }

    mutating func handleBeat(_ name: NodeName, pid: Int, first: Bool, machine: Int) {
        if first {
            try? supervisors[machine].rules.registered(name, pid: pid, atMs: Int(now))
        } else {
            supervisors[machine].rules.heartbeat(name, pid: pid, load: nil, atMs: Int(now))
        }
    }

    /// A process of `machine` ended: its supervisor reaps it.
    mutating func exited(_ name: NodeName, pid: Int, machine: Int) {
        atSupervisor(machine, .processExited(machine: machine, name, pid: pid)) { world in
            let actions = world.supervisors[machine].rules.exited(name, status: .signaled(9), atMs: Int(world.now), using: &world.rng)
            world.supervise(machine, actions)
        }
    }

    mutating func supervise(_ machine: Int, _ actions: [SupervisionAction]) {
        for action in actions {
            switch action {
            case .spawn(let spec):
                let pid = newPid()
                trace("supervisor-\(machine)", "spawns \(spec.name) as pid \(pid)")
                supervise(machine, supervisors[machine].rules.started(spec.name, pid: pid, atMs: Int(now)))
                let startup = Int64.random(in: Self.startupMs, using: &rng)
                if let manager = Self.managerIndex(spec.name) {
                    schedule(.managerRestart(manager, pid: pid), after: startup)
                } else if let server = Self.index(spec.name) {
                    schedule(.restart(server, pid: pid), after: startup)
                }
            case .restartLater(let name, let delayMs, let exit):
                trace("supervisor-\(machine)", "\(name) \(exit); restarts in \(delayMs) ms")
            case .kill(let name, let pid, let reason):
                report.faults["killed by its supervisor", default: 0] += 1
                trace("supervisor-\(machine)", "kills \(name) (pid \(pid)): \(reason)")
                if let manager = Self.managerIndex(name), managers[manager].up, managers[manager].pid == pid {
                    crashManager(manager)
                } else if let server = Self.index(name), servers[server].up, servers[server].pid == pid {
                    crash(server)
                }
            case .giveUp(let name, let message):
                violation("supervisor-\(machine) gave up on \(name): \(message)")
            case .terminate, .zoneStopped:
                break
            }
        }
    }

    /// Runs `body` at `machine`'s supervisor now, or holds the event while it is frozen.
    mutating func atSupervisor(_ machine: Int, _ event: Event, _ body: (inout World) -> Void) {
        if supervisors[machine].paused { return supervisors[machine].held.append(event) }
        body(&self)
    }

    /// A machine freezes: its processes and its supervisor stop together, and wake together.
    mutating func freeze(_ machine: Int, for span: Int64) {
        report.faults["machine frozen", default: 0] += 1
        trace("m\(machine)", "machine freezes for \(span) ms")
        supervisors[machine].paused = true
        if servers[machine].up, !servers[machine].paused {
            servers[machine].paused = true
            schedule(.wake(machine), after: span)
        }
        if machine < managers.count, managers[machine].up, !managers[machine].paused {
            managers[machine].paused = true
            schedule(.managerWake(machine), after: span)
        }
        schedule(.supervisorWake(machine), after: span)
    }
}
