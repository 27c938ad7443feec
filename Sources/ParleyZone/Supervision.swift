/// The supervisor's rules, as a pure state machine: which process to spawn, when to restart
/// one that ended, when to kill one that hangs, when to give up, and in which order a zone
/// stops. The supervisor process (`ParleySupervisor`) feeds it what happened and performs the
/// actions it returns; nothing in here reads a clock, sends a signal or draws a random number.
///
/// - Time is an input: `nowMs`/`atMs` are milliseconds on one monotonic clock the caller
///   chooses; only differences matter.
/// - Backoff jitter comes from the generator the caller passes to ``exited(_:status:atMs:using:)``.
/// - Every process is permanent (OTP's term): whatever ends it, it is restarted, unless the
///   operator stopped it, the zone is stopping, or it has used up its restart intensity.
///
/// Invariants:
/// - a process has at most one live OS process: ``SupervisionAction/spawn(_:)`` is returned
///   for a name only while no earlier spawn of it can still be running;
/// - the restart history it keeps per process never holds more than `restart.maxRestarts` entries;
/// - once ``stopZone(nowMs:)`` is called nothing is spawned again, and ``SupervisionAction/zoneStopped``
///   is returned exactly once, after every process has exited.
public struct Supervision: Sendable {
    /// Timing the configuration file does not hold, because it belongs to the supervisor.
    public struct Timing: Sendable, Equatable {
        /// How long a freshly spawned process may take to register before it counts as hung.
        public var startupGraceMs: Int
        /// How long a process asked to stop (SIGTERM) may take before it is killed (SIGKILL).
        public var stopGraceMs: Int

        public init(startupGraceMs: Int = 10_000, stopGraceMs: Int = 5_000) {
            precondition(startupGraceMs > 0 && stopGraceMs > 0)
            self.startupGraceMs = startupGraceMs
            self.stopGraceMs = stopGraceMs
        }
    }

    /// Roles in the order a zone stops them: clients' front first, managers last, so the
    /// manager can still see servers leave and no client is sent to a server that is going away.
    public static let stopOrder: [NodeRole] = [.web, .collab, .services, .manager]

    public let configuration: ZoneConfiguration
    public let paths: ZonePaths
    public let timing: Timing
    private var order: [NodeName] = []
    private var processes: [NodeName: Process] = [:]
    /// The roles still to stop, current first; nil until ``stopZone(nowMs:)``.
    private var stopping: [NodeRole]?
    private var reportedStopped = false

    public init(configuration: ZoneConfiguration, paths: ZonePaths, timing: Timing = Timing()) {
        self.configuration = configuration
        self.paths = paths
        self.timing = timing
        // Started in reverse stop order: managers first, the web front last.
        for role in Self.stopOrder.reversed() {
            for spec in configuration.localProcesses where spec.role == role {
                order.append(spec.name)
                processes[spec.name] = Process(spec: spec)
            }
        }
    }

    /// Whether ``stopZone(nowMs:)`` has been called.
    public var isStopping: Bool { stopping != nil }

    // MARK: - Inputs from the process table

    /// Spawns every configured process, managers first.
    public mutating func start(nowMs: Int) -> [SupervisionAction] {
        guard stopping == nil else { return [] }
        var actions: [SupervisionAction] = []
        for name in order where processes[name]!.phase == .idle {
            actions.append(spawn(name))
        }
        return actions
    }

    /// The OS process for `name` exists now, with this pid.
    public mutating func started(_ name: NodeName, pid: Int, atMs: Int) -> [SupervisionAction] {
        guard var process = processes[name] else { return [] }
        guard case .spawning(let stopWhenStarted) = process.phase else { return [] }
        let running = Running(pid: pid, startedAtMs: atMs)
        process.phase = .running(running)
        processes[name] = process
        if stopWhenStarted || mustStopNow(process.spec.role) {
            return terminate(name, running, nowMs: atMs, then: .stay)
        }
        return []
    }

    /// Spawning `name` failed before any process existed (missing executable, no memory…).
    /// Counts as a failure, like an exit.
    public mutating func spawnFailed<G: RandomNumberGenerator>(
        _ name: NodeName, reason: String, atMs: Int, using generator: inout G
    ) -> [SupervisionAction] {
        guard let process = processes[name], case .spawning = process.phase else { return [] }
        return failed(name, exit: .spawnError(reason), uptimeMs: 0, atMs: atMs, using: &generator)
    }

    /// The OS process for `name` ended and has been reaped.
    public mutating func exited<G: RandomNumberGenerator>(
        _ name: NodeName, status: ProcessExit, atMs: Int, using generator: inout G
    ) -> [SupervisionAction] {
        guard var process = processes[name] else { return [] }
        switch process.phase {
        case .running(let running):
            return failed(name, exit: status, uptimeMs: atMs - running.startedAtMs, atMs: atMs, using: &generator)
        case .stopping(let running, _, let then, _):
            switch then {
            case .recover:
                return failed(name, exit: status, uptimeMs: atMs - running.startedAtMs, atMs: atMs, using: &generator)
            case .restartNow where stopping == nil:
                process.lastExit = status
                process.backoffStep = 0
                processes[name] = process
                return [spawn(name)]
            case .stay, .restartNow:
                process.lastExit = status
                process.phase = .stopped
                processes[name] = process
                return advanceZoneStop(nowMs: atMs)
            }
        case .idle, .waiting, .spawning, .stopped, .gaveUp:
            // No process of ours was running under this name: a stale report.
            return []
        }
    }

    /// The process registered on the control socket. Registration is its first heartbeat.
    public mutating func registered(_ name: NodeName, pid: Int, atMs: Int) throws(SupervisionRefusal) {
        guard var process = processes[name] else { throw .unknownProcess(name) }
        switch process.phase {
        case .spawning(let stopWhenStarted) where !stopWhenStarted:
            // It connected before the spawner reported its pid: the pid it gives is the one
            // `started` will bring, which is then ignored.
            var running = Running(pid: pid, startedAtMs: atMs)
            running.lastHeartbeatMs = atMs
            process.phase = .running(running)
        case .running(var running) where running.pid == pid:
            running.lastHeartbeatMs = atMs
            process.phase = .running(running)
        case .running(let running), .stopping(let running, _, _, _):
            guard running.pid == pid else { throw .notCurrentProcess(name, pid: pid, current: running.pid) }
            return
        case .idle, .waiting, .spawning, .stopped, .gaveUp:
            throw .notRunning(name)
        }
        processes[name] = process
    }

    /// A heartbeat from `name`'s process `pid`, with the load it chose to report.
    public mutating func heartbeat(_ name: NodeName, pid: Int, load: JSONValue?, atMs: Int) {
        guard var process = processes[name], case .running(var running) = process.phase, running.pid == pid else {
            return
        }
        running.lastHeartbeatMs = atMs
        process.phase = .running(running)
        process.load = load
        processes[name] = process
    }

    /// Time passed: spawns whose backoff is over, kills hung processes and processes that
    /// ignored SIGTERM.
    public mutating func tick(nowMs: Int) -> [SupervisionAction] {
        var actions: [SupervisionAction] = []
        for name in order {
            let process = processes[name]!
            switch process.phase {
            case .waiting(let untilMs) where nowMs >= untilMs && stopping == nil:
                actions.append(spawn(name))
            case .running(let running):
                if let reason = hang(of: running, nowMs: nowMs) {
                    actions += terminate(name, running, nowMs: nowMs, then: .recover, kill: reason)
                }
            case .stopping(let running, let sinceMs, let then, killSent: false) where nowMs - sinceMs >= timing.stopGraceMs:
                processes[name]!.phase = .stopping(running, sinceMs: sinceMs, then: then, killSent: true)
                actions.append(.kill(name, pid: running.pid, reason: .ignoredStop(afterMs: nowMs - sinceMs)))
            default:
                break
            }
        }
        return actions
    }

    // MARK: - Operator and zone commands

    /// `parley ctl stop NAME`: stop it and do not restart it.
    public mutating func stopRequested(_ name: NodeName, nowMs: Int) throws(SupervisionRefusal) -> [SupervisionAction] {
        guard var process = processes[name] else { throw .unknownProcess(name) }
        guard stopping == nil else { throw .zoneStopping }
        switch process.phase {
        case .running(let running):
            return terminate(name, running, nowMs: nowMs, then: .stay)
        case .stopping(let running, let sinceMs, _, let killSent):
            process.phase = .stopping(running, sinceMs: sinceMs, then: .stay, killSent: killSent)
        case .spawning:
            process.phase = .spawning(stopWhenStarted: true)
        case .idle, .waiting, .gaveUp, .stopped:
            process.phase = .stopped
        }
        processes[name] = process
        return []
    }

    /// `parley ctl restart NAME`: stop it if it runs and start it again at once. A stopped or
    /// given-up process starts afresh, with its restart history cleared.
    public mutating func restartRequested(_ name: NodeName, nowMs: Int) throws(SupervisionRefusal) -> [SupervisionAction] {
        guard var process = processes[name] else { throw .unknownProcess(name) }
        guard stopping == nil else { throw .zoneStopping }
        process.restartTimesMs = []
        process.backoffStep = 0
        switch process.phase {
        case .running(let running):
            processes[name] = process
            return terminate(name, running, nowMs: nowMs, then: .restartNow)
        case .stopping(let running, let sinceMs, _, let killSent):
            process.phase = .stopping(running, sinceMs: sinceMs, then: .restartNow, killSent: killSent)
            processes[name] = process
            return []
        case .spawning:
            process.phase = .spawning(stopWhenStarted: false)
            processes[name] = process
            return []
        case .idle, .waiting, .gaveUp, .stopped:
            processes[name] = process
            return [spawn(name)]
        }
    }

    /// A process (the manager) asks for one more process of `role`. Only collaboration
    /// servers scale: the new one is named `collab-N` (`collab-MACHINE-N` in a cluster) with
    /// the smallest free N, and this supervisor runs at most `scaling.maxCollabServers` of
    /// them (the manager counts the whole zone's).
    public mutating func spawnRequested(role: NodeRole, nowMs: Int) throws(SupervisionRefusal) -> (NodeName, [SupervisionAction]) {
        guard stopping == nil else { throw .zoneStopping }
        guard role == .collab else { throw .notScalable(role) }
        let collabs = order.filter { processes[$0]!.spec.role == .collab && processes[$0]!.phase != .stopped }
        guard collabs.count < configuration.scaling.maxCollabServers else {
            throw .atCapacity(role, max: configuration.scaling.maxCollabServers)
        }
        // In a cluster every machine's supervisor names its own: the machine in the name keeps
        // two machines from starting the same one.
        let prefix = configuration.machine.map { "collab-\($0)-" } ?? "collab-"
        var number = 1
        while processes[NodeName("\(prefix)\(number)")] != nil || configuration.process(named: NodeName("\(prefix)\(number)")) != nil {
            number += 1
        }
        let name = NodeName("\(prefix)\(number)")
        order.append(name)
        processes[name] = Process(spec: ZoneConfiguration.ProcessSpec(name: name, role: .collab))
        return (name, [spawn(name)])
    }

    /// SIGTERM to the supervisor: stop every process, role by role in ``stopOrder``. Each role
    /// is asked to stop (SIGTERM) only once every process of the roles before it has exited.
    public mutating func stopZone(nowMs: Int) -> [SupervisionAction] {
        guard stopping == nil else { return [] }
        stopping = Self.stopOrder
        for name in order {
            switch processes[name]!.phase {
            case .idle, .waiting: processes[name]!.phase = .stopped
            default: break
            }
        }
        return advanceZoneStop(nowMs: nowMs)
    }

    // MARK: - Status

    /// What `parley ctl status` shows, in start order.
    public func status(nowMs: Int) -> [ProcessStatus] {
        order.map { name in
            let process = processes[name]!
            var status = ProcessStatus(name: name, role: process.spec.role, state: .stopped,
                                       restarts: process.restarts, lastExit: process.lastExit, load: process.load)
            switch process.phase {
            case .idle, .spawning:
                status.state = .starting
            case .waiting(let untilMs):
                status.state = .waiting
                status.detail = "restarting in \(max(0, untilMs - nowMs)) ms"
            case .running(let running):
                status.pid = running.pid
                status.uptimeMs = nowMs - running.startedAtMs
                status.state = running.lastHeartbeatMs == nil ? .starting : .running
            case .stopping(let running, _, _, _):
                status.pid = running.pid
                status.uptimeMs = nowMs - running.startedAtMs
                status.state = .stopping
            case .stopped:
                status.state = .stopped
            case .gaveUp(let message):
                status.state = .failed
                status.detail = message
            }
            // A process that is not running hosts nothing and serves nobody: its last
            // report is history, not state.
            if status.pid == nil { status.load = nil }
            return status
        }
    }

    /// The pid of `name`'s running process, if one runs.
    public func pid(of name: NodeName) -> Int? {
        switch processes[name]?.phase {
        case .running(let running), .stopping(let running, _, _, _): running.pid
        default: nil
        }
    }

    /// The configured or added process called `name`.
    public func spec(of name: NodeName) -> ZoneConfiguration.ProcessSpec? { processes[name]?.spec }

    /// The delay before restart number `step` (1-based) of a run of failures: the initial
    /// backoff doubled per step, capped at the maximum, then jittered into its upper half so
    /// processes that crashed together do not all come back at the same instant.
    public static func backoffMs<G: RandomNumberGenerator>(step: Int, restart: ZoneConfiguration.Restart,
                                                            using generator: inout G) -> Int {
        precondition(step >= 1)
        var baseMs = restart.initialBackoffMs
        for _ in 1..<min(step, 40) where baseMs < restart.maxBackoffMs { baseMs *= 2 }
        baseMs = min(baseMs, restart.maxBackoffMs)
        let halfMs = baseMs / 2
        return baseMs - halfMs + Int.random(in: 0...halfMs, using: &generator)
    }

    // MARK: - Private

    private struct Running: Equatable, Sendable {
        var pid: Int
        var startedAtMs: Int
        /// nil until the process registers.
        var lastHeartbeatMs: Int?
    }

    /// What happens once a process that was asked to stop has exited.
    private enum AfterStop: Equatable, Sendable {
        case stay
        case restartNow
        /// It was killed as hung: its exit is a failure like any crash.
        case recover
    }

    private enum Phase: Equatable, Sendable {
        case idle
        case waiting(untilMs: Int)
        case spawning(stopWhenStarted: Bool)
        case running(Running)
        case stopping(Running, sinceMs: Int, then: AfterStop, killSent: Bool)
        case stopped
        case gaveUp(message: String)
    }

    private struct Process: Sendable {
        let spec: ZoneConfiguration.ProcessSpec
        var phase: Phase = .idle
        /// Failures since the process last ran for `stableAfterSeconds`; picks the backoff.
        var backoffStep = 0
        /// When each automatic restart within the window was decided.
        var restartTimesMs: [Int] = []
        var restarts = 0
        var spawnedBefore = false
        var lastExit: ProcessExit?
        var load: JSONValue?
        init(spec: ZoneConfiguration.ProcessSpec) { self.spec = spec }
    }

    private mutating func spawn(_ name: NodeName) -> SupervisionAction {
        var process = processes[name]!
        if process.spawnedBefore { process.restarts += 1 }
        process.spawnedBefore = true
        process.phase = .spawning(stopWhenStarted: false)
        process.load = nil
        processes[name] = process
        return .spawn(process.spec)
    }

    private mutating func terminate(_ name: NodeName, _ running: Running, nowMs: Int, then: AfterStop,
                                    kill reason: KillReason? = nil) -> [SupervisionAction] {
        processes[name]!.phase = .stopping(running, sinceMs: nowMs, then: then, killSent: reason != nil)
        if let reason { return [.kill(name, pid: running.pid, reason: reason)] }
        return [.terminate(name, pid: running.pid)]
    }

    private func hang(of running: Running, nowMs: Int) -> KillReason? {
        if let lastMs = running.lastHeartbeatMs {
            let silentMs = nowMs - lastMs
            return silentMs > configuration.heartbeat.killAfter ? .hung(silentMs: silentMs) : nil
        }
        let sinceStartMs = nowMs - running.startedAtMs
        return sinceStartMs > timing.startupGraceMs ? .neverRegistered(afterMs: sinceStartMs) : nil
    }

    /// An unplanned end: restart after a backoff, or give up once the intensity is used up.
    private mutating func failed<G: RandomNumberGenerator>(
        _ name: NodeName, exit: ProcessExit, uptimeMs: Int, atMs: Int, using generator: inout G
    ) -> [SupervisionAction] {
        var process = processes[name]!
        process.lastExit = exit
        if stopping != nil {
            process.phase = .stopped
            processes[name] = process
            return advanceZoneStop(nowMs: atMs)
        }
        defer { processes[name] = process }
        let restart = configuration.restart
        if uptimeMs >= restart.stableAfterSeconds * 1_000 { process.backoffStep = 0 }
        process.restartTimesMs.removeAll { $0 <= atMs - restart.windowSeconds * 1_000 }
        if process.restartTimesMs.count >= restart.maxRestarts {
            let message = "\(name) restarted \(process.restartTimesMs.count) times in \(restart.windowSeconds) s; giving up; "
                + "see its log at \(paths.log(of: name)) (last exit: \(exit)); "
                + "once the cause is fixed, run 'parley ctl restart \(name) --data \(paths.data)'"
            process.phase = .gaveUp(message: message)
            return [.giveUp(name, message: message)]
        }
        process.restartTimesMs.append(atMs)
        process.backoffStep += 1
        let delayMs = Self.backoffMs(step: process.backoffStep, restart: restart, using: &generator)
        process.phase = .waiting(untilMs: atMs + delayMs)
        assert(process.restartTimesMs.count <= restart.maxRestarts)
        return [.restartLater(name, delayMs: delayMs, after: exit)]
    }

    /// Whether a process of `role` that just started must be stopped at once: the zone is
    /// stopping and its role's turn has come (or passed).
    private func mustStopNow(_ role: NodeRole) -> Bool {
        guard let stopping else { return false }
        return !stopping.dropFirst().contains(role)
    }

    /// Moves the ordered stop on as far as it can go without waiting for an exit.
    private mutating func advanceZoneStop(nowMs: Int) -> [SupervisionAction] {
        guard var remaining = stopping else { return [] }
        var actions: [SupervisionAction] = []
        while let role = remaining.first {
            var waiting = false
            for name in order where processes[name]!.spec.role == role {
                switch processes[name]!.phase {
                case .running(let running):
                    actions += terminate(name, running, nowMs: nowMs, then: .stay)
                    waiting = true
                case .stopping(let running, let sinceMs, _, let killSent):
                    processes[name]!.phase = .stopping(running, sinceMs: sinceMs, then: .stay, killSent: killSent)
                    waiting = true
                case .spawning:
                    processes[name]!.phase = .spawning(stopWhenStarted: true)
                    waiting = true
                case .idle, .waiting:
                    processes[name]!.phase = .stopped
                case .stopped, .gaveUp:
                    break
                }
            }
            if waiting { break }
            remaining.removeFirst()
        }
        stopping = remaining
        if remaining.isEmpty && !reportedStopped {
            reportedStopped = true
            actions.append(.zoneStopped)
        }
        return actions
    }
}

/// What the supervisor must do. Each action says why, so the supervisor can log it.
public enum SupervisionAction: Equatable, Sendable {
    /// Spawn the process now, then report ``Supervision/started(_:pid:atMs:)`` or
    /// ``Supervision/spawnFailed(_:reason:atMs:using:)``.
    case spawn(ZoneConfiguration.ProcessSpec)
    /// The process ended unplanned; it is spawned again by the first tick `delayMs` from now.
    case restartLater(NodeName, delayMs: Int, after: ProcessExit)
    /// Ask the process to stop: SIGTERM, and `stop` on its control link. It is killed if it
    /// is still there after the stop grace period.
    case terminate(NodeName, pid: Int)
    /// SIGKILL, for the reason given.
    case kill(NodeName, pid: Int, reason: KillReason)
    /// The process is not restarted any more; the message is for the operator, verbatim.
    case giveUp(NodeName, message: String)
    /// After ``Supervision/stopZone(nowMs:)``: every process has exited.
    case zoneStopped
}

public enum KillReason: Equatable, Sendable, CustomStringConvertible {
    /// It registered, then sent no heartbeat for longer than `heartbeat.timeoutMs`.
    case hung(silentMs: Int)
    /// It never registered within the startup grace period.
    case neverRegistered(afterMs: Int)
    /// It was asked to stop and was still running after the stop grace period.
    case ignoredStop(afterMs: Int)

    public var description: String {
        switch self {
        case .hung(let silentMs): "hung: no heartbeat for \(silentMs) ms"
        case .neverRegistered(let afterMs): "hung: did not register within \(afterMs) ms of starting"
        case .ignoredStop(let afterMs): "still running \(afterMs) ms after SIGTERM"
        }
    }
}

/// Why the supervisor refused a request; `code` is stable and goes on the wire.
public enum SupervisionRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    case unknownProcess(NodeName)
    case zoneStopping
    case notScalable(NodeRole)
    case atCapacity(NodeRole, max: Int)
    case notCurrentProcess(NodeName, pid: Int, current: Int)
    case notRunning(NodeName)

    public var code: String {
        switch self {
        case .unknownProcess: "unknown_process"
        case .zoneStopping: "zone_stopping"
        case .notScalable: "not_scalable"
        case .atCapacity: "at_capacity"
        case .notCurrentProcess: "not_current_process"
        case .notRunning: "not_running"
        }
    }

    public var description: String {
        switch self {
        case .unknownProcess(let name): "the zone has no process named '\(name)'"
        case .zoneStopping: "the zone is stopping"
        case .notScalable(let role): "only collab servers can be added, not \(role.rawValue)"
        case .atCapacity(let role, let max):
            "the zone already runs \(max) \(role.rawValue) servers, the most scaling.maxCollabServers allows"
        case .notCurrentProcess(let name, let pid, let current):
            "pid \(pid) is not \(name)'s current process (pid \(current))"
        case .notRunning(let name): "\(name) is not running"
        }
    }
}

/// How an OS process ended.
public enum ProcessExit: Equatable, Sendable, Codable, CustomStringConvertible {
    case exited(code: Int32)
    case signaled(Int32)
    /// There never was a process: spawning failed.
    case spawnError(String)

    public var description: String {
        switch self {
        case .exited(let code): "exited with status \(code)"
        case .signaled(let signal): "killed by \(Self.signalName(signal))"
        case .spawnError(let reason): "could not be started: \(reason)"
        }
    }

    /// The conventional name of the signals a supervisor meets; others by number.
    public static func signalName(_ signal: Int32) -> String {
        let names: [Int32: String] = [1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT",
                                      7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 11: "SIGSEGV", 13: "SIGPIPE", 15: "SIGTERM"]
        return names[signal] ?? "signal \(signal)"
    }

    private enum CodingKeys: String, CodingKey { case code, signal, spawnError }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        if let code = try container.decodeIfPresent(Int32.self, forKey: .code) {
            self = .exited(code: code)
        } else if let signal = try container.decodeIfPresent(Int32.self, forKey: .signal) {
            self = .signaled(signal)
        } else {
            self = .spawnError(try container.decode(String.self, forKey: .spawnError))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .exited(let code): try container.encode(code, forKey: .code)
        case .signaled(let signal): try container.encode(signal, forKey: .signal)
        case .spawnError(let reason): try container.encode(reason, forKey: .spawnError)
        }
    }
}
