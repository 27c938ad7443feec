import Foundation
import ParleyZone

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The system a chaos run hurts: it starts it, names the processes that may be hit, injects
/// the faults, and stops it.
///
/// Faults come one at a time: ``victims()`` answers nothing while the system is still
/// recovering from the last fault (a process restarting), and the run waits.
public protocol FaultTarget: Sendable {
    /// `zone` or `single`, for the report.
    var name: String { get }
    /// Starts the system; returns the base URL clients and the HTTP API use.
    func start() async throws -> URL
    /// The processes a fault may hit now; empty while the system is still recovering.
    func victims() async throws -> [Victim]
    /// SIGKILL. Returns once the kill is done; the replacement may still be starting.
    func kill(_ victim: Victim) async throws
    /// SIGSTOP.
    func pause(_ victim: Victim) async throws
    /// SIGCONT after ``pause(_:)``. A process that was killed meanwhile is not an error.
    func resume(_ victim: Victim) async throws
    /// A graceful restart.
    func restart(_ victim: Victim) async throws
    /// What the operator of the run should know about the target, e.g. processes it had to
    /// bring back; shown in the report.
    func notes() async -> [String]
    /// Stops everything it started; safe to call more than once, and after a failed start.
    func stop() async
    /// Loses a whole machine (a victim whose role is ``Victim/machineRole``).
    func killMachine(_ victim: Victim) async throws
    /// Brings a lost machine back, as a reboot would.
    func restoreMachine(_ victim: Victim) async throws
    /// Cuts a machine off from the network; it keeps running.
    func isolateMachine(_ victim: Victim) async throws
    /// Reconnects a machine cut off by ``isolateMachine(_:)``.
    func healMachine(_ victim: Victim) async throws
}

extension FaultTarget {
    public func killMachine(_ victim: Victim) async throws {
        throw ChaosError.target("the \(name) target has no machines to lose; use --target cluster")
    }

    public func restoreMachine(_ victim: Victim) async throws {
        throw ChaosError.target("the \(name) target has no machines")
    }

    public func isolateMachine(_ victim: Victim) async throws {
        throw ChaosError.target("the \(name) target cannot cut a machine off; partitions need --target cluster with network namespaces (root)")
    }

    public func healMachine(_ victim: Victim) async throws {
        throw ChaosError.target("the \(name) target has no machines to reconnect")
    }
}

/// The meetings a collaboration server lists under `key` (`hosting`, `standby`) in the load
/// its supervisor reports.
func meetings(in load: JSONValue?, _ key: String) -> [String] {
    guard case .object(let fields)? = load, case .array(let list)? = fields[key] else { return [] }
    return list.compactMap { if case .string(let id) = $0 { id } else { nil } }
}

/// A target whose process faults are plain signals to the victim's pid (its supervisor
/// replaces what dies or hangs).
public protocol SignalledTarget: FaultTarget {}

extension SignalledTarget {
    public func kill(_ victim: Victim) throws {
        try signalProcess(SIGKILL, to: victim.pid, named: victim.name)
    }

    public func pause(_ victim: Victim) throws {
        try signalProcess(SIGSTOP, to: victim.pid, named: victim.name)
    }

    public func resume(_ victim: Victim) throws {
        // The supervisor kills a process whose heartbeats are overdue; then there is nothing to wake.
        try signalProcess(SIGCONT, to: victim.pid, named: victim.name, tolerateGone: true)
    }
}

/// Sends `signal` to `pid`; ESRCH (the process is already gone) counts as done when
/// `tolerateGone`.
func signalProcess(_ signal: Int32, to pid: Int32, named name: String, tolerateGone: Bool = false) throws {
    guard kill(pid, signal) != 0 else { return }
    let code = errno
    if tolerateGone, code == ESRCH { return }
    throw ChaosError.target("kill(\(pid) [\(name)], \(signal)) failed: \(String(cString: strerror(code)))")
}

/// Waits until `path` holds a port number (as `parley serve --port-file` writes it), the
/// child has exited, or `timeout` passed.
func waitForPortFile(_ path: String, child: ChildProcess, timeout: Duration) async -> Int? {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline, !child.hasExited {
        if let text = try? String(contentsOfFile: path, encoding: .utf8),
           let port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), port > 0 {
            return port
        }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return nil
}

/// The single-process server, `parley serve --single --data DIR --port P`, for trying the
/// whole chaos pipeline without a zone: its one victim is the server itself, and the target
/// starts it again on the same port after a kill or a restart, as a supervisor would.
public actor SingleServerTarget: FaultTarget {
    public nonisolated let name = "single"
    private let executable: String
    private let directory: String
    private var data: String { directory + "/data" }
    private var portFile: String { directory + "/server.port" }
    public nonisolated var logPath: String { directory + "/server.log" }
    private let options: [String]
    private var port = 0
    private var child: ChildProcess?
    private var starts = 0

    /// A process crash keeps the page cache, so SQLite's NORMAL sync loses nothing a SIGKILL
    /// could; only a power loss would.
    public static let chaosOptions = ["--no-fsync", "--log-level", "info"]

    /// - Parameters:
    ///   - executable: the `parley` binary.
    ///   - directory: holds the server's data (`data/`), its log and its port file.
    ///   - options: given to `parley serve --single` after the data directory and port.
    public init(executable: String, directory: String, options: [String] = SingleServerTarget.chaosOptions) {
        self.executable = executable
        self.directory = directory
        self.options = options
    }

    public func start() async throws -> URL {
        try await spawn()
        return URL(string: "http://127.0.0.1:\(port)")!
    }

    public func victims() -> [Victim] {
        guard let child, !child.hasExited else { return [] }
        return [Victim(name: "server", role: "server", pid: child.pid)]
    }

    public func kill(_ victim: Victim) async throws {
        guard let child, child.pid == victim.pid else { throw ChaosError.target("the server is not running") }
        try signalProcess(SIGKILL, to: child.pid, named: victim.name)
        guard await child.waitForExit(within: .seconds(10)) else {
            throw ChaosError.target("parley serve (pid \(child.pid)) outlived SIGKILL by 10 s")
        }
        try await spawn()
    }

    public func pause(_ victim: Victim) throws {
        try signalProcess(SIGSTOP, to: victim.pid, named: victim.name)
    }

    public func resume(_ victim: Victim) throws {
        try signalProcess(SIGCONT, to: victim.pid, named: victim.name, tolerateGone: true)
    }

    public func restart(_ victim: Victim) async throws {
        guard let child, child.pid == victim.pid else { throw ChaosError.target("the server is not running") }
        await child.stop(grace: .seconds(10))
        try await spawn()
    }

    public func notes() -> [String] {
        starts > 1 ? ["the server was started \(starts) times; its log is \(logPath)"] : []
    }

    public func stop() async {
        await child?.stop(grace: .seconds(10))
        child = nil
    }

    /// Starts `parley serve` on the port it had (any free one the first time), retrying a
    /// few times in case the old process's port is not free yet.
    private func spawn() async throws {
        for attempt in 1...5 {
            try? FileManager.default.removeItem(atPath: portFile)
            let started = try await ChildProcess.start(
                executable: executable,
                arguments: ["serve", "--single", "--data", data, "--port", "\(port)", "--port-file", portFile] + options,
                logPath: logPath)
            starts += 1
            if let bound = await waitForPortFile(portFile, child: started, timeout: .seconds(30)) {
                child = started
                port = bound
                return
            }
            await started.stop(grace: .seconds(2))
            try await Task.sleep(for: .milliseconds(200 * attempt))
        }
        throw ChaosError.target("parley serve did not start on port \(port) after 5 attempts; see \(logPath)")
    }
}
