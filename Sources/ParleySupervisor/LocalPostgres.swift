import Foundation
import Subprocess
import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A throwaway PostgreSQL server in a directory of its own, for the tests and for
/// `parley cluster up`: Debian's `initdb`, then `pg_ctl start` on a loopback port. Run as
/// the `postgres` user when started as root, since PostgreSQL refuses to run as root.
///
/// It listens on TCP only at `host` (loopback), with password authentication for the
/// `postgres` user (`password`), so the store connects exactly as it would to a real server.
public struct LocalPostgres: Sendable {
    public let directory: String
    public let host: String
    public let port: Int
    public let password: String
    public let binaries: String

    public var dataDirectory: String { directory + "/data" }
    public var logFile: String { directory + "/postgres.log" }

    /// The store URL of `database` on this server.
    public func url(database: String, options: String = "sslmode=disable") -> String {
        "postgres://postgres:\(password)@\(host):\(port)/\(database)?\(options)"
    }

    /// Creates the cluster (`initdb`) in `directory/data` and starts it.
    /// - Parameters:
    ///   - durable: fsync on (a benchmark, a real failover) or off (tests of logic).
    ///   - settings: more `postgresql.conf` lines.
    ///   - clientNetwork: a CIDR besides loopback whose clients may connect (with the password).
    public static func start(in directory: String, host: String = "127.0.0.1", port: Int, password: String = "parley",
                             durable: Bool = false, settings: [String] = [], clientNetwork: String? = nil) async throws -> LocalPostgres {
        let binaries = try findBinaries()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let server = LocalPostgres(directory: directory, host: host, port: port, password: password, binaries: binaries)
        let passwordFile = directory + "/password"
        try password.write(toFile: passwordFile, atomically: true, encoding: .utf8)
        try server.handOver(directory)
        try await server.run("initdb", ["-D", server.dataDirectory, "-U", "postgres", "-E", "UTF8", "--locale=C",
                                        "--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile=\(passwordFile)"]
                                       + (durable ? [] : ["--no-sync"]))
        var conf = [
            "listen_addresses = '\(host)'", "port = \(port)", "unix_socket_directories = '\(directory)'",
            "max_connections = 200", "fsync = \(durable ? "on" : "off")",
            "synchronous_commit = \(durable ? "on" : "off")", "full_page_writes = \(durable ? "on" : "off")",
            "wal_level = replica", "max_wal_senders = 10", "hot_standby = on",
        ] + settings
        conf.append("")
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: server.dataDirectory + "/postgresql.conf"))
        handle.seekToEndOfFile()
        handle.write(Data(conf.joined(separator: "\n").utf8))
        try handle.close()
        // Replicas connect as postgres over TCP with the same password.
        let hba = try FileHandle(forWritingTo: URL(fileURLWithPath: server.dataDirectory + "/pg_hba.conf"))
        hba.seekToEndOfFile()
        hba.write(Data("host replication postgres \(host)/32 scram-sha-256\nhost replication postgres 127.0.0.0/8 scram-sha-256\n".utf8))
        if let clientNetwork { hba.write(Data("host all all \(clientNetwork) scram-sha-256\n".utf8)) }
        try hba.close()
        try await server.startServer()
        return server
    }

    /// A streaming replica of `primary` in `directory`, started on `port`: `pg_basebackup -R`.
    public static func replica(of primary: LocalPostgres, in directory: String, port: Int) async throws -> LocalPostgres {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let server = LocalPostgres(directory: directory, host: primary.host, port: port, password: primary.password,
                                   binaries: primary.binaries)
        try server.handOver(directory)
        try await server.run("pg_basebackup", ["-D", server.dataDirectory, "-h", primary.host, "-p", "\(primary.port)",
                                               "-U", "postgres", "-R", "-X", "stream", "--no-sync",
                                               "--checkpoint=fast"],
                             environment: ["PGPASSWORD": primary.password])
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: server.dataDirectory + "/postgresql.auto.conf"))
        handle.seekToEndOfFile()
        // A replica retries its lost primary every 5 s by default, and notices a promotion
        // only between tries: retry often, so that promotion takes effect at once.
        handle.write(Data("\nport = \(port)\nunix_socket_directories = '\(directory)'\nwal_retrieve_retry_interval = 200ms\n".utf8))
        try handle.close()
        try await server.startServer()
        return server
    }

    /// Starts the server again after ``stop(mode:)``.
    public func startServer() async throws {
        try await run("pg_ctl", ["-D", dataDirectory, "-l", logFile, "-w", "-t", "60", "start"], discardOutput: true)
    }

    /// `pg_ctl stop`: `fast` shuts down cleanly, `immediate` is a crash.
    public func stop(mode: String = "fast") async throws {
        try await run("pg_ctl", ["-D", dataDirectory, "-m", mode, "-w", "stop"])
    }

    /// Promotes a replica to primary (`pg_ctl promote`), waiting until it accepts writes.
    public func promote() async throws {
        try await run("pg_ctl", ["-D", dataDirectory, "-w", "promote"])
    }

    /// Runs SQL through `psql` as postgres on the local socket; returns its output.
    @discardableResult
    public func psql(_ sql: String, database: String = "postgres") async throws -> String {
        try await run("psql", ["-h", directory, "-p", "\(port)", "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1",
                               "-qAtc", sql])
    }

    /// Creates a database and returns its name.
    public func createDatabase(_ name: String) async throws {
        try await psql("CREATE DATABASE \"\(name)\"")
    }

    /// The server's main process, from its pid file.
    public var pid: Int32? {
        guard let text = try? String(contentsOfFile: dataDirectory + "/postmaster.pid", encoding: .utf8),
              let first = text.split(separator: "\n").first else { return nil }
        return Int32(first)
    }

    /// Starts a watchdog that stops this server (immediately) and removes its directory once
    /// process `pid` has exited, however it exited: for test runs that may be killed.
    public func stopWhenGone(pid: Int32) throws {
        let ctl = "\(binaries)/pg_ctl -D '\(dataDirectory)' -m immediate -w stop"
        let stop = Self.runningAsRoot ? "/usr/sbin/runuser -u postgres -- \(ctl)" : ctl
        let watchdog = Process()
        watchdog.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
        watchdog.arguments = ["/bin/sh", "-c",
                              "while kill -0 \(pid) 2>/dev/null; do sleep 1; done; \(stop) >/dev/null 2>&1; rm -rf '\(directory)'"]
        watchdog.standardInput = FileHandle.nullDevice
        watchdog.standardOutput = FileHandle.nullDevice
        watchdog.standardError = FileHandle.nullDevice
        try watchdog.run()
    }

    /// A TCP port on 127.0.0.1 that nothing uses right now, from just below the kernel's
    /// ephemeral range. A port from inside that range (what binding port 0 gives) may be
    /// handed to any outgoing connection between this probe and the server binding it, and
    /// then the server fails to start; below it, only another listener could take it.
    public static func freePort() throws -> Int {
        let ephemeralLow = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))
            .flatMap { $0.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } } ?? 32_768
        let candidates = max(1_024, ephemeralLow - 12_000)..<ephemeralLow
        // Successive calls in one process probe successive ports, so two servers started at
        // once never get the same one; processes start at different places.
        let first = portCursor.withLock { cursor in
            defer { cursor += 1 }
            return cursor
        }
        for step in 0..<candidates.count {
            let port = candidates.lowerBound + (first + step) % candidates.count
            if canBind(port) {
                portCursor.withLock { $0 = max($0, first + step + 1) }
                return port
            }
        }
        throw LocalPostgresError("no free port on 127.0.0.1 in \(candidates.lowerBound)-\(candidates.upperBound - 1)")
    }

    private static let portCursor = Mutex(Int(getpid()) &* 7_919 % 12_000)

    private static func canBind(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    // MARK: - Running the binaries

    /// The directory of Debian's PostgreSQL binaries (the newest installed), or of `initdb` on the PATH.
    static func findBinaries() throws -> String {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [])
            .compactMap(Int.init).sorted()
        for version in versions.reversed() where FileManager.default.isExecutableFile(atPath: "\(root)/\(version)/bin/initdb") {
            return "\(root)/\(version)/bin"
        }
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
        where FileManager.default.isExecutableFile(atPath: "\(directory)/initdb") {
            return String(directory)
        }
        throw LocalPostgresError("PostgreSQL's initdb is not installed: apt-get install postgresql")
    }

    private static var runningAsRoot: Bool { geteuid() == 0 }

    /// Gives `path` to the postgres user when we are root (PostgreSQL will not run as root).
    private func handOver(_ path: String) throws {
        guard Self.runningAsRoot else { return }
        guard let user = getpwnam("postgres") else {
            throw LocalPostgresError("running as root, and there is no postgres user to run PostgreSQL as (apt-get install postgresql)")
        }
        chmod(path, 0o700)
        // The postgres user must be able to reach the directory: let it pass through the
        // parent (search only, no listing), as a private temporary directory would not.
        let parent = (path as NSString).deletingLastPathComponent
        var info = stat()
        if stat(parent, &info) == 0, info.st_mode & 0o001 == 0 { chmod(parent, (info.st_mode & 0o7777) | 0o001) }
        guard chown(path, user.pointee.pw_uid, user.pointee.pw_gid) == 0 else {
            throw LocalPostgresError("cannot give \(path) to the postgres user: \(String(cString: strerror(errno)))")
        }
        for file in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {
            _ = chown(path + "/" + file, user.pointee.pw_uid, user.pointee.pw_gid)
        }
    }

    @discardableResult
    private func run(_ program: String, _ arguments: [String], environment: [String: String] = [:],
                     discardOutput: Bool = false) async throws -> String {
        let path = program == "sh" ? "/bin/sh" : binaries + "/" + program
        var executable = path
        var all = arguments
        if Self.runningAsRoot {
            executable = "/usr/sbin/runuser"
            all = ["-u", "postgres", "--", "env"] + environment.map { "\($0.key)=\($0.value)" } + [path] + arguments
        }
        var env = Environment.inherit
        for (key, value) in environment { env = env.updating([Environment.Key(stringLiteral: key): value]) }
        let configuration = Configuration(executable: .path(FilePath(executable)), arguments: Arguments(all), environment: env,
                                          workingDirectory: FilePath(directory))
        if discardOutput {
            // pg_ctl start leaves the server holding whatever pipes it was given.
            let result = try await Subprocess.run(configuration, input: .none, output: .discarded, error: .discarded)
            guard result.terminationStatus.isSuccess else {
                let log = (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? ""
                throw LocalPostgresError("\(program) \(arguments.joined(separator: " ")) failed (\(result.terminationStatus)); "
                                         + "its log ends: \(log.suffix(600))")
            }
            return ""
        }
        let result = try await Subprocess.run(configuration, input: .none, output: .string(limit: 1 << 20),
                                              error: .string(limit: 1 << 16))
        guard result.terminationStatus.isSuccess else {
            throw LocalPostgresError("\(program) \(arguments.joined(separator: " ")) failed (\(result.terminationStatus)): "
                                     + result.standardError.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

public struct LocalPostgresError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
