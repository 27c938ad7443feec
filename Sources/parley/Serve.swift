import ArgumentParser
import FoundationEssentials
import Logging
import Metrics
import ParleyProtocol
import ParleyServer
import ParleyStore
import ParleyTelemetry
import ParleyWeb
import ParleyZone

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
            In a zone, the client limits below come from the configuration's "clients" section
            instead (same names: maxFrameBytes, framesPerSecond, burst, sendQueueFrames,
            meetingQueueDepth, pendingHellos, webSocketPingSeconds, snapshotEveryEntries,
            tokenLifetimeSeconds, apiKey, fsyncEveryCommit); PARLEY_API_KEY applies to both.

            '--single' runs everything in this one process instead. The web zone's settings (accounts,
            lock-out, uploads, document converters) are options below with '--single', and the
            configuration's "web" section in a zone.

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

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port clients connect to; 0 picks a free one. In a zone, overrides publicPort.")
    var port: Int?

    @Option(help: "Write the bound port to this file once listening (for scripts and supervisors).")
    var portFile: String?

    @Option(help: ArgumentHelp("Serve clients over TLS with this certificate chain (PEM, leaf first); clients then use https:// and wss://. Needs --tls-key. In a zone, overrides the configuration's tls.certificate.", valueName: "pem"))
    var tlsCert: String?

    @Option(help: ArgumentHelp("The private key (PEM) of --tls-cert. In a zone, overrides tls.key.", valueName: "pem"))
    var tlsKey: String?

    @Option(help: "Largest accepted client frame, in bytes.")
    var maxFrameBytes = ConnectionLimits().maxFrameBytes

    @Option(help: "Ops and signals per second allowed per connection, sustained.")
    var framesPerSecond = ConnectionLimits().framesPerSecond

    @Option(help: "Ops and signals a connection may send at once above the sustained rate.")
    var burst = ConnectionLimits().burst

    @Option(help: "Frames queued for one client before it is disconnected as a slow consumer.")
    var sendQueueFrames = ConnectionLimits().sendQueueFrames

    @Option(help: "Inputs queued for one meeting before new ops are refused with server_busy.")
    var meetingQueueDepth = ServerConfiguration().meetingQueueDepth

    @Option(help: "WebSocket joins waiting for their token to be checked before more are refused with server_busy.")
    var pendingHellos = ServerConfiguration().pendingHellos

    @Option(help: "Seconds a client WebSocket may stay silent before it gets a ping; silent as long again, it is closed.")
    var webSocketPingSeconds = ServerConfiguration().webSocketPingSeconds

    @Option(help: "Log entries between checkpoints of a meeting.")
    var snapshotEvery = ServerConfiguration().snapshotEveryEntries

    @Option(help: "Lifetime of issued join tokens, in seconds.")
    var tokenLifetime = ServerConfiguration().tokenLifetimeSeconds

    @Option(help: "Require 'Authorization: Bearer KEY' to create meetings and issue tokens (also PARLEY_API_KEY).")
    var apiKey: String?

    @Flag(help: "Use SQLite synchronous=NORMAL: faster, but a power loss (not a crash) may lose the last commits.")
    var noFsync = false

    @Option(help: "bcrypt cost for new password hashes (4...31).")
    var passwordCost = WebSettings().passwordCost

    @Option(help: "Failed sign-ins in a row that lock an account.")
    var maxFailedSignIns = WebSettings().maxFailedSignIns

    @Option(help: "How long a locked account stays locked, in seconds.")
    var lockoutSeconds = WebSettings().lockoutSeconds

    @Flag(help: "Mark cookies Secure (when clients reach Parley over HTTPS).")
    var secureCookies = false

    @Option(help: "Largest document upload, in bytes.")
    var maxUploadBytes = WebSettings().maxUploadBytes

    @Option(help: "Most pages an uploaded PDF may have.")
    var maxDocumentPages = WebSettings().maxDocumentPages

    @Option(help: "Time limit for converting one document, per converter, in seconds.")
    var converterTimeout = WebSettings().converterTimeoutSeconds

    @Option(help: "Memory limit of a document converter process, in MiB.")
    var converterMemoryMib = WebSettings().converterMemoryMiB

    @Flag(help: "Convert documents without the sandbox (bubblewrap) when it cannot run here; otherwise uploads are then refused.")
    var allowUnsandboxedConversion = false

    @Option(help: ArgumentHelp("With --single: serve the metrics (Prometheus text format) at this path on the client port; 'off' serves none. A zone configures its own (the configuration's metrics section).", valueName: "path"))
    var metricsPath = "/metrics"

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
        guard maxFrameBytes >= 1024 else { throw ValidationError("--max-frame-bytes must be at least 1024") }
        guard framesPerSecond > 0, burst > 0 else { throw ValidationError("--frames-per-second and --burst must be positive") }
        guard sendQueueFrames >= 16 else { throw ValidationError("--send-queue-frames must be at least 16") }
        guard snapshotEvery > 0 else { throw ValidationError("--snapshot-every must be positive") }
        guard pendingHellos > 0, webSocketPingSeconds > 0 else {
            throw ValidationError("--pending-hellos and --web-socket-ping-seconds must be positive")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level '\(logLevel)'") }
        _ = try parley.logFormat(logFormat)
        let problems = web.problems()
        guard problems.isEmpty else { throw ValidationError(problems.joined(separator: "; ")) }
    }

    /// TLS for clients from `--tls-cert` and `--tls-key`, as absolute paths: a zone's
    /// processes read them from their own working directory.
    var clientTLS: ServerTLS? {
        guard let tlsCert, let tlsKey else { return nil }
        let absolute = { (path: String) in URL(fileURLWithPath: path).standardizedFileURL.path }
        return ServerTLS(certificatePath: absolute(tlsCert), keyPath: absolute(tlsKey))
    }

    /// The web zone's settings for `--single` (a zone reads them from its configuration).
    var web: WebSettings {
        var web = WebSettings()
        web.passwordCost = passwordCost
        web.maxFailedSignIns = maxFailedSignIns
        web.lockoutSeconds = lockoutSeconds
        web.secureCookies = secureCookies
        web.maxUploadBytes = maxUploadBytes
        web.maxDocumentPages = maxDocumentPages
        web.converterTimeoutSeconds = converterTimeout
        web.converterMemoryMiB = converterMemoryMib
        web.allowUnsandboxedConversion = allowUnsandboxedConversion
        return web
    }

    func run() async throws {
        guard single else {
            var zone = try ZoneConfiguration.load(from: config, testFaultsEnabled: enableTestFaults)
            zone.host = host
            if let port { zone.publicPort = port }
            if let clientTLS { zone.tls = .init(certificate: clientTLS.certificatePath, key: clientTLS.keyPath) }
            if let logFormat { zone.logs.format = logFormat }
            let problems = zone.problems(testFaultsEnabled: enableTestFaults)
            guard problems.isEmpty else { throw ConfigurationProblems(source: "given", problems: problems) }
            bootstrapLogging(level: logLevel, format: try parley.logFormat(nil, configured: zone.logs.format))
            try await ZoneCommand.runZone(zone, dataDirectory: dataDirectory, store: store, machine: machine, portFile: portFile)
            return
        }
        bootstrapLogging(level: logLevel, format: try parley.logFormat(logFormat))
        let logger = Logger(label: "parley")
        var configuration = ServerConfiguration(
            host: host, port: port ?? 8080, dataDirectory: dataDirectory,
            limits: ConnectionLimits(maxFrameBytes: maxFrameBytes, framesPerSecond: framesPerSecond, burst: burst,
                                     sendQueueFrames: sendQueueFrames))
        configuration.meetingQueueDepth = meetingQueueDepth
        configuration.pendingHellos = pendingHellos
        configuration.webSocketPingSeconds = webSocketPingSeconds
        configuration.snapshotEveryEntries = snapshotEvery
        configuration.tokenLifetimeSeconds = tokenLifetime
        configuration.apiKey = apiKey ?? ProcessInfo.processInfo.environment["PARLEY_API_KEY"]
        configuration.fsyncEveryCommit = !noFsync
        configuration.store = try StoreLocation.resolve(flag: store, environment: ProcessInfo.processInfo.environment)
        configuration.tls = clientTLS
        if metricsPath != "off" {
            guard metricsPath.hasPrefix("/") else { throw ValidationError("--metrics-path must start with / (or be 'off')") }
            let metrics = ProcessMetrics.prometheus()
            // Libraries record through the process-wide factory (Hummingbird's HTTP metrics).
            MetricsSystem.bootstrap(metrics.factory)
            configuration.metrics = ServerMetrics(metrics)
            configuration.metricsPath = metricsPath
        }
        let portFile = portFile
        try await ParleyServer(configuration: configuration, frontRoutes: WebZone.routes(settings: web),
                               logger: logger).run { port in
            if let portFile { writeWhole("\(port)\n", to: portFile) }
        }
    }
}
