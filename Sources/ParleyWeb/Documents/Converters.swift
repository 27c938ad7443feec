import FoundationEssentials
import Logging
import ParleyCore
import ParleyZone
import Subprocess
import SystemPackage

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One way to turn a PDF into page images: a page counter and a renderer, two external
/// programs. The list of converters, in the order they are tried, is data
/// (``standard``); tests put a crashing or hanging one in front.
///
/// A counter prints a line `Pages: N` on standard output. A renderer writes
/// `outputDirectory/p-N.png` for pages 1...`pages` (N may be zero-padded), each fitting
/// in `pixels` × `pixels`.
struct PDFConverter: Sendable {
    /// What a command is given.
    struct Job: Sendable {
        var source: String
        var outputDirectory: String
        var pages: Int
        var pixels: Int
    }

    struct Command: Sendable {
        /// A program name looked up on `PATH`, or an absolute path.
        var tool: String
        var arguments: @Sendable (Job) -> [String]
    }

    var name: String
    /// What to install when a tool is missing, for the log line.
    var package: String
    var count: Command
    var render: Command
    /// Each tool's version command, run at startup the way conversions run, so the log says
    /// whether this converter works there (``ConverterCheck``). None: not checked.
    var checks: [Command] = []

    /// Poppler: `pdfinfo`, then `pdftoppm`, which fits each page in `pixels` on its longer side.
    static let poppler = PDFConverter(
        name: "poppler", package: "poppler-utils",
        count: Command(tool: "pdfinfo") { [$0.source] },
        render: Command(tool: "pdftoppm") { job in
            ["-png", "-scale-to", "\(job.pixels)", "-f", "1", "-l", "\(job.pages)", job.source, job.outputDirectory + "/p"]
        },
        checks: [Command(tool: "pdfinfo") { _ in ["-v"] }, Command(tool: "pdftoppm") { _ in ["-v"] }])

    /// MuPDF, an independent implementation: `mutool info` (page 1 only, so it stays cheap),
    /// then `mutool draw`, which fits each page in `pixels` × `pixels` keeping its aspect.
    static let mupdf = PDFConverter(
        name: "mupdf", package: "mupdf-tools",
        count: Command(tool: "mutool") { ["info", $0.source, "1"] },
        render: Command(tool: "mutool") { job in
            ["draw", "-q", "-F", "png", "-w", "\(job.pixels)", "-h", "\(job.pixels)",
             "-o", job.outputDirectory + "/p-%d.png", job.source, "1-\(job.pages)"]
        },
        checks: [Command(tool: "mutool") { _ in ["-v"] }])

    static let standard = [poppler, mupdf]
}

/// The limits every converter process runs under. Time is wall-clock, from the start of a
/// converter's count to the end of its render; the CPU limit (a little more) is a backstop
/// that still holds if this server dies and leaves the process orphaned.
struct ConverterLimits: Sendable {
    var timeout: Duration
    var memoryMiB: Int
    /// Largest file a converter may write (each page image, its output and error logs); also
    /// the size of its private `/tmp` and `/dev/shm` in the sandbox.
    var fileBytes: Int
    /// The most one run may put in its output directory, in bytes and in names (files and
    /// directories at any depth); past either it is killed. `ulimit -f` bounds each file,
    /// not how many there are.
    var outputBytes: Int
    var outputEntries: Int

    init(settings: WebSettings) {
        timeout = .seconds(settings.converterTimeoutSeconds)
        memoryMiB = settings.converterMemoryMiB
        // A page of noise at pageImagePixels², 4 bytes a pixel, is the worst a PNG gets.
        fileBytes = max(16 << 20, settings.pageImagePixels * settings.pageImagePixels * 4 + (1 << 20))
        // Every page at its largest, but never more than a meeting may keep: pages past
        // its quota would be refused anyway. A few names spare for a renderer's own.
        let pages = max(1, min(settings.maxDocumentPages, ModelLimits.pagesPerDocument))
        outputBytes = min(pages * fileBytes, max(settings.meetingDocumentBytes, fileBytes))
        outputEntries = pages + Self.spareOutputEntries
    }

    static let spareOutputEntries = 16
}

/// Runs one converter program in its own process group under ``ConverterLimits``: address
/// space (`ulimit -v`), CPU time, file size, no core dumps, and a wall-clock deadline after
/// which the whole group is killed (SIGKILL). The limits are set by `/bin/sh`, which then
/// `exec`s the program, so the pid that is watched is the converter's own; or, with a
/// ``ConverterSandbox``, `exec`s bwrap, which the limits bind too. Killing bwrap ends
/// everything inside (`--die-with-parent`, and a PID namespace dies with its first
/// process), but by the kernel's hand, a moment after bwrap itself is reaped: a converter
/// freeing a lot of memory may outlive the run by a few hundred milliseconds.
///
/// Always returns (never throws): every way a run can end is a ``Run/End`` the caller reports.
struct ConverterRunner: Sendable {
    /// `PATH` to look tools up on; nil for the default.
    var searchPath: String?
    /// Where converters run confined; nil: unconfined.
    var sandbox: ConverterSandbox?

    init(searchPath: String?, sandbox: ConverterSandbox? = nil) {
        self.searchPath = searchPath
        self.sandbox = sandbox
    }

    struct Run: Sendable {
        enum End: Equatable, Sendable {
            case exited(Int32)
            case signaled(Int32)
            /// Killed at the deadline.
            case timedOut
            /// Killed for putting more than ``ConverterLimits/outputBytes`` or
            /// ``ConverterLimits/outputEntries`` in its output directory.
            case wroteTooMuch(OutputUsage)
            /// The tool is not on `PATH`.
            case notFound(String)
            case couldNotStart(String)
        }

        var end: End
        /// Standard output, at most 64 KiB of it.
        var output: String
        /// The end of standard error, for the log.
        var errorTail: String
    }

    static let wrapperScript = """
        ulimit -c 0; \
        ulimit -v "$1" && ulimit -t "$2" && ulimit -f "$3" || { echo "parley: cannot set the converter limits" >&2; exit 125; }; \
        shift 3; exec "$@"
        """

    /// How often a running converter's output directory is measured against its budget. What
    /// it can write in between is the budget's slack.
    static let outputCheckIntervalMs = 100

    /// Runs `command` on `job`, with standard output and error going to `logPrefix.out` and
    /// `logPrefix.err` (opened here, outside any sandbox). The job's paths and `logPrefix`
    /// are absolute: the converter starts in another directory, and so does bwrap.
    func run(_ command: PDFConverter.Command, job: PDFConverter.Job, limits: ConverterLimits, deadline: ContinuousClock.Instant,
             logPrefix: String) async -> Run {
        for path in [job.source, job.outputDirectory, logPrefix] where !path.hasPrefix("/") {
            return Run(end: .couldNotStart("\(path) is not an absolute path"), output: "", errorTail: "")
        }
        guard let found = ToolLocator.locate(command.tool, searchPath: searchPath, isExecutable: { access($0, X_OK) == 0 })
        else { return Run(end: .notFound(command.tool), output: "", errorTail: "") }
        let commandLine: [String]
        if let sandbox {
            // Resolved: inside, a link may point at a path the sandbox does not show.
            let executable = URL(fileURLWithPath: found).resolvingSymlinksInPath().path
            commandLine = sandbox.commandLine(executable: executable, arguments: command.arguments(sandbox.inside(job)), job: job)
        } else {
            commandLine = [found] + command.arguments(job)
        }
        var run = await run(commandLine, limits: limits, deadline: deadline, logPrefix: logPrefix, outputDirectory: job.outputDirectory)
        if sandbox != nil { run.end = ConverterSandbox.end(run.end) }
        return run
    }

    private func run(_ commandLine: [String], limits: ConverterLimits, deadline: ContinuousClock.Instant,
                     logPrefix: String, outputDirectory: String) async -> Run {
        let outputPath = logPrefix + ".out"
        let errorPath = logPrefix + ".err"
        let output: FileDescriptor
        let error: FileDescriptor
        do {
            output = try FileDescriptor.open(FilePath(outputPath), .writeOnly, options: [.create, .truncate],
                                             permissions: [.ownerReadWrite])
            do {
                error = try FileDescriptor.open(FilePath(errorPath), .writeOnly, options: [.create, .truncate],
                                                permissions: [.ownerReadWrite])
            } catch {
                try? output.close()
                throw error
            }
        } catch {
            return Run(end: .couldNotStart("cannot open its log file: \(error)"), output: "", errorTail: "")
        }

        let cpuSeconds = Int((limits.timeout.components.seconds)) + 2
        var platform = PlatformOptions()
        // Its own process group, so the kill at the deadline reaches anything it started.
        platform.processGroupID = 0
        platform.teardownSequence = [.send(signal: .kill, toProcessGroup: true, allowedDurationToNextStep: .seconds(1))]
        // A converter sees none of this server's environment (it may hold secrets), and
        // starts in its own work directory.
        let directory = FilePath(logPrefix).removingLastComponent()
        let environment = Environment.custom([
            "PATH": searchPath ?? ToolLocator.defaultSearchPath, "HOME": directory.string, "LC_ALL": "C",
        ])
        let configuration = Configuration(
            executable: .path(FilePath("/bin/sh")),
            arguments: Arguments(["-c", Self.wrapperScript, "parley-converter",
                                  "\(limits.memoryMiB * 1024)", "\(cpuSeconds)", "\((limits.fileBytes + 511) / 512)"]
                                 + commandLine),
            environment: environment,
            workingDirectory: directory,
            platformOptions: platform)

        enum Race: Sendable {
            case exited(TerminationStatus)
            case failedToRun(String)
            case deadline
            case wroteTooMuch(OutputUsage)
            /// The output watcher, stopped because the run ended otherwise.
            case stopped
        }
        let end: Run.End = await withTaskGroup(of: Race.self) { group in
            group.addTask {
                do {
                    let result = try await Subprocess.run(
                        configuration, input: .none,
                        output: .fileDescriptor(output, closeAfterSpawningProcess: true),
                        error: .fileDescriptor(error, closeAfterSpawningProcess: true))
                    return .exited(result.terminationStatus)
                } catch {
                    return .failedToRun("\(error)")
                }
            }
            group.addTask {
                // Returns early if the upload is cancelled (the server stops): that also kills.
                try? await Task.sleep(until: deadline, clock: .continuous)
                return .deadline
            }
            group.addTask {
                // Each file is bounded by `ulimit -f`; their number and total only by this.
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(Self.outputCheckIntervalMs))
                    if Task.isCancelled { break }
                    let usage = ConverterOutput.usage(of: outputDirectory, limits: limits)
                    if !usage.fits(limits) { return .wroteTooMuch(usage) }
                }
                return .stopped
            }
            // Cancelling the run's task makes swift-subprocess run the teardown (SIGKILL to
            // the group) and wait until the process is reaped.
            let first = await group.next()!
            group.cancelAll()
            switch first {
            case .exited(let status):
                switch status {
                case .exited(let code): return .exited(code)
                case .signaled(let signal): return .signaled(signal)
                }
            case .failedToRun(let why):
                return .couldNotStart(why)
            case .deadline, .wroteTooMuch, .stopped:
                while let next = await group.next() {
                    if case .failedToRun(let why) = next { return .couldNotStart(why) }
                }
                if case .wroteTooMuch(let usage) = first { return .wroteTooMuch(usage) }
                return .timedOut
            }
        }
        return Run(end: end, output: Self.read(outputPath, first: 64 << 10), errorTail: Self.read(errorPath, last: 1 << 10))
    }

    /// A sentence for the log: what happened to a run of `tool`.
    static func describe(_ run: Run, tool: String, package: String, limits: ConverterLimits) -> String {
        let detail = run.errorTail.isEmpty ? "" : ": " + run.errorTail
        switch run.end {
        case .exited(0): return "\(tool) exited normally" + detail
        case .exited(125): return "\(tool) could not be run under the converter limits" + detail
        case .exited(126), .exited(127): return "\(tool) could not be started" + detail
        case .exited(let code): return "\(tool) failed with exit status \(code)" + detail
        case .signaled(let signal):
            let what = switch signal {
            case SIGKILL: "was killed (SIGKILL)"
            case SIGXCPU: "used up its CPU time limit"
            case SIGXFSZ: "wrote a file larger than \(DocumentError.describe(bytes: limits.fileBytes))"
            case SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE: "crashed (signal \(signal))"
            default: "was ended by signal \(signal)"
            }
            return "\(tool) \(what)" + detail
        case .timedOut:
            return "\(tool) ran past the \(limits.timeout.wholeSecondsDescription) limit and was killed" + detail
        case .wroteTooMuch(let usage):
            return "\(tool) put more than \(DocumentError.describe(bytes: limits.outputBytes)) or \(limits.outputEntries) files "
                + "in its output directory (\(DocumentError.describe(bytes: usage.bytes)) in \(usage.entries) seen) and was killed" + detail
        case .notFound(let name):
            return "\(name) not found; install \(package)"
        case .couldNotStart(let why):
            return "\(tool) could not be started: \(why)"
        }
    }

    /// The first `first` bytes, or the last `last` bytes, of a file, as trimmed text.
    static func read(_ path: String, first: Int? = nil, last: Int? = nil) -> String {
        guard let descriptor = try? FileDescriptor.open(FilePath(path), .readOnly) else { return "" }
        defer { try? descriptor.close() }
        var bytes = [UInt8]()
        if let last, let size = try? descriptor.seek(offset: 0, from: .end), size > Int64(last) {
            _ = try? descriptor.seek(offset: size - Int64(last), from: .start)
        } else {
            _ = try? descriptor.seek(offset: 0, from: .start)
        }
        let limit = first ?? last ?? 4096
        var buffer = [UInt8](repeating: 0, count: 16 << 10)
        while bytes.count < limit {
            let count = (try? buffer.withUnsafeMutableBytes { try descriptor.read(into: $0) }) ?? 0
            if count <= 0 { break }
            bytes += buffer.prefix(min(count, limit - bytes.count))
        }
        return String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

extension Duration {
    fileprivate var wholeSecondsDescription: String { "\(components.seconds) s" }
}

/// A step of a PDF's conversion, as its uploader is told it.
enum ConversionProgress: Equatable, Sendable {
    case counting
    /// Page `page` (1-based) of `pages` is being rendered.
    case rendering(page: Int, pages: Int)
}

/// Runs a ``ConversionPlan`` with real processes: one PDF in, page images out.
struct PDFConversion: Sendable {
    let converters: [PDFConverter]
    let runner: ConverterRunner
    let limits: ConverterLimits
    let maxPages: Int
    let pixels: Int
    let logger: Logger
    var metrics = WebMetrics.off
    /// Told each step, for the uploader's progress report.
    var progress: @Sendable (ConversionProgress) async -> Void = { _ in }

    /// How often a running renderer's output directory is looked at for finished pages.
    static let progressIntervalMs = 250

    struct Rendered: Sendable {
        /// The page images in page order: this server's copies of what the renderer wrote.
        var pages: [String]
        var converter: String
    }

    /// Converts `source`, working in `workDirectory` (which the caller removes). Every
    /// failure is logged with its reason; the uploader gets only the ``DocumentError``.
    func convert(source: String, workDirectory: String, document: String) async -> Result<Rendered, DocumentError> {
        var plan = ConversionPlan(converters: converters.map(\.name), maxPages: maxPages)
        var action = plan.start()
        var deadline = ContinuousClock.now + limits.timeout
        var attemptStarted = ContinuousClock.now
        // Each converter takes at most two steps; the bound guards against a plan that loops.
        for _ in 0...(2 * converters.count + 1) {
            // The server is stopping: the converters were killed, which says nothing about
            // the document. The uploader may try again.
            if Task.isCancelled {
                logger.notice("conversion of document \(document) stopped: the server is stopping")
                return .failure(.busy)
            }
            switch action {
            case .run(.count(let index)):
                let converter = converters[index]
                deadline = ContinuousClock.now + limits.timeout
                attemptStarted = ContinuousClock.now
                let directory = workDirectory + "/\(index)-\(converter.name)"
                do {
                    try FileManager.default.createDirectory(atPath: directory + "/pages", withIntermediateDirectories: true)
                } catch {
                    return .failure(.storageFailed)
                }
                let job = PDFConverter.Job(source: source, outputDirectory: directory + "/pages", pages: 0, pixels: pixels)
                await progress(.counting)
                let run = await runner.run(converter.count, job: job, limits: limits, deadline: deadline, logPrefix: directory + "/count")
                let outcome: ConversionPlan.Outcome
                if run.end == .exited(0), let pages = PageCountOutput.parse(run.output) {
                    outcome = .counted(pages)
                } else if run.end == .exited(0) {
                    outcome = .failed("\(converter.count.tool) printed no page count")
                } else {
                    outcome = .failed(ConverterRunner.describe(run, tool: converter.count.tool, package: converter.package, limits: limits))
                }
                action = advance(&plan, outcome, converter, document)

            case .run(.render(let index, let pages)):
                let converter = converters[index]
                let directory = workDirectory + "/\(index)-\(converter.name)"
                let job = PDFConverter.Job(source: source, outputDirectory: directory + "/pages", pages: pages, pixels: pixels)
                let run = await renderWatchingPages(converter, job, deadline: deadline, logPrefix: directory + "/render")
                let outcome: ConversionPlan.Outcome
                var images: [String] = []
                if run.end == .exited(0) {
                    switch Self.collect(directory + "/pages", pages: pages, into: directory + "/collected", maxFileBytes: limits.fileBytes) {
                    case .success(let found):
                        images = found
                        outcome = .rendered(found.count)
                    case .failure(let why):
                        outcome = .failed("\(converter.render.tool) \(why)")
                    }
                } else {
                    outcome = .failed(ConverterRunner.describe(run, tool: converter.render.tool, package: converter.package, limits: limits))
                }
                action = advance(&plan, outcome, converter, document)
                if case .succeed = action {
                    metrics.converted(by: converter.name, in: ContinuousClock.now - attemptStarted)
                    return .success(Rendered(pages: images, converter: converter.name))
                }
                // The failed attempt's output is of no further use; free the disk now.
                try? FileManager.default.removeItem(atPath: directory)

            case .succeed:
                preconditionFailure("a plan succeeds only after a render")
            case .fail(let error):
                if case .conversionFailed = error {
                    let reasons = plan.failures.map { "\($0.converter): \($0.reason)" }.joined(separator: "; ")
                    logger.error("document \(document) could not be converted by any converter: \(reasons)",
                                 metadata: ["document": "\(document)"])
                }
                return .failure(error)
            }
        }
        preconditionFailure("the conversion plan did not finish in \(2 * converters.count + 2) steps")
    }

    /// Runs the renderer while counting the page images it has written so far: renderers
    /// write one file per page, in page order, so the count says which page is in hand.
    private func renderWatchingPages(_ converter: PDFConverter, _ job: PDFConverter.Job, deadline: ContinuousClock.Instant,
                                     logPrefix: String) async -> ConverterRunner.Run {
        let progress = self.progress
        let pages = job.pages
        let directory = job.outputDirectory
        await progress(.rendering(page: 1, pages: pages))
        return await withTaskGroup(of: ConverterRunner.Run?.self) { group in
            group.addTask {
                await runner.run(converter.render, job: job, limits: limits, deadline: deadline, logPrefix: logPrefix)
            }
            group.addTask {
                var reported = 1
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(Self.progressIntervalMs))
                    let written = (try? FileManager.default.contentsOfDirectory(atPath: directory))?
                        .count(where: { $0.hasPrefix("p-") && $0.hasSuffix(".png") }) ?? 0
                    // The page after the last one written is the one being rendered.
                    let page = min(pages, written + 1)
                    if page > reported {
                        reported = page
                        await progress(.rendering(page: page, pages: pages))
                    }
                }
                return nil
            }
            // Only the renderer's task returns a run; the watcher then stops.
            var run: ConverterRunner.Run?
            for await result in group where result != nil {
                run = result
                group.cancelAll()
            }
            return run!
        }
    }

    /// Feeds `outcome` to the plan; logs the failure the plan recorded, if it did.
    private func advance(_ plan: inout ConversionPlan, _ outcome: ConversionPlan.Outcome, _ converter: PDFConverter,
                         _ document: String) -> ConversionPlan.Action {
        let failuresBefore = plan.failures.count
        let next = plan.finished(outcome)
        if plan.failures.count > failuresBefore, let reason = plan.failures.last?.reason {
            let then = if case .run(.count(let index)) = next { "trying \(converters[index].name)" } else { "no converter left" }
            if case .run(.count) = next { metrics.fellBack(from: converter.name) }
            logger.warning("converter \(converter.name) failed on document \(document): \(reason); \(then)",
                           metadata: ["document": "\(document)", "converter": "\(converter.name)"])
        }
        return next
    }

    /// The page images a renderer wrote to `directory`, copied in page order into
    /// `destination` (made here; the converter never sees it): `p-N.png` for exactly N in
    /// 1...`pages`, each a regular file of one name, at most `maxFileBytes`, and a PNG
    /// (``ConverterOutput/copy(_:in:to:maxBytes:signature:)``). Fewer is reported by count;
    /// anything else is a failure. Returns the copies' paths.
    static func collect(_ directory: String, pages: Int, into destination: String,
                        maxFileBytes: Int) -> Result<[String], ConversionCollectError> {
        let descriptor = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard descriptor >= 0 else { return .failure(ConversionCollectError("left no output directory")) }
        defer { close(descriptor) }
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else {
            return .failure(ConversionCollectError("left no output directory"))
        }
        var byNumber: [Int: String] = [:]
        for name in names {
            guard name.hasPrefix("p-"), name.hasSuffix(".png"),
                  let number = Int(name.dropFirst(2).dropLast(4)), number >= 1, number <= pages
            else { return .failure(ConversionCollectError("wrote an unexpected file \(name.prefix(80))")) }
            guard byNumber[number] == nil else { return .failure(ConversionCollectError("wrote page \(number) twice")) }
            byNumber[number] = name
        }
        guard mkdir(destination, 0o700) == 0 else {
            return .failure(ConversionCollectError("left pages the server could not copy: cannot make \(destination): errno \(errno)"))
        }
        var copies: [String] = []
        for number in byNumber.keys.sorted() {
            let copy = destination + "/p-\(number).png"
            if case .failure(let refusal) = ConverterOutput.copy(byNumber[number]!, in: descriptor, to: copy, maxBytes: maxFileBytes,
                                                                  signature: DocumentKind.pngSignature) {
                return .failure(ConversionCollectError("wrote page \(number) \(refusal)"))
            }
            copies.append(copy)
        }
        return .success(copies)
    }
}

struct ConversionCollectError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
