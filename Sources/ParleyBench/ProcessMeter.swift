import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// CPU time and resident memory of a process, read from /proc. Works whoever else shares
/// the cores: the kernel accounts CPU per process.
struct ProcessMeter: Sendable {
    let pid: Int32

    /// User plus system CPU seconds the process has used so far.
    func cpuSeconds() throws(BenchError) -> Double {
        let text = try read("/proc/\(pid)/stat")
        guard let ticks = Self.cpuTicks(statLine: text) else {
            throw BenchError.measurement("cannot read the CPU times in /proc/\(pid)/stat")
        }
        return Double(ticks) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Resident set size, in bytes.
    func residentBytes() throws(BenchError) -> Int {
        let text = try read("/proc/\(pid)/status")
        guard let bytes = Self.residentBytes(status: text) else {
            throw BenchError.measurement("no VmRSS line in /proc/\(pid)/status")
        }
        return bytes
    }

    /// Returns once the process used under `busyShare` of one core for two readings in a
    /// row, `intervalMs` apart, or after `limitSeconds`.
    func waitUntilIdle(busyShare: Double = 0.1, intervalMs: Int = 500, limitSeconds: Int = 60, logger: Logger) async {
        let deadline = ContinuousClock.now + .seconds(limitSeconds)
        var quiet = 0
        guard var last = try? cpuSeconds() else { return }
        while ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(intervalMs))
            guard let now = try? cpuSeconds() else { return }
            quiet = (now - last) / (Double(intervalMs) / 1_000) < busyShare ? quiet + 1 : 0
            last = now
            if quiet >= 2 { return }
        }
        logger.warning("the server was still busy after \(limitSeconds) s; measuring anyway")
    }

    private func read(_ path: String) throws(BenchError) -> String {
        do { return try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw BenchError.measurement("cannot read \(path) (has process \(pid) exited?): \(error)")
        }
    }

    /// utime + stime, in clock ticks, from a /proc/PID/stat line. The command name (field 2)
    /// may contain spaces and parentheses, so fields are counted from the last `)`.
    static func cpuTicks(statLine: String) -> Int? {
        guard let close = statLine.lastIndex(of: ")") else { return nil }
        let fields = statLine[statLine.index(after: close)...].split(separator: " ")
        // After the name: state is field 3, utime field 14, stime field 15.
        guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return nil }
        return user + system
    }

    /// The `VmRSS:  1234 kB` line of /proc/PID/status, in bytes.
    static func residentBytes(status: String) -> Int? {
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 3, let kilobytes = Int(parts[1]), parts[2] == "kB" else { return nil }
            return kilobytes * 1024
        }
        return nil
    }
}

/// The machine a result was measured on.
public struct MachineFacts: Codable, Equatable, Sendable {
    public var cores: Int
    public var cpu: String
    public var kernel: String
    public var memoryMiB: Int

    static func current() -> MachineFacts {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .flatMap { $0.split(separator: ":", maxSplits: 1).last }
            .map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown"
        let kernel = ((try? String(contentsOfFile: "/proc/sys/kernel/osrelease", encoding: .utf8)) ?? "unknown")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return MachineFacts(cores: ProcessInfo.processInfo.activeProcessorCount, cpu: model, kernel: kernel,
                            memoryMiB: Int(ProcessInfo.processInfo.physicalMemory / (1 << 20)))
    }
}

public enum BenchError: Error, CustomStringConvertible {
    case setup(String)
    case measurement(String)

    public var description: String {
        switch self {
        case .setup(let why): "could not set the benchmark up: \(why)"
        case .measurement(let why): "could not measure: \(why)"
        }
    }
}
