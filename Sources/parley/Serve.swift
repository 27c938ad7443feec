import ArgumentParser
import Configuration
import FoundationEssentials
import Logging
import Metrics
import ParleyProtocol
import ParleyNode
import ParleyServer
import ParleyStore
import ParleyTelemetry
import ParleyWeb
import ParleyZone
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run Parley: a zone of server processes under a supervisor, on the embedded SQLite store or PostgreSQL.",
        discussion: """
            By default this starts a zone (see 'parley zone'): managers, collaboration servers, the
            web process and the services, each its own process, restarted when they die, with every
            meeting kept hot on a second server so that it fails over without losing anything.
            Clients use http://HOST:PORT (https:// with --tls-cert and --tls-key). '--config FILE' changes the zone; 'parley ctl' watches it.

            '--single' runs everything in this one process instead, with the same settings (its
            processes aside).

            Every setting is read from, highest first: the options below (each names the key it
            sets), PARLEY_... environment variables (clients.maxFrameBytes is
            PARLEY_CLIENTS_MAX_FRAME_BYTES), the --config file, the standard values. A key no
            setting has, a value of the wrong type or out of range stops Parley before it starts,
            naming the key ('parley zone --print-config' shows them all).

            Meetings, their logs and checkpoints live in DATA/parley.sqlite, or in PostgreSQL with
            '--store postgres://...' (or PARLEY_STORE_URL, or store.url in the configuration); the
            token signing key in DATA/keys. SIGTERM or Ctrl-C stops gracefully: stop accepting, commit what is
            pending, checkpoint every meeting. After a crash, meetings are rebuilt from their last
            checkpoint plus the log.
            """)

    @Flag(help: "Run one server process instead of a zone.")
    var single = false

    @Option(help: "A zone configuration file (JSON); see 'parley zone --print-config'.")
    var config: String?

    @Option(name: .customLong("data"), help: "Data directory (created if missing).")
    var dataDirectory = "./data"

    @Option(help: ArgumentHelp(storeHelp, valueName: "url"))
    var store: String?

    @Option(help: ArgumentHelp(machineHelp, valueName: "name"))
    var machine: String?

    @Option(help: "Address to listen on (default 127.0.0.1). In a zone, overrides host.")
    var host: String?

    @Option(help: "Port clients connect to; 0 picks a free one. In a zone, overrides publicPort.")
    var port: Int?

    @Option(help: "Write the bound port to this file once listening (for scripts and supervisors).")
    var portFile: String?

    @Option(help: ArgumentHelp("Serve clients over TLS with this certificate chain (PEM, leaf first); clients then use https:// and wss://. Needs --tls-key. In a zone, overrides the configuration's tls.certificate.", valueName: "pem"))
    var tlsCert: String?

    @Option(help: ArgumentHelp("The private key (PEM) of --tls-cert. In a zone, overrides tls.key.", valueName: "pem"))
    var tlsKey: String?

    @Option(help: "Largest accepted client frame, in bytes (default \(ConnectionLimits().maxFrameBytes)); clients.maxFrameBytes.")
    var maxFrameBytes: Int?

    @Option(help: "Ops and signals per second allowed per connection, sustained (default \(ConnectionLimits().framesPerSecond)); clients.framesPerSecond.")
    var framesPerSecond: Int?

    @Option(help: "Ops and signals a connection may send at once above the sustained rate (default \(ConnectionLimits().burst)); clients.burst.")
    var burst: Int?

    @Option(help: "Frames queued for one client before it is disconnected as a slow consumer (default \(ConnectionLimits().sendQueueFrames)); clients.sendQueueFrames.")
    var sendQueueFrames: Int?

    @Option(help: "Inputs queued for one meeting before new ops are refused with server_busy (default \(ServerConfiguration().meetingQueueDepth)); clients.meetingQueueDepth.")
    var meetingQueueDepth: Int?

    @Option(help: "WebSocket joins waiting for their token to be checked before more are refused with server_busy (default \(ServerConfiguration().pendingHellos)); clients.pendingHellos.")
    var pendingHellos: Int?

    @Option(help: "Seconds a client WebSocket may stay silent before it gets a ping; silent as long again, it is closed (default \(ServerConfiguration().webSocketPingSeconds)); clients.webSocketPingSeconds.")
    var webSocketPingSeconds: Int?

    @Option(help: "Log entries between checkpoints of a meeting (default \(ServerConfiguration().snapshotEveryEntries)); clients.snapshotEveryEntries.")
    var snapshotEvery: Int?

    @Option(help: "Lifetime of issued join tokens, in seconds (default \(ServerConfiguration().tokenLifetimeSeconds)); clients.tokenLifetimeSeconds.")
    var tokenLifetime: Int?

    @Option(help: "Require 'Authorization: Bearer KEY' to create meetings and issue tokens; clients.apiKey, PARLEY_CLIENTS_API_KEY (or PARLEY_API_KEY).")
    var apiKey: String?

    @Flag(help: "Use SQLite synchronous=NORMAL: faster, but a power loss (not a crash) may lose the last commits; clients.fsyncEveryCommit false.")
    var noFsync = false

    @Option(help: "bcrypt cost for new password hashes, 4...31 (default \(WebSettings().passwordCost)); web.passwordCost.")
    var passwordCost: Int?

    @Option(help: "Failed sign-ins in a row that lock an account (default \(WebSettings().maxFailedSignIns)); web.maxFailedSignIns.")
    var maxFailedSignIns: Int?

    @Option(help: "How long a locked account stays locked, in seconds (default \(WebSettings().lockoutSeconds)); web.lockoutSeconds.")
    var lockoutSeconds: Int?

    @Flag(help: "Mark cookies Secure (when clients reach Parley over HTTPS); web.secureCookies.")
    var secureCookies = false

    @Option(help: "Largest document upload, in bytes (default \(WebSettings().maxUploadBytes)); web.maxUploadBytes.")
    var maxUploadBytes: Int?

    @Option(help: "Most pages an uploaded PDF may have (default \(WebSettings().maxDocumentPages)); web.maxDocumentPages.")
    var maxDocumentPages: Int?

    @Option(help: "Time limit for converting one document, per converter, in seconds (default \(WebSettings().converterTimeoutSeconds)); web.converterTimeoutSeconds.")
    var converterTimeout: Int?

    @Option(help: "Memory limit of a document converter process, in MiB (default \(WebSettings().converterMemoryMiB)); web.converterMemoryMiB.")
    var converterMemoryMib: Int?

    @Flag(help: "Convert documents without the sandbox (bubblewrap) when it cannot run here; otherwise uploads are then refused; web.allowUnsandboxedConversion.")
    var allowUnsandboxedConversion = false

    @Option(help: ArgumentHelp("Serve the metrics (Prometheus text format) at this path (default /metrics; with --single on the client port, in a zone on each process's metrics port); 'off' serves none. metrics.path and metrics.enabled.", valueName: "path"))
    var metricsPath: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    @Option(help: logFormatHelp)
    var logFormat: String?

    @Flag(help: .hidden) var enableTestFaults = false

    func validate() throws {
        if let port, !(0...65535).contains(port) { throw ValidationError("--port must be 0...65535") }
        if single, config != nil { throw ValidationError("--config describes a zone; it cannot be used with --single") }
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together: give both, or neither") }
        if single, machine != nil { throw ValidationError("--machine names a machine of a cluster; it cannot be used with --single") }
        if let metricsPath, metricsPath != "off", !metricsPath.hasPrefix("/") {
            throw ValidationError("--metrics-path must start with / (or be 'off')")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level '\(logLevel)'") }
        _ = try parley.logFormat(logFormat)
    }

    /// The settings these options give, by the configuration key each one sets: the highest
    /// of the configuration's sources, in a zone and with `--single` alike.
    var settings: [String: ConfigContent] {
        var flags: [String: ConfigContent] = [:]
        func set(_ key: String, _ value: Int?) { if let value { flags[key] = .int(value) } }
        // An empty option is not given (`--store ""` keeps the configured store).
        func set(_ key: String, _ value: String?) { if let value, !value.isEmpty { flags[key] = .string(value) } }
        set("host", host)
        set("publicPort", port)
        set("store.url", store)
        set("logs.format", logFormat)
        if let clientTLS {
            set("tls.certificate", clientTLS.certificatePath)
            set("tls.key", clientTLS.keyPath)
        }
        set("clients.maxFrameBytes", maxFrameBytes)
        set("clients.framesPerSecond", framesPerSecond)
        set("clients.burst", burst)
        set("clients.sendQueueFrames", sendQueueFrames)
        set("clients.meetingQueueDepth", meetingQueueDepth)
        set("clients.pendingHellos", pendingHellos)
        set("clients.webSocketPingSeconds", webSocketPingSeconds)
        set("clients.snapshotEveryEntries", snapshotEvery)
        set("clients.tokenLifetimeSeconds", tokenLifetime)
        set("clients.apiKey", apiKey)
        if noFsync { flags["clients.fsyncEveryCommit"] = .bool(false) }
        set("web.passwordCost", passwordCost)
        set("web.maxFailedSignIns", maxFailedSignIns)
        set("web.lockoutSeconds", lockoutSeconds)
        if secureCookies { flags["web.secureCookies"] = .bool(true) }
        if allowUnsandboxedConversion { flags["web.allowUnsandboxedConversion"] = .bool(true) }
        set("web.maxUploadBytes", maxUploadBytes)
        set("web.maxDocumentPages", maxDocumentPages)
        set("web.converterTimeoutSeconds", converterTimeout)
        set("web.converterMemoryMiB", converterMemoryMib)
        if metricsPath == "off" { flags["metrics.enabled"] = .bool(false) } else { set("metrics.path", metricsPath) }
        return flags
    }

    /// TLS for clients from `--tls-cert` and `--tls-key`, as absolute paths: a zone's
    /// processes read them from their own working directory.
    var clientTLS: ServerTLS? {
        guard let tlsCert, let tlsKey else { return nil }
        let absolute = { (path: String) in URL(fileURLWithPath: path).standardizedFileURL.path }
        return ServerTLS(certificatePath: absolute(tlsCert), keyPath: absolute(tlsKey))
    }

    func run() async throws {
        let zone = try ZoneConfiguration.load(from: config, flags: settings, testFaultsEnabled: enableTestFaults)
        bootstrapLogging(level: logLevel, format: try parley.logFormat(nil, configured: zone.logs.format))
        guard single else {
            try await ZoneCommand.runZone(zone, dataDirectory: dataDirectory, machine: machine, portFile: portFile)
            return
        }
        // One process: the zone's client, web, store, TLS and metrics settings, its processes ignored.
        let logger = Logger(label: "parley")
        var configuration = try ServerConfiguration(zone: zone, paths: ZonePaths(data: dataDirectory), port: zone.publicPort)
        if zone.metrics.enabled {
            let metrics = ProcessMetrics.prometheus()
            // Libraries record through the process-wide factory (Hummingbird's HTTP metrics).
            MetricsSystem.bootstrap(metrics.factory)
            configuration.metrics = ServerMetrics(metrics)
            configuration.metricsPath = zone.metrics.path
        }
        configuration.tracing = zone.tracing.make(process: "single", logger: logger)
        let portFile = portFile
        let server = ParleyServer(configuration: configuration, frontRoutes: WebZone.routes(settings: zone.web), logger: logger)
        guard let exporter = configuration.tracing.exporter else {
            try await server.run { port in if let portFile { writeWhole("\(port)\n", to: portFile) } }
            return
        }
        // The span exporter runs beside the server, and sends the last spans once it stops.
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            let exporting = ServiceGroup(configuration: .init(services: [.init(service: exporter)], logger: logger))
            tasks.addTask { try await exporting.run() }
            try await server.run { port in if let portFile { writeWhole("\(port)\n", to: portFile) } }
            await exporting.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }
}
