import Foundation
import Subprocess
import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A child process started with swift-subprocess and watched until it exits; its standard
/// output and error are appended to a log file. ``signal(_:)`` goes to its pid and refuses
/// once the exit is known, so a pid the kernel has handed to another process is not hit
/// (but for the instant between the reaping and the news of it).
final class ChildProcess: Sendable {
    let pid: Int32
    let description: String
    private let exit: Task<Void, Never>
    private let ended: Ended

    /// Set once the process is reaped; nil inside if swift-subprocess lost track of it.
    private final class Ended: Sendable {
        let status = Mutex<TerminationStatus??>(nil)
    }

    private init(pid: Int32, description: String, exit: Task<Void, Never>, ended: Ended) {
        self.pid = pid
        self.description = description
        self.exit = exit
        self.ended = ended
    }

    /// Spawns `executable arguments…`; returns once it runs.
    static func start(executable: String, arguments: [String], logPath: String) async throws -> ChildProcess {
        let description = ([executable] + arguments).joined(separator: " ")
        let output = try FileDescriptor.open(FilePath(logPath), .writeOnly, options: [.create, .append],
                                             permissions: [.ownerReadWrite])
        let error = try FileDescriptor.open(FilePath(logPath), .writeOnly, options: [.create, .append],
                                            permissions: [.ownerReadWrite])
        _ = try? output.writeAll(Array("--- parley chaos: starting \(description) at \(Date())\n".utf8))
        var platform = PlatformOptions()
        // If this run is cancelled, the child gets a graceful stop before a SIGKILL.
        platform.teardownSequence = [.gracefulShutDown(allowedDurationToNextStep: .seconds(5))]
        let configuration = Configuration(executable: .path(FilePath(executable)), arguments: Arguments(arguments),
                                          platformOptions: platform)
        let (pids, pidSink) = AsyncStream<Int32>.makeStream()
        let ended = Ended()
        let exit = Task {
            do {
                let result = try await Subprocess.run(
                    configuration, input: .none,
                    output: .fileDescriptor(output, closeAfterSpawningProcess: true),
                    error: .fileDescriptor(error, closeAfterSpawningProcess: true)
                ) { execution in
                    pidSink.yield(execution.processIdentifier.value)
                }
                ended.status.withLock { $0 = .some(result.terminationStatus) }
            } catch {
                ended.status.withLock { $0 = .some(nil) }
            }
            pidSink.finish()
        }
        var iterator = pids.makeAsyncIterator()
        guard let pid = await iterator.next() else {
            await exit.value
            throw ChaosError.target("could not start \(description); see \(logPath)")
        }
        live.withLock { $0[pid] = description }
        Task {
            await exit.value
            live.withLock { $0[pid] = nil }
        }
        return ChildProcess(pid: pid, description: description, exit: exit, ended: ended)
    }

    /// Every child process started and not yet reaped, by pid.
    static let live = Mutex<[Int32: String]>([:])

    /// Whether the process has exited and been reaped.
    var hasExited: Bool { ended.status.withLock { $0 != nil } }

    /// How it ended, once it has (nil inside if swift-subprocess lost track of it).
    var terminationStatus: TerminationStatus?? { ended.status.withLock { $0 } }

    /// Sends `signal` unless the process is already reaped; false if it could not be sent.
    @discardableResult
    func signal(_ signal: Int32) -> Bool {
        guard !hasExited else { return false }
        return kill(pid, signal) == 0
    }

    /// Waits until the process has exited, or `timeout` has passed; true if it exited.
    func waitForExit(within timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !hasExited {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
        await exit.value
        return true
    }

    /// SIGCONT (it may be paused), SIGTERM, and SIGKILL if it has not exited after `grace`.
    func stop(grace: Duration) async {
        signal(SIGCONT)
        signal(SIGTERM)
        if await waitForExit(within: grace) { return }
        signal(SIGKILL)
        _ = await waitForExit(within: .seconds(10))
    }
}

/// The last resort for a run that has wedged (its tasks no longer make progress): stops
/// every process the run started, without needing any task to run. For a watchdog thread.
public enum ChaosEmergency {
    /// SIGCONT and SIGTERM to every live child, then SIGKILL to those still there after
    /// `graceSeconds`. Blocks the calling thread; returns what it stopped.
    @discardableResult
    public static func stopChildren(graceSeconds: Int) -> [String] {
        let children = ChildProcess.live.withLock { $0 }
        for pid in children.keys {
            kill(pid, SIGCONT)
            kill(pid, SIGTERM)
        }
        var running = Array(children.keys)
        var waitedMs = 0
        while waitedMs < graceSeconds * 1_000, !running.isEmpty {
            usleep(100_000)
            waitedMs += 100
            running.removeAll(where: hasExited)
        }
        for pid in running { kill(pid, SIGKILL) }
        return children.values.sorted()
    }

    /// Whether `pid` (a child of this process) has exited, without reaping it: reaping is
    /// swift-subprocess's job, and a wedged run may never get to it.
    private static func hasExited(_ pid: Int32) -> Bool {
        var info = siginfo_t()
        guard waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 else { return true }
        return info._sifields._sigchld.si_pid == pid
    }
}

/// Why a chaos run could not be carried out (as opposed to what it found).
public enum ChaosError: Error, CustomStringConvertible {
    /// The system under test did not start, or a fault could not be driven.
    case target(String)
    /// Meetings or clients could not be set up.
    case setup(String)

    public var description: String {
        switch self {
        case .target(let message): message
        case .setup(let message): message
        }
    }
}
