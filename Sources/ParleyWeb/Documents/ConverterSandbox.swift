import FoundationEssentials
import Logging
import ParleyZone

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How a converter process is confined: bubblewrap (`bwrap`), as data. A converter parses
/// hostile input, so it runs with
/// - no network (a network namespace of its own: its loopback is not the server's);
/// - the uploaded PDF alone, read-only, at ``inputPath``, and one writable directory,
///   its output, at ``outputDirectory``;
/// - a private, empty `/tmp`, and only the system trees the tools need, read-only;
/// - nothing of the data directory (the token signing key is `DATA/keys`), no
///   capabilities, and an unprivileged user of its own;
/// - its own session and PID namespace, ended with the server's process that runs it.
///   (`--die-with-parent` ties bwrap to the thread that spawned it; swift-subprocess spawns
///   from one worker thread that lives as long as the server.)
///
/// Pure: ``commandLine(executable:arguments:job:)`` turns a converter command into the
/// `bwrap` command line. ``ConverterRunner`` still sets the limits (`ulimit`) around it.
struct ConverterSandbox: Equatable, Sendable {
    /// `bwrap` itself, an absolute path.
    var bubblewrap: String
    /// Trees that must stay invisible however the system trees are laid out: the data
    /// directory. One that lies inside a system tree is covered by an empty tmpfs.
    var hiddenPaths: [String]
    /// System paths bound read-only at the same place; those missing on this machine are
    /// skipped. Libraries and the tools live under `/usr` (or `/lib*` and `/bin` where those
    /// are not links into it); poppler reads its font configuration and cache.
    var systemPaths = ["/usr", "/bin", "/lib", "/lib64", "/etc/ld.so.cache", "/etc/fonts", "/var/cache/fontconfig"]

    /// Where a converter finds the upload.
    static let inputPath = "/in/document.pdf"
    /// The only place a converter can write, besides its private `/tmp`.
    static let outputDirectory = "/out"
    /// The user a converter runs as: nobody, in a user namespace of its own.
    static let userID = 65_534

    /// The job as the converter sees it from inside.
    func inside(_ job: PDFConverter.Job) -> PDFConverter.Job {
        var inside = job
        inside.source = Self.inputPath
        inside.outputDirectory = Self.outputDirectory
        return inside
    }

    /// The command line that runs `executable arguments` (arguments made for
    /// ``inside(_:)``) confined to `job`'s source and output directory.
    func commandLine(executable: String, arguments: [String], job: PDFConverter.Job) -> [String] {
        var line = [bubblewrap,
                    "--unshare-all", "--unshare-user", "--uid", "\(Self.userID)", "--gid", "\(Self.userID)",
                    "--cap-drop", "ALL", "--die-with-parent", "--new-session",
                    "--ro-bind", systemPaths[0], systemPaths[0]]
        for path in systemPaths.dropFirst() { line += ["--ro-bind-try", path, path] }
        line += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        // A tool outside the system trees (a test's script) is bound alone, read-only.
        if !Self.isInside(executable, any: systemPaths) { line += ["--ro-bind", executable, executable] }
        for hidden in hiddenPaths where Self.isInside(hidden, any: systemPaths) {
            line += ["--tmpfs", hidden]
        }
        line += ["--ro-bind", job.source, Self.inputPath,
                 "--bind", job.outputDirectory, Self.outputDirectory,
                 "--chdir", Self.outputDirectory, "--setenv", "HOME", "/tmp",
                 "--", executable]
        return line + arguments
    }

    /// bwrap ends with status 128 + N when the converter was ended by signal N; the signal
    /// says what happened (SIGXCPU: the CPU limit, SIGSEGV: a crash), so it is put back.
    static func end(_ end: ConverterRunner.Run.End) -> ConverterRunner.Run.End {
        if case .exited(let code) = end, (129...(128 + 64)).contains(code) { return .signaled(code - 128) }
        return end
    }

    /// Whether `path` is `tree` or lies under it, for each of `trees`.
    static func isInside(_ path: String, any trees: [String]) -> Bool {
        trees.contains { tree in path == tree || path.hasPrefix(tree.hasSuffix("/") ? tree : tree + "/") }
    }
}

/// Why the sandbox cannot run here, in words for the operator.
struct SandboxUnavailable: Error, Equatable, Sendable, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// How this server runs its converters, decided once at startup from the probe and
/// `web.allowUnsandboxedConversion`.
enum ConverterIsolation: Equatable, Sendable {
    case sandboxed(ConverterSandbox)
    /// The sandbox cannot run, and converting without it is not allowed: every upload is
    /// refused with `converter_sandbox_unavailable`.
    case refused(SandboxUnavailable)
    /// The sandbox cannot run (or a test does without it), and the operator allowed
    /// converting without it.
    case unconfined(SandboxUnavailable)

    static func decide(probe: Result<ConverterSandbox, SandboxUnavailable>, allowUnsandboxed: Bool) -> ConverterIsolation {
        switch probe {
        case .success(let sandbox): .sandboxed(sandbox)
        case .failure(let why): allowUnsandboxed ? .unconfined(why) : .refused(why)
        }
    }

    /// The sandbox the runner uses; nil when converters run unconfined (or not at all).
    var sandbox: ConverterSandbox? {
        if case .sandboxed(let sandbox) = self { return sandbox }
        return nil
    }

    /// The line the server logs at startup: the operator must see an unsandboxed or
    /// refusing server at once.
    var startupLog: (level: Logger.Level, message: String) {
        switch self {
        case .sandboxed(let sandbox):
            (.info, "document converters run sandboxed by \(sandbox.bubblewrap): no network, only their own input and output")
        case .refused(let why):
            (.error, "the document converter sandbox is unavailable: \(why); document uploads are refused "
                + "(converter_sandbox_unavailable) until it works; to convert without it, set web.allowUnsandboxedConversion "
                + "(--allow-unsandboxed-conversion with --single)")
        case .unconfined(let why):
            (.warning, "the document converter sandbox is unavailable: \(why); converters run WITHOUT it, "
                + "as web.allowUnsandboxedConversion allows: a hostile PDF that exploits a converter can read what this server can")
        }
    }
}

extension ConverterIsolation {
    /// Finds out whether the sandbox works for a server on `dataDirectory`, looking tools up
    /// on `searchPath`.
    typealias Probe = @Sendable (_ settings: WebSettings, _ dataDirectory: String, _ searchPath: String?) async
        -> Result<ConverterSandbox, SandboxUnavailable>

    /// The real probe: ``ConverterSandbox/probe(searchPath:hiddenPaths:scratch:limits:)`` in a
    /// scratch directory under the data directory's `documents/.incoming`.
    static let probe: Probe = { settings, dataDirectory, searchPath in
        let store = DocumentStore(dataDirectory: dataDirectory)
        let scratch: String
        do {
            scratch = try store.makeIncoming()
        } catch {
            return .failure(SandboxUnavailable("cannot make a directory for the probe under \(store.incomingRoot): \(error)"))
        }
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var limits = ConverterLimits(settings: settings)
        limits.timeout = min(limits.timeout, .seconds(10))
        let absolute = URL(fileURLWithPath: dataDirectory).resolvingSymlinksInPath().path
        return await ConverterSandbox.probe(searchPath: searchPath, hiddenPaths: [absolute], scratch: scratch, limits: limits)
    }

    /// Probes once, decides with `web.allowUnsandboxedConversion`, and says so in the log.
    static func startup(settings: WebSettings, dataDirectory: String, logger: Logger,
                        searchPath: String? = ProcessInfo.processInfo.environment["PATH"], probe: Probe) async -> ConverterIsolation {
        let isolation = decide(probe: await probe(settings, dataDirectory, searchPath),
                               allowUnsandboxed: settings.allowUnsandboxedConversion)
        let (level, message) = isolation.startupLog
        logger.log(level: level, "\(message)")
        return isolation
    }
}

extension ConverterSandbox {
    /// Whether the sandbox works here: finds `bwrap` and runs a command in it the way a
    /// converter runs, checking that the input is readable, the output writable, and
    /// `hiddenPaths` absent or empty. bwrap fails where user namespaces are not allowed (some
    /// containers). `scratch` is a directory of the caller's, used and emptied.
    static func probe(searchPath: String?, hiddenPaths: [String], scratch: String,
                      limits: ConverterLimits) async -> Result<ConverterSandbox, SandboxUnavailable> {
        guard let bubblewrap = ToolLocator.locate("bwrap", searchPath: searchPath, isExecutable: { access($0, X_OK) == 0 })
                ?? ToolLocator.locate("/usr/bin/bwrap", searchPath: nil, isExecutable: { access($0, X_OK) == 0 })
        else { return .failure(SandboxUnavailable("bwrap not found; install bubblewrap")) }
        let sandbox = ConverterSandbox(bubblewrap: bubblewrap, hiddenPaths: hiddenPaths)
        let job = PDFConverter.Job(source: scratch + "/input", outputDirectory: scratch + "/output", pages: 0, pixels: 0)
        do {
            try Data("%PDF-".utf8).write(to: URL(fileURLWithPath: job.source))
            try FileManager.default.createDirectory(atPath: job.outputDirectory, withIntermediateDirectories: true)
        } catch {
            return .failure(SandboxUnavailable("cannot prepare the probe in \(scratch): \(error)"))
        }
        // `sh -c script probe SOURCE OUTPUT HIDDEN…`
        let check = PDFConverter.Command(tool: "/bin/sh") { job in
            ["-c", #"test -r "$1" && test -w "$2" || exit 3; out="$2"; shift 2; for p; do [ -z "$(ls -A "$p" 2>/dev/null)" ] || exit 4; done; : > "$out/probe""#,
             "probe", job.source, job.outputDirectory] + hiddenPaths
        }
        let runner = ConverterRunner(searchPath: searchPath, sandbox: sandbox)
        let run = await runner.run(check, job: job, limits: limits, deadline: .now + limits.timeout, logPrefix: scratch + "/probe")
        let wrote = FileManager.default.fileExists(atPath: job.outputDirectory + "/probe")
        switch run.end {
        case .exited(0) where wrote:
            return .success(sandbox)
        case .exited(3):
            return .failure(SandboxUnavailable("\(bubblewrap) ran, but the input was not readable or the output not writable inside"))
        case .exited(4):
            return .failure(SandboxUnavailable("\(bubblewrap) ran, but the data directory was visible inside"))
        default:
            return .failure(SandboxUnavailable(ConverterRunner.describe(run, tool: bubblewrap, package: "bubblewrap", limits: limits)))
        }
    }
}
