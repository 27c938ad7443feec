import FoundationEssentials
import Logging
import NIOCore
import NIOPosix
import ParleyTelemetry
import ParleyZone
import ServiceLifecycle
import Subprocess
import SystemPackage

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The zone's process manager: spawns every configured logical server as
/// `parley node --name NAME --role ROLE --data DIR --config DIR/zone/zone.json`, watches them
/// through their exits and their heartbeats on the control socket, and does what
/// ``Supervision`` decides: restart, kill a hung one, give up, stop the zone in order.
///
/// Graceful shutdown (SIGTERM or SIGINT through the service group) stops the zone role by
/// role and returns once every process has exited. Cancellation is the hard stop: every
/// child gets SIGTERM, then SIGKILL after the stop grace period.
///
/// Every child process is owned by a task of ``run()``'s task group, and so is every
/// control connection; nothing outlives `run()`.
public actor Supervisor: Service {
    public struct Options: Sendable {
        public var timing: Supervision.Timing
        /// How often time is fed to the state machine: the precision of hang detection and backoff.
        public var tickMs: Int

        public init(timing: Supervision.Timing = .init(), tickMs: Int = 50) {
            precondition(tickMs > 0)
            self.timing = timing
            self.tickMs = tickMs
        }
    }

    public nonisolated let configuration: ZoneConfiguration
    public nonisolated let paths: ZonePaths
    private nonisolated let executable: String
    private nonisolated let options: Options
    private nonisolated let logger: Logger
    private var supervision: Supervision
    private var generator = SystemRandomNumberGenerator()
    private let origin = ContinuousClock.now
    private let spawns: AsyncStream<ZoneConfiguration.ProcessSpec>
    private let spawner: AsyncStream<ZoneConfiguration.ProcessSpec>.Continuation
    /// Why each process was last sent SIGKILL, until its exit is reported: the exit's log
    /// line says it.
    private var killReasons: [NodeName: KillReason] = [:]
    private var connections: [Int: Connection] = [:]
    private var nextConnectionID = 0
    public nonisolated let metrics: ProcessMetrics
    /// Why the exit being handled came about, for the restart it leads to (metrics).
    private var exitReason = "exited"

    /// - Parameters:
    ///   - executable: the `parley` binary to run the processes with.
    public init(configuration: ZoneConfiguration, dataDirectory: String, executable: String,
                options: Options = Options(), metrics: ProcessMetrics = .off, logger: Logger) {
        self.metrics = metrics
        precondition(configuration.problems(testFaultsEnabled: true).isEmpty, "validate the configuration before starting a zone")
        self.configuration = configuration
        self.paths = ZonePaths(data: dataDirectory)
        self.executable = executable
        self.options = options
        self.logger = logger
        supervision = Supervision(configuration: configuration, paths: paths, timing: options.timing)
        (spawns, spawner) = AsyncStream.makeStream(bufferingPolicy: .unbounded)
    }

    public func run() async throws {
        if let faults = configuration.testFaults {
            logger.critical("TEST FAULT INJECTION IS ON: this zone's processes crash on purpose; never run it for real users",
                            metadata: ["test_faults": "\(faults)"])
        }
        try ZoneFiles.prepare(paths: paths, configuration: configuration)
        let server = try await ControlServer.bind(paths: paths)
        logger.info("zone starting", metadata: [
            "data": "\(paths.data)", "processes": "\(configuration.processes.count)",
            "control": "\(paths.controlSocket)",
        ])
        perform(supervision.start(nowMs: nowMs()))
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                do {
                    try await ControlServer.serve(server, supervisor: self, logger: self.logger)
                } catch {
                    // Cancelled once the zone has stopped; anything else is a real failure.
                    if !Task.isCancelled { throw error }
                }
            }
            group.addTask { await self.tickLoop() }
            group.addTask { await self.rotateLogs() }
            group.addTask {
                do {
                    try await gracefulShutdown()
                    await self.stopZone()
                } catch {
                    // Cancelled: the process tasks tear their children down themselves.
                }
            }
            // Ends when the zone has stopped, or when this task is cancelled.
            for await spec in spawns {
                group.addTask { await self.runProcess(spec) }
            }
            group.cancelAll()
        }
        try? FileManager.default.removeItem(atPath: paths.controlSocket)
        logger.info("zone stopped", metadata: ["data": "\(paths.data)"])
    }

    // MARK: - Inputs

    private func nowMs() -> Int {
        let elapsed = origin.duration(to: .now).components
        return Int(elapsed.seconds) * 1_000 + Int(elapsed.attoseconds / 1_000_000_000_000_000)
    }

    private func tickLoop() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(options.tickMs))
            perform(supervision.tick(nowMs: nowMs()))
        }
    }

    /// Every second, off the actor (a copy of a large file takes a while): each process's log
    /// file rotated once it is too large (``LogRotation``).
    private nonisolated func rotateLogs() async {
        let settings = configuration.logs
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            for name in await names() {
                do {
                    if try LogRotation.rotateIfLarger(paths.log(of: name), maxBytes: settings.maxFileBytes, keep: settings.keepFiles) {
                        logger.info("log of \(name) rotated", metadata: ["process": "\(name)", "keep": "\(settings.keepFiles)"])
                    }
                } catch {
                    logger.warning("cannot rotate the log of \(name): \(error)", metadata: ["process": "\(name)"])
                }
            }
        }
    }

    private func names() -> [NodeName] { supervision.status(nowMs: nowMs()).map(\.name) }

    private func stopZone() {
        logger.notice("stopping the zone: web, then collab, then services, then managers")
        perform(supervision.stopZone(nowMs: nowMs()))
    }

    private func started(_ name: NodeName, pid: Int) {
        logger.info("\(name) spawned", metadata: ["process": "\(name)", "pid": "\(pid)"])
        perform(supervision.started(name, pid: pid, atMs: nowMs()))
    }

    private func exited(_ name: NodeName, status: ProcessExit) {
        let before = supervision.status(nowMs: nowMs()).first { $0.name == name }
        let metadata: Logger.Metadata = [
            "process": "\(name)", "pid": "\(before?.pid.map(String.init) ?? "-")",
            "uptime_ms": "\(before?.uptimeMs.map(String.init) ?? "-")",
        ]
        exitReason = Self.reason(status)
        if let reason = killReasons.removeValue(forKey: name) {
            exitReason = if case .ignoredStop = reason { "ignored_stop" } else { "hung" }
            logger.warning("\(name) \(status) (\(reason))", metadata: metadata)
        } else if before?.state == .stopping {
            logger.info("\(name) stopped: \(status)", metadata: metadata)
        } else {
            logger.warning("\(name) \(status)", metadata: metadata)
        }
        perform(supervision.exited(name, status: status, atMs: nowMs(), using: &generator))
    }

    private func spawnFailed(_ name: NodeName, error: any Error) {
        logger.error("\(name) could not be spawned: \(error)", metadata: ["process": "\(name)", "executable": "\(executable)"])
        exitReason = "spawn_failed"
        perform(supervision.spawnFailed(name, reason: "\(error)", atMs: nowMs(), using: &generator))
    }

    /// The `reason` label of a restart after `exit`.
    private static func reason(_ exit: ProcessExit) -> String {
        switch exit {
        case .exited(let code): code == 0 ? "exited" : "failed"
        case .signaled: "signaled"
        case .spawnError: "spawn_failed"
        }
    }

    // MARK: - Actions

    private func perform(_ actions: [SupervisionAction]) {
        for action in actions {
            switch action {
            case .spawn(let spec):
                spawner.yield(spec)
            case .restartLater(let name, let delayMs, let exit):
                logger.notice("restarting \(name) in \(delayMs) ms", metadata: ["process": "\(name)", "after": "\(exit)"])
                // Process names are the configured ones and collab-N up to maxCollabServers.
                metrics.counter(.processRestarts, [("process", name.rawValue), ("reason", exitReason)]).increment()
            case .terminate(let name, let pid):
                logger.info("stopping \(name): SIGTERM", metadata: ["process": "\(name)", "pid": "\(pid)"])
                send(.stop, to: name)
                signal(pid, SIGTERM)
            case .kill(let name, let pid, let reason):
                logger.error("killing \(name): \(reason)", metadata: ["process": "\(name)", "pid": "\(pid)"])
                killReasons[name] = reason
                signal(pid, SIGKILL)
            case .giveUp(let name, let message):
                logger.critical("\(message)", metadata: ["process": "\(name)"])
                metrics.counter(.processesGivenUp, [("process", name.rawValue)]).increment()
            case .zoneStopped:
                spawner.finish()
            }
        }
    }

    /// Signals go to pids the state machine holds as running: their exit has not been reaped
    /// yet (a reaped exit is reported to it before anything else), so the pid is still ours.
    private func signal(_ pid: Int, _ signal: Int32) {
        if kill(pid_t(pid), signal) != 0 {
            logger.debug("kill(\(pid), \(signal)) failed: errno \(errno)")
        }
    }

    /// Runs one OS process of `spec` from spawn to reaped exit.
    private nonisolated func runProcess(_ spec: ZoneConfiguration.ProcessSpec) async {
        let name = spec.name
        let reported = ReportedStart()
        do {
            // Two descriptors on the same append-only file: stdout and stderr each own one.
            let logPath = FilePath(paths.log(of: name))
            let output = try FileDescriptor.open(logPath, .writeOnly, options: [.create, .append],
                                                 permissions: [.ownerReadWrite, .groupRead])
            let error = try FileDescriptor.open(logPath, .writeOnly, options: [.create, .append],
                                                permissions: [.ownerReadWrite, .groupRead])
            _ = try? output.writeAll(Array("--- parley zone: starting \(name) (\(spec.role.rawValue)) at \(Date())\n".utf8))
            var platform = PlatformOptions()
            // Its own process group: Ctrl-C in a terminal reaches the supervisor only, which
            // then stops the zone in order.
            platform.processGroupID = 0
            platform.teardownSequence = [.gracefulShutDown(allowedDurationToNextStep: .milliseconds(options.timing.stopGraceMs))]
            let configuration = Configuration(
                executable: .path(FilePath(executable)),
                // A zone started with test faults passed that gate already; its processes may use them.
                arguments: Arguments(["node", "--name", name.rawValue, "--role", spec.role.rawValue,
                                      "--data", paths.data, "--config", paths.resolvedConfiguration]
                                     + (self.configuration.testFaults == nil ? [] : ["--enable-test-faults"])),
                platformOptions: platform)
            let result = try await Subprocess.run(
                configuration, input: .none,
                output: .fileDescriptor(output, closeAfterSpawningProcess: true),
                error: .fileDescriptor(error, closeAfterSpawningProcess: true)
            ) { execution in
                await reported.set()
                await self.started(name, pid: Int(execution.processIdentifier.value))
            }
            await exited(name, status: ProcessExit(result.terminationStatus))
        } catch {
            if await reported.value {
                await exited(name, status: .spawnError("lost track of the process: \(error)"))
            } else {
                await spawnFailed(name, error: error)
            }
        }
    }

    // MARK: - Control connections

    struct Connection {
        var outbox: AsyncStream<ControlMessage>.Continuation
        var name: NodeName?
        var pid: Int?
    }

    func opened(outbox: AsyncStream<ControlMessage>.Continuation) -> Int {
        nextConnectionID += 1
        connections[nextConnectionID] = Connection(outbox: outbox)
        return nextConnectionID
    }

    func closed(_ id: Int) {
        guard let connection = connections.removeValue(forKey: id) else { return }
        connection.outbox.finish()
        if let name = connection.name {
            logger.debug("\(name) disconnected from the control socket", metadata: ["process": "\(name)"])
        }
    }

    func received(_ message: ControlMessage, on id: Int) {
        guard let connection = connections[id] else { return }
        switch message {
        case .register(let name, let pid):
            do {
                try supervision.registered(name, pid: pid, atMs: nowMs())
                connections[id]?.name = name
                connections[id]?.pid = pid
                logger.info("\(name) registered", metadata: ["process": "\(name)", "pid": "\(pid)"])
            } catch {
                logger.warning("refused registration of \(name) (pid \(pid)): \(error)")
                connection.outbox.yield(.refused(ControlError(error)))
                connection.outbox.finish()
            }
        case .heartbeat(let load):
            if let name = connection.name, let pid = connection.pid {
                supervision.heartbeat(name, pid: pid, load: load, atMs: nowMs())
            }
        case .request(let requestID, .spawn(let role)):
            connection.outbox.yield(.reply(spawn(role: role, id: requestID, by: connection.name)))
        case .ctl(let requestID, let command):
            connection.outbox.yield(.reply(perform(command, id: requestID)))
        case .reply, .stop, .refused:
            logger.debug("ignored a supervisor-bound message only the supervisor sends", metadata: ["message": "\(message)"])
        }
    }

    private func spawn(role: NodeRole, id: Int, by requester: NodeName?) -> ControlReply {
        do {
            let (name, actions) = try supervision.spawnRequested(role: role, nowMs: nowMs())
            logger.notice("adding \(name) at the request of \(requester.map(\.rawValue) ?? "an unregistered process")",
                          metadata: ["process": "\(name)"])
            perform(actions)
            return ControlReply(id: id, name: name)
        } catch {
            logger.warning("refused to add a \(role.rawValue) server: \(error)")
            return .failure(id: id, ControlError(error))
        }
    }

    /// Every process this supervisor runs, as `parley ctl status` shows it.
    public func status() -> [ProcessStatus] {
        supervision.status(nowMs: nowMs()).map { process in
            var process = process
            process.machine = configuration.machine
            return process
        }
    }

    /// Every operator command, in one place. `drain` goes here (see ``ControlCommand``).
    private func perform(_ command: ControlCommand, id: Int) -> ControlReply {
        do {
            switch command {
            case .status:
                return ControlReply(id: id, status: status())
            case .restart(let name):
                logger.notice("operator restarts \(name)", metadata: ["process": "\(name)"])
                perform(try supervision.restartRequested(name, nowMs: nowMs()))
            case .stop(let name):
                logger.notice("operator stops \(name)", metadata: ["process": "\(name)"])
                perform(try supervision.stopRequested(name, nowMs: nowMs()))
            case .unsupported(let wireName):
                return .failure(id: id, ControlError(code: "unknown_command",
                                                     message: "this supervisor does not know the command '\(wireName)'"))
            }
            return ControlReply(id: id)
        } catch {
            return .failure(id: id, ControlError(error))
        }
    }

    private func send(_ message: ControlMessage, to name: NodeName) {
        for connection in connections.values where connection.name == name && connection.pid == supervision.pid(of: name) {
            connection.outbox.yield(message)
        }
    }
}

/// Whether the closure given to `Subprocess.run` has run: after that, a thrown error means a
/// process existed and must be reported as exited, not as never started.
private actor ReportedStart {
    private(set) var value = false
    func set() { value = true }
}

extension ProcessExit {
    init(_ status: TerminationStatus) {
        switch status {
        case .exited(let code): self = .exited(code: code)
        case .signaled(let signal): self = .signaled(signal)
        }
    }
}
