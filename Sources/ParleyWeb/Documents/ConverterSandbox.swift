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
/// - a private, empty `/tmp` and `/dev/shm`, each at most ``tmpfsBytes`` (they take memory,
///   not disk), a read-only `/dev`, and only the system trees the tools need, read-only;
/// - nothing of the data directory (the token signing key is `DATA/keys`), no
///   capabilities, and an unprivileged user of its own;
/// - its own session and PID namespace, ended with the server's process that runs it.
///   (`--die-with-parent` ties bwrap to the thread that spawned it; swift-subprocess spawns
///   from one worker thread that lives as long as the server.)
///
/// Pure: ``commandLine(executable:arguments:job:)`` turns a converter command into the
/// `bwrap` command line. ``ConverterRunner`` still sets the limits (`ulimit`) around it and
/// bounds what the converter writes to its output directory.
struct ConverterSandbox: Equatable, Sendable {
    /// A system path as this machine has it. On a merged-`/usr` system `/lib` is a link to
    /// `usr/lib`: binding it would mount `/usr/lib` a second time, at `/lib`, where a tmpfs
    /// hiding a data directory under `/usr/lib` does not reach. So a link is recreated as the
    /// same link, and everything is reached through the one bound tree.
    enum SystemPath: Equatable, Sendable {
        /// Bound read-only at the same place.
        case tree(String)
        /// Recreated inside as a symbolic link to `target`, exactly as the host has it.
        case link(String, target: String)

        var path: String {
            switch self {
            case .tree(let path), .link(let path, _): path
            }
        }
    }

    /// `bwrap` itself, an absolute path.
    var bubblewrap: String
    /// Trees that must stay invisible however the system trees are laid out: the data
    /// directory, resolved. One that lies inside a system tree is covered by an empty,
    /// read-only tmpfs.
    var hiddenPaths: [String]
    /// Libraries and the tools live under `/usr` (or `/lib*` and `/bin` where those are not
    /// links into it); poppler reads its font configuration and cache. Trees missing on this
    /// machine are skipped, except the first.
    var systemPaths: [SystemPath]
    /// The most a converter may keep in its private `/tmp`, and in `/dev/shm`.
    var tmpfsBytes: Int

    /// The system paths a converter needs, before looking at how this machine lays them out
    /// (``layout(_:readLink:)``).
    static let systemTrees = ["/usr", "/bin", "/lib", "/lib64", "/etc/ld.so.cache", "/etc/fonts", "/var/cache/fontconfig"]

    /// Where a converter finds the upload.
    static let inputPath = "/in/document.pdf"
    /// The only place a converter can write, besides its private `/tmp` and `/dev/shm`.
    static let outputDirectory = "/out"
    /// The user a converter runs as: nobody, in a user namespace of its own.
    static let userID = 65_534
    /// The size of the tmpfs that covers a hidden path: the smallest there is. It is
    /// read-only besides.
    static let coverBytes = 4_096

    init(bubblewrap: String, hiddenPaths: [String], systemPaths: [SystemPath] = systemTrees.map { .tree($0) },
         tmpfsBytes: Int) {
        self.bubblewrap = bubblewrap
        self.hiddenPaths = hiddenPaths
        self.systemPaths = systemPaths
        self.tmpfsBytes = tmpfsBytes
    }

    /// `paths` as this machine has them: each a tree, or a link when `readLink` (the host's
    /// `readlink`, nil for anything but a symbolic link) says it is one.
    static func layout(_ paths: [String], readLink: (String) -> String?) -> [SystemPath] {
        paths.map { path in readLink(path).map { .link(path, target: $0) } ?? .tree(path) }
    }

    /// The paths bound read-only, in order.
    var trees: [String] {
        systemPaths.compactMap { if case .tree(let path) = $0 { path } else { nil } }
    }

    /// The job as the converter sees it from inside.
    func inside(_ job: PDFConverter.Job) -> PDFConverter.Job {
        var inside = job
        inside.source = Self.inputPath
        inside.outputDirectory = Self.outputDirectory
        return inside
    }

    /// The command line that runs `executable arguments` (arguments made for
    /// ``inside(_:)``) confined to `job`'s source and output directory. The job's paths are
    /// absolute (bwrap would resolve relative ones against whatever directory it starts in).
    func commandLine(executable: String, arguments: [String], job: PDFConverter.Job) -> [String] {
        var line = [bubblewrap,
                    "--unshare-all", "--unshare-user", "--uid", "\(Self.userID)", "--gid", "\(Self.userID)",
                    "--cap-drop", "ALL", "--die-with-parent", "--new-session",
                    "--proc", "/proc",
                    // bwrap's /dev is a tmpfs of half the memory, writable, with /dev/shm a
                    // directory on it: /dev/shm gets a bounded tmpfs of its own, and the rest
                    // of /dev is made read-only (the device nodes are mounts of their own and
                    // keep working).
                    "--dev", "/dev", "--size", "\(tmpfsBytes)", "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
                    // First, so that a system tree under /tmp (a test's) is bound over it.
                    "--size", "\(tmpfsBytes)", "--tmpfs", "/tmp"]
        for (index, system) in systemPaths.enumerated() {
            switch system {
            case .tree(let path): line += [index == 0 ? "--ro-bind" : "--ro-bind-try", path, path]
            case .link(let path, let target): line += ["--symlink", target, path]
            }
        }
        // A tool outside the system trees (a test's script) is bound alone, read-only.
        if !Self.isInside(executable, any: trees) { line += ["--ro-bind", executable, executable] }
        // After the system binds, so it covers what they show; through a recreated link the
        // same tmpfs is reached.
        for hidden in hiddenPaths where Self.isInside(hidden, any: trees) {
            line += ["--size", "\(Self.coverBytes)", "--tmpfs", hidden, "--remount-ro", hidden]
        }
        line += ["--ro-bind", job.source, Self.inputPath,
                 "--bind", job.outputDirectory, Self.outputDirectory,
                 "--chdir", Self.outputDirectory, "--setenv", "HOME", "/tmp",
                 "--", executable]
        return line + arguments
    }

    /// Every path at which a converter could reach `hidden`: itself, and the same place
    /// through each link of `layout` whose target holds it (`/lib/x` for `/usr/lib/x` when
    /// `/lib` links to `usr/lib`). The probe checks them all, with the links the host has.
    static func aliases(of hidden: String, through layout: [SystemPath]) -> [String] {
        var all = [hidden]
        for case .link(let path, let target) in layout {
            let resolved = Self.resolve(target, from: Self.parent(of: path))
            guard resolved != "/", Self.isInside(hidden, any: [resolved]) else { continue }
            all.append(path + hidden.dropFirst(resolved.count))
        }
        return all
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

    /// A link's target as an absolute path, from the directory that holds the link: `.`
    /// and `..` are taken lexically (the directories named are the host's real ones).
    static func resolve(_ target: String, from directory: String) -> String {
        var parts: [Substring] = []
        for part in ((target.hasPrefix("/") ? "" : directory + "/") + target).split(separator: "/") {
            switch part {
            case ".": continue
            case "..": _ = parts.popLast()
            default: parts.append(part)
            }
        }
        return "/" + parts.joined(separator: "/")
    }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }

    /// The host's `readlink` for a symbolic link; nil for anything else (or nothing).
    static func hostReadLink(_ path: String) -> String? {
        var info = stat()
        guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFLNK else { return nil }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
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

    /// The lines that say which converters run where they will run (``ConverterCheck``):
    /// one per converter, and an error when none does, since every PDF then fails.
    func converterLog(_ checks: [ConverterCheck]) -> [(level: Logger.Level, message: String)] {
        let place = sandbox == nil ? "unconfined" : "in the sandbox"
        var lines: [(level: Logger.Level, message: String)] = checks.map { check in
            switch check.outcome {
            case .works(let versions):
                (.info, "document converter \(check.converter) runs \(place): \(versions.joined(separator: "; "))")
            case .fails(let why):
                (.warning, "document converter \(check.converter) does not run \(place): \(why); PDFs it would convert go to the next converter")
            }
        }
        if !checks.isEmpty, !checks.contains(where: { if case .works = $0.outcome { true } else { false } }) {
            lines.append((.error, "no document converter runs \(place): every PDF upload will fail (conversion_failed) until one does; "
                + "images are still accepted"))
        }
        return lines
    }
}

/// What the startup check found for one converter: each of its tools' version command
/// (``PDFConverter/checks``) run the way the converter will run.
struct ConverterCheck: Equatable, Sendable {
    enum Outcome: Equatable, Sendable {
        /// The first line each tool printed.
        case works([String])
        /// Why the first tool that failed did.
        case fails(String)
    }

    var converter: String
    var outcome: Outcome
}

extension ConverterIsolation {
    /// Finds out whether the sandbox works for a server on `dataDirectory`, looking tools up
    /// on `searchPath`.
    typealias Probe = @Sendable (_ settings: WebSettings, _ dataDirectory: String, _ searchPath: String?) async
        -> Result<ConverterSandbox, SandboxUnavailable>

    /// The real probe: ``ConverterSandbox/probe(searchPath:hiddenPaths:scratch:limits:systemPaths:)``
    /// in a scratch directory under the data directory's `documents/.incoming`.
    static let probe: Probe = { settings, dataDirectory, searchPath in
        let store = DocumentStore(dataDirectory: dataDirectory)
        let scratch: String
        do {
            scratch = try store.makeIncoming()
        } catch {
            return .failure(SandboxUnavailable("cannot make a directory for the probe under \(store.incomingRoot): \(error)"))
        }
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        // Resolved: a link on the way would leave the real place uncovered.
        let hidden = URL(fileURLWithPath: DocumentStore.absolute(dataDirectory)).resolvingSymlinksInPath().path
        return await ConverterSandbox.probe(searchPath: searchPath, hiddenPaths: [hidden], scratch: scratch,
                                            limits: probeLimits(settings))
    }

    /// The converters' limits, with a short wall clock: a probe or a version command that
    /// takes seconds has failed.
    static func probeLimits(_ settings: WebSettings) -> ConverterLimits {
        var limits = ConverterLimits(settings: settings)
        limits.timeout = min(limits.timeout, .seconds(10))
        return limits
    }

    /// Probes once, decides with `web.allowUnsandboxedConversion`, and says so in the log;
    /// then runs each converter's version commands the way conversions will run, and logs
    /// which converters work (not when uploads are refused anyway).
    static func startup(settings: WebSettings, dataDirectory: String, logger: Logger,
                        searchPath: String? = ProcessInfo.processInfo.environment["PATH"], probe: Probe,
                        converters: [PDFConverter] = PDFConverter.standard) async -> ConverterIsolation {
        let isolation = decide(probe: await probe(settings, dataDirectory, searchPath),
                               allowUnsandboxed: settings.allowUnsandboxedConversion)
        let (level, message) = isolation.startupLog
        logger.log(level: level, "\(message)")
        if case .refused = isolation { return isolation }
        let store = DocumentStore(dataDirectory: dataDirectory)
        let checks: [ConverterCheck]
        do {
            let scratch = try store.makeIncoming()
            defer { try? FileManager.default.removeItem(atPath: scratch) }
            checks = await ConverterCheck.run(converters, runner: ConverterRunner(searchPath: searchPath, sandbox: isolation.sandbox),
                                              scratch: scratch, limits: probeLimits(settings))
        } catch {
            logger.warning("cannot check the document converters: no directory under \(store.incomingRoot): \(error)")
            return isolation
        }
        for (level, message) in isolation.converterLog(checks) {
            logger.log(level: level, "\(message)")
        }
        return isolation
    }
}

extension ConverterCheck {
    /// Runs every converter's version commands with `runner`, in `scratch` (the caller's,
    /// used and emptied). A converter without version commands is not reported.
    static func run(_ converters: [PDFConverter], runner: ConverterRunner, scratch: String,
                    limits: ConverterLimits) async -> [ConverterCheck] {
        let job: PDFConverter.Job
        do {
            job = try .standIn(in: scratch)
        } catch {
            return converters.map { ConverterCheck(converter: $0.name, outcome: .fails("cannot prepare the check in \(scratch): \(error)")) }
        }
        var checks: [ConverterCheck] = []
        for converter in converters where !converter.checks.isEmpty {
            var versions: [String] = []
            var failure: String?
            for (index, command) in converter.checks.enumerated() {
                let run = await runner.run(command, job: job, limits: limits, deadline: .now + limits.timeout,
                                           logPrefix: scratch + "/\(converter.name)-\(index)")
                guard run.end == .exited(0) else {
                    failure = ConverterRunner.describe(run, tool: command.tool, package: converter.package, limits: limits)
                    break
                }
                // pdfinfo and mutool print their version on standard error.
                let printed = [run.output, run.errorTail].joined(separator: "\n")
                versions.append(printed.split(whereSeparator: \.isNewline).first.map(String.init) ?? "\(command.tool) ran")
            }
            checks.append(ConverterCheck(converter: converter.name, outcome: failure.map { .fails($0) } ?? .works(versions)))
        }
        return checks
    }
}

extension ConverterSandbox {
    /// Whether the sandbox works here: finds `bwrap`, lays out `systemPaths` as this machine
    /// has them, and ``verify(searchPath:scratch:limits:)``s the result. bwrap fails where user
    /// namespaces are not allowed (some containers). `scratch` is a directory of the
    /// caller's, used and emptied.
    static func probe(searchPath: String?, hiddenPaths: [String], scratch: String, limits: ConverterLimits,
                      systemPaths: [String] = systemTrees) async -> Result<ConverterSandbox, SandboxUnavailable> {
        guard let bubblewrap = ToolLocator.locate("bwrap", searchPath: searchPath, isExecutable: { access($0, X_OK) == 0 })
                ?? ToolLocator.locate("/usr/bin/bwrap", searchPath: nil, isExecutable: { access($0, X_OK) == 0 })
        else { return .failure(SandboxUnavailable("bwrap not found; install bubblewrap")) }
        let sandbox = ConverterSandbox(bubblewrap: bubblewrap, hiddenPaths: hiddenPaths,
                                       systemPaths: layout(systemPaths, readLink: hostReadLink), tmpfsBytes: limits.fileBytes)
        return await sandbox.verify(searchPath: searchPath, scratch: scratch, limits: limits).map { sandbox }
    }

    /// Runs a command in this sandbox the way a converter runs, checking that the input is
    /// readable, the output writable, and every hidden path absent or empty through each of
    /// its ``aliases(of:through:)``. `scratch` is a directory of the caller's, used and emptied.
    func verify(searchPath: String?, scratch: String, limits: ConverterLimits) async -> Result<Void, SandboxUnavailable> {
        let job: PDFConverter.Job
        do {
            job = try .standIn(in: scratch)
        } catch {
            return .failure(SandboxUnavailable("cannot prepare the probe in \(scratch): \(error)"))
        }
        // The host's links, not this sandbox's layout: a layout that bound a link as a tree
        // would show the hidden path at the link, and that is what must be caught.
        let links = Self.layout(systemPaths.map(\.path), readLink: Self.hostReadLink)
        let hidden = hiddenPaths.flatMap { Self.aliases(of: $0, through: links) }
        // `sh -c script probe SOURCE OUTPUT HIDDEN…`
        let check = PDFConverter.Command(tool: "/bin/sh") { job in
            ["-c", #"test -r "$1" && test -w "$2" || exit 3; out="$2"; shift 2; for p; do [ -z "$(ls -A "$p" 2>/dev/null)" ] || exit 4; done; : > "$out/probe""#,
             "probe", job.source, job.outputDirectory] + hidden
        }
        let runner = ConverterRunner(searchPath: searchPath, sandbox: self)
        let run = await runner.run(check, job: job, limits: limits, deadline: .now + limits.timeout, logPrefix: scratch + "/probe")
        let wrote = FileManager.default.fileExists(atPath: job.outputDirectory + "/probe")
        try? FileManager.default.removeItem(atPath: job.outputDirectory)
        try? FileManager.default.removeItem(atPath: job.source)
        switch run.end {
        case .exited(0) where wrote:
            return .success(())
        case .exited(3):
            return .failure(SandboxUnavailable("\(bubblewrap) ran, but the input was not readable or the output not writable inside"))
        case .exited(4):
            return .failure(SandboxUnavailable("\(bubblewrap) ran, but the data directory was visible inside (at one of \(hidden.joined(separator: ", ")))"))
        default:
            return .failure(SandboxUnavailable(ConverterRunner.describe(run, tool: bubblewrap, package: "bubblewrap", limits: limits)))
        }
    }
}

extension PDFConverter.Job {
    /// A job for a run that checks rather than converts: a stand-in input (`%PDF-`) and an
    /// empty output directory, in `scratch`.
    static func standIn(in scratch: String) throws -> PDFConverter.Job {
        let job = PDFConverter.Job(source: scratch + "/input", outputDirectory: scratch + "/output", pages: 0, pixels: 0)
        try Data("%PDF-".utf8).write(to: URL(fileURLWithPath: job.source))
        try FileManager.default.createDirectory(atPath: job.outputDirectory, withIntermediateDirectories: true)
        return job
    }
}
