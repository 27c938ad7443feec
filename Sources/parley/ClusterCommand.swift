import ArgumentParser
import Foundation
import ParleyServer
import ParleySupervisor
import ParleyChaos
import ParleyZone

#if canImport(Glibc)
import Glibc
#endif

/// `parley cluster`: a zone whose processes run on several machines.
struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Prepare and run a zone spread over several machines, sharing a PostgreSQL store.",
        subcommands: [ClusterInit.self, ClusterUp.self, ClusterDown.self])
}

/// `parley cluster init`: what every machine of a cluster must share, made once.
struct ClusterInit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Make each machine's data directory: the zone secret and the token keys, the same on every machine, and its TLS certificate.",
        discussion: """
            Reads the cluster configuration (a zone configuration with a "machines" section) and
            writes OUT/MACHINE for each machine: zone/secret (mode 0600, in a 0700 directory), which
            authenticates the links between processes, keys/token-signing.ed25519 (0600) and
            its .pub, which sign and verify join tokens, and zone/tls/ca.pem, machine.pem and
            machine.key (0600): the cluster's CA certificate and the machine's own certificate and
            key, with which the links between machines run over mutual TLS. The cluster's CA is
            OUT/ca/ca.pem and OUT/ca/ca.key (0600): keep ca.key safe and off the machines, since
            it issues machine certificates (whoever holds it can join a machine to the cluster).
            Copy OUT/MACHINE to that machine and run
            'parley serve --config cluster.json --machine MACHINE --data DIR --store postgres://...'
            there. Existing files are kept, so running it again adds machines without changing
            the secrets or certificates of those already running.
            """)

    @Option(help: "The cluster configuration (JSON).")
    var config: String

    @Option(help: "Where to write one data directory per machine, and the cluster's CA (OUT/ca).")
    var out: String

    func run() async throws {
        let configuration = try ZoneConfiguration.load(from: config)
        guard let first = configuration.machines.first else {
            throw ValidationError("\(config) names no machines: add a \"machines\" section (see the README, \"A cluster\")")
        }
        // OUT/ca holds the CA's key, which must never land in a machine's data directory.
        guard !configuration.machines.contains(where: { $0.name == "ca" }) else {
            throw ValidationError("a machine may not be named \"ca\": \(out)/ca holds the cluster's CA; rename it in \(config)")
        }
        let now = Date()  // the command is the edge: the certificates take time as an input
        let authority = try ClusterAuthority.loadOrCreate(directory: out + "/ca", now: now)
        // The first machine's files are made (or kept); every other machine gets copies.
        let origin = out + "/" + first.name
        try ClusterFiles.prepare(origin: origin)
        _ = try TokenKeys.ensure(dataDirectory: origin)
        for machine in configuration.machines {
            let data = out + "/" + machine.name
            if machine.name != first.name {
                try ClusterFiles.copyShared(from: origin, to: data,
                                            files: ["zone/secret", "keys/token-signing.ed25519", "keys/token-signing.ed25519.pub"])
            }
            // After the copies: zone/ exists by now, mode 0700, and tls/ goes inside it.
            let issued = try MachineCredentials.write(ca: authority, machine: machine.name, address: machine.address,
                                                      into: ZonePaths(data: data).tlsDirectory, now: now)
            print("\(machine.name) (\(machine.address)): \(data)  (TLS certificate \(issued ? "issued" : "kept"))")
        }
        print("cluster CA: \(ClusterAuthority.certificatePath(in: authority.directory)) and its key \(ClusterAuthority.keyPath(in: authority.directory)); "
              + "keep the key safe and off the machines")
    }
}

/// `parley cluster up`: a local cluster for trying and testing, in the foreground.
struct ClusterUp: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Run a local cluster on this box: a throwaway PostgreSQL and --machines machines, until Ctrl-C or 'parley cluster down'.",
        discussion: """
            Starts PostgreSQL (initdb in DIR/postgres, as the postgres user when run as root), writes
            DIR/cluster/cluster.json (machine m1 runs the web front, the services and a manager; every
            other machine a manager and a collab server), makes each machine's data directory with
            'parley cluster init', and starts one supervisor per machine. Run as root, each machine gets a
            Linux network namespace of its own on a private bridge (so that it can be cut off for
            real); otherwise each has its own loopback address (127.0.0.1, 127.0.0.2, ...). The first
            line of the output says which. Logs: DIR/cluster/NAME.log and DIR/cluster/machines/NAME/logs/. Stop it with Ctrl-C,
            SIGTERM, or 'parley cluster down --dir DIR' from another shell.
            """)

    @Option(help: "How many machines (at least 3).")
    var machines = 3

    @Option(help: "Directory for PostgreSQL, the machines' data and the logs (created if missing).")
    var dir = "./cluster"

    func validate() throws {
        guard machines >= 3 else { throw ValidationError("--machines must be at least 3") }
    }

    func run() async throws {
        let directory = URL(fileURLWithPath: dir).standardizedFileURL.path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let pidFile = directory + "/cluster.pid"
        if let text = try? String(contentsOfFile: pidFile, encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)),
           kill(pid, 0) == 0 {
            throw ValidationError("a cluster already runs from \(directory) (pid \(pid)); 'parley cluster down --dir \(dir)' stops it")
        }
        try "\(getpid())\n".write(toFile: pidFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: pidFile) }

        // Network namespaces when this process may make them (root), else loopback addresses.
        let network = MachineNetwork.isPermitted ? try await MachineNetwork.create(machines: machines) : nil
        if let network {
            say("mode: each machine in its own network namespace (\((1...machines).map(network.namespace(ofMachine:)).joined(separator: ", "))) on \(network.cidr)")
        } else {
            say("mode: each machine on its own loopback address (127.0.0.1 to 127.0.0.\(machines)); network namespaces need root")
        }
        let postgres: LocalPostgres
        do {
            postgres = try await LocalPostgres.start(in: directory + "/postgres", host: network?.bridgeAddress ?? "127.0.0.1",
                                                     port: try LocalPostgres.freePort(), durable: true, clientNetwork: network?.cidr)
        } catch {
            await network?.remove()
            throw error
        }
        do {
            try await postgres.createDatabase("parley")
        } catch {
            try? await postgres.stop()
            await network?.remove()
            throw error
        }
        let url = postgres.url(database: "parley", options: "sslmode=disable&connect_timeout=1&statement_timeout=2")
        say("PostgreSQL: \(url)  (log: \(postgres.logFile))")
        let configuration = ClusterTarget.standardConfiguration(
            machines: machines, storeURL: url, address: network.map { network in { network.address(ofMachine: $0) } } ?? { "127.0.0.\($0)" })
        let cluster = ClusterTarget(executable: currentExecutable(), directory: directory + "/cluster",
                                    configuration: configuration, storeURL: url, network: network)
        do {
            let web = try await cluster.start()
            for machine in cluster.configuration.machines {
                say("\(machine.name) \(machine.address): \(machine.processes.map(\.rawValue).joined(separator: ", "))"
                      + "  (parley ctl status --data \(directory)/cluster/machines/\(machine.name))")
            }
            say("the cluster is up; clients use \(web.absoluteString)")
            await Self.waitForStop()
            say("stopping the cluster")
        } catch {
            await cluster.stop()
            try? await postgres.stop()
            await network?.remove()
            throw error
        }
        await cluster.stop()
        try await postgres.stop()
        await network?.remove()
        say("the cluster is down")
    }

    /// One line on standard output at once, also when it is a file or a pipe.
    private func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    /// Returns on SIGTERM or SIGINT.
    static func waitForStop() async {
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        let (stops, stop) = AsyncStream<Void>.makeStream()
        let sources = [SIGTERM, SIGINT].map { number in
            let source = DispatchSource.makeSignalSource(signal: number)
            source.setEventHandler { stop.yield() }
            source.resume()
            return source
        }
        for await _ in stops { break }
        for source in sources { source.cancel() }
    }
}

/// `parley cluster down`: stops what `parley cluster up` runs.
struct ClusterDown: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "down",
        abstract: "Stop the local cluster that 'parley cluster up' runs from --dir, and wait until it is down.")

    @Option(help: "The directory given to 'parley cluster up'.")
    var dir = "./cluster"

    func run() async throws {
        let pidFile = URL(fileURLWithPath: dir).standardizedFileURL.path + "/cluster.pid"
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
              let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw ValidationError("no cluster runs from \(dir) (no \(pidFile))")
        }
        guard kill(pid, SIGTERM) == 0 else {
            try? FileManager.default.removeItem(atPath: pidFile)
            throw ValidationError("the cluster of \(dir) (pid \(pid)) is not running; removed its stale pid file")
        }
        let deadline = ContinuousClock.now + .seconds(90)
        while kill(pid, 0) == 0 {
            guard ContinuousClock.now < deadline else { throw ValidationError("the cluster (pid \(pid)) did not stop within 90 s") }
            try await Task.sleep(for: .milliseconds(100))
        }
        print("the cluster of \(dir) is down")
    }
}
