import ArgumentParser
import Configuration
import FoundationEssentials
import Logging
import Metrics
import ParleyCore
import ParleyNode
import ParleyServer
import ParleyStore
import ParleySupervisor
import ParleyTelemetry
import ParleyZone
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `parley zone`: the supervisor in the foreground.
struct ZoneCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zone",
        abstract: "Run a zone in the foreground: a supervisor and every logical server in its configuration.",
        discussion: """
            Each logical server runs as its own process ('parley node'), logging to DATA/logs/NAME.log.
            The supervisor restarts any that exits (with backoff, giving up after restart.maxRestarts
            restarts within restart.windowSeconds) and kills and replaces any that stops sending
            heartbeats. Watch and steer it with 'parley ctl'. SIGTERM or Ctrl-C stops the zone in
            order: web, collab servers, services, then managers.
            """)

    @Option(name: .customLong("data"), help: "Data directory (created if missing).")
    var dataDirectory = "./data"

    @Option(help: "A zone configuration file (JSON); keys it leaves out keep their standard values.")
    var config: String?

    @Option(help: ArgumentHelp(storeHelp, valueName: "url"))
    var store: String?

    @Option(help: ArgumentHelp(machineHelp, valueName: "name"))
    var machine: String?

    @Flag(help: "Print the configuration the zone would run with, as JSON, and exit.")
    var printConfig = false

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    @Option(help: logFormatHelp)
    var logFormat: String?

    @Flag(help: .hidden) var enableTestFaults = false

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level '\(logLevel)'") }
        _ = try parley.logFormat(logFormat)
    }

    func run() async throws {
        var flags: [String: ConfigContent] = [:]
        if let store, !store.isEmpty { flags["store.url"] = .string(store) }
        if let logFormat { flags["logs.format"] = .string(logFormat) }
        let configuration = try ZoneConfiguration.load(from: config, flags: flags, testFaultsEnabled: enableTestFaults)
        if printConfig {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(configuration), as: UTF8.self))
            return
        }
        bootstrapLogging(level: logLevel, format: try parley.logFormat(nil, configured: configuration.logs.format))
        try await Self.runZone(configuration, dataDirectory: dataDirectory, machine: machine, portFile: nil)
    }

    /// Runs the supervisor until SIGTERM/SIGINT. With `portFile`, writes the public port
    /// there once the web process listens.
    static func runZone(_ configuration: ZoneConfiguration, dataDirectory: String, machine: String?,
                        portFile: String?) async throws {
        let logger = Logger(label: "parley.zone")
        let paths = ZonePaths(data: dataDirectory)
        // Every process opens the store the supervisor checked here: a URL that does not parse,
        // a database that cannot be reached or refuses us, stops the zone before it starts.
        var configuration = configuration
        let location = try configuration.storeLocation()
        if configuration.machines.count > 1, case .sqlite = location {
            throw ConfigurationProblems(source: "given", problems: [
                "a cluster of \(configuration.machines.count) machines needs a store they all reach: "
                    + "give --store postgres://... (or store.url, or PARLEY_STORE_URL); SQLite serves one machine",
            ])
        }
        if let machine {
            configuration = try configuration.share(of: machine)
        } else if !configuration.machines.isEmpty {
            throw ConfigurationProblems(source: "given", problems: [
                "the configuration names machines (\(configuration.machines.map(\.name).joined(separator: ", "))): "
                    + "say which one this is with --machine NAME",
            ])
        }
        // TLS files are read now: a zone with a missing or bad one stops here, in one line,
        // rather than its processes failing one after another.
        if let tls = configuration.tls { _ = try ServerTLS(tls).configuration() }
        if !configuration.machines.isEmpty { _ = try ZoneTLS(paths: paths) }
        try await location.check(dataDirectory: dataDirectory, logger: logger)
        logger.info("store ready", metadata: ["store": "\(location)"])
        // A previous run's address is not this one's.
        try? FileManager.default.removeItem(atPath: paths.publicURL)
        // The token key pair exists before any process starts: the web process signs with the
        // private half, the collaboration servers read only the public half.
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        try TokenKeys.ensure(dataDirectory: dataDirectory)
        let metrics = configuration.metrics.enabled ? ProcessMetrics.prometheus() : .off
        if metrics.isOn { MetricsSystem.bootstrap(metrics.factory) }
        let supervisor = Supervisor(configuration: configuration, dataDirectory: dataDirectory,
                                    executable: currentExecutable(), metrics: metrics, logger: logger)
        let metricsListener = SupervisorMetricsListener(configuration: configuration, paths: paths, metrics: metrics, logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: metricsListener),
                       .init(service: supervisor, successTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        // The zone's run, and a watcher that announces the public address once the web process
        // (if this machine runs it) has written it. The zone ending ends the watcher too.
        try await withThrowingTaskGroup(of: Bool.self) { tasks in
            tasks.addTask {
                try await group.run()
                return true
            }
            tasks.addTask {
                while !Task.isCancelled {
                    if let text = try? String(contentsOfFile: paths.publicURL, encoding: .utf8),
                       let port = text.split(separator: ":").last.flatMap({ Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) {
                        logger.notice("the zone is up; clients use \(text.trimmingCharacters(in: .whitespacesAndNewlines))")
                        if let portFile { writeWhole("\(port)\n", to: portFile) }
                        return false
                    }
                    try await Task.sleep(for: .milliseconds(50))
                }
                return false
            }
            if let machine = configuration.machine {
                let afterCrashes = configuration.poisonAfterCrashes
                tasks.addTask {
                    await publishStatus(of: supervisor, machine: machine, to: location, dataDirectory: dataDirectory,
                                        afterCrashes: afterCrashes, logger: logger)
                    return false
                }
            }
            while let zoneEnded = try await tasks.next() {
                if zoneEnded {
                    tasks.cancelAll()
                    break
                }
            }
        }
    }
}

/// In a cluster: what this machine's supervisor sees of its processes, published to the
/// shared store every second, so `parley ctl status` on any machine shows the whole cluster;
/// and the crashes its processes died of while applying an op, counted in the store.
/// Runs until cancelled; a store that cannot be reached is retried, not fatal.
func publishStatus(of supervisor: Supervisor, machine: String, to location: StoreLocation, dataDirectory: String,
                   afterCrashes: Int, logger: Logger) async {
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    while !Task.isCancelled {
        do {
            try await location.withStore(dataDirectory: dataDirectory, logger: logger) { store in
                var failing = false
                while !Task.isCancelled {
                    let processes = await supervisor.status().compactMap { status in
                        (try? encoder.encode(status)).map {
                            PublishedProcess(machine: machine, name: status.name.rawValue, status: String(decoding: $0, as: UTF8.self))
                        }
                    }
                    do {
                        try await store.publishProcesses(machine: machine, processes)
                        failing = false
                    } catch {
                        if !failing { logger.warning("cannot publish this machine's processes", metadata: ["error": "\(error)"]) }
                        failing = true
                    }
                    // The crashes this machine's processes died of, counted where every machine
                    // sees them (the next host of a meeting may be on another machine).
                    await ApplyingNote.sweep(directory: ZonePaths(data: dataDirectory).applyingDirectory, store: store,
                                             now: Millis(Date().timeIntervalSince1970 * 1000), afterCrashes: afterCrashes, logger: logger)
                    try await Task.sleep(for: .seconds(1))
                }
            }
        } catch {
            if Task.isCancelled { return }
            logger.warning("cannot open the store to publish this machine's processes", metadata: ["error": "\(error)"])
            try? await Task.sleep(for: .seconds(5))
        }
    }
}

/// Writes `text` to `path` through a rename, so a reader never sees part of it.
func writeWhole(_ text: String, to path: String) {
    let temporary = path + ".tmp"
    if FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8)) {
        try? FileManager.default.removeItem(atPath: path)
        try? FileManager.default.moveItem(atPath: temporary, toPath: path)
    }
}

let machineHelp = """
    In a cluster (a configuration with "machines"): which machine this is. Runs that machine's \
    processes only, on its address.
    """

let storeHelp = """
    Where meetings are kept: sqlite: (the default, DATA/parley.sqlite) or \
    postgres://user:password@host[:port][,host2...]/database[?sslmode=...&target_session_attrs=read-write]. \
    Also PARLEY_STORE_URL, or store.url in a zone configuration.
    """

/// A configuration the operator can fix from the message alone.
extension ZoneConfiguration.TracingSettings {
    /// Where this process's spans go: nowhere unless `enabled`.
    /// Tracing never stops a process: if the exporter cannot be made, it says why and runs
    /// without.
    func make(process: String, logger: Logger,
              environment: [String: String] = ProcessInfo.processInfo.environment) -> ProcessTracing {
        guard enabled else { return .off }
        // swift-otel reads these itself, over the configuration: say so rather than surprise.
        let otel = environment.keys.filter { $0.hasPrefix("OTEL_") }.sorted()
        if !otel.isEmpty {
            logger.warning("OTEL_ environment variables override the tracing section", metadata: ["variables": "\(otel.joined(separator: ","))"])
        }
        do {
            let tracing = try ProcessTracing.otlp(endpoint: endpoint, json: `protocol` == "http/json", sampleRatio: sampleRatio,
                                                  exportDelayMs: exportDelayMs, process: process, logger: logger)
            logger.notice("tracing on", metadata: ["endpoint": "\(endpoint)", "protocol": "\(`protocol`)", "sample_ratio": "\(sampleRatio)"])
            return tracing
        } catch {
            logger.error("tracing is configured but cannot start; running without", metadata: ["error": "\(error)"])
            return .off
        }
    }
}

extension ZoneConfiguration {
    /// The configuration a command runs with: its `flags` (by key), over this process's
    /// `PARLEY_…` environment, over the file at `path`, over the standard values.
    /// - Throws: ``ConfigurationProblems``, every mistake at once.
    static func load(from path: String?, flags: [String: ConfigContent] = [:],
                     environment: [String: String] = ProcessInfo.processInfo.environment,
                     testFaultsEnabled: Bool = false) throws -> ZoneConfiguration {
        var file: (name: String, contents: Data)?
        if let path {
            do {
                file = (path, try Data(contentsOf: URL(fileURLWithPath: path)))
            } catch {
                throw ConfigurationProblems(source: "in \(path)", problems: ["it cannot be read: \(error)"])
            }
        }
        return try read(ConfigurationSources(flags: flags, environment: environment, file: file),
                        testFaultsEnabled: testFaultsEnabled)
    }
}

/// Log lines to standard error, which the supervisor appends to the process's log file.
/// A logger at the named level (error if the name is unknown; commands validate it first).
func makeLogger(label: String, level: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = Logger.Level(rawValue: level) ?? .error
    return logger
}

func bootstrapLogging(level: String, format: LogFormat = .text) {
    let level = Logger.Level(rawValue: level) ?? .info
    LoggingSystem.bootstrap { label in
        switch format {
        case .text:
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        case .json:
            var handler = JSONLogHandler(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

/// The `--log-format` option's help, the same on every command that runs a server.
let logFormatHelp = ArgumentHelp("How log lines are written: text (for people) or json (one object per line, for a log pipeline). In a zone this overrides the configuration's logs.format, for every process.", valueName: "format")

/// `--log-format`, checked.
func logFormat(_ flag: String?, configured: String = "text") throws -> LogFormat {
    guard let format = LogFormat(rawValue: flag ?? configured) else {
        throw ValidationError("--log-format must be text or json (it is '\(flag ?? configured)')")
    }
    return format
}

/// This binary's absolute path, for the supervisor to start `parley node` with.
func currentExecutable() -> String {
    #if os(Linux)
    var buffer = [CChar](repeating: 0, count: 4_096)
    let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    if count > 0 { return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    #endif
    return CommandLine.arguments[0]
}
