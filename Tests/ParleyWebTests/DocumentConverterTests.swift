import Foundation
@testable import ParleyWeb
import ParleyTestSupport
import ParleyZone
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The process adapter: real processes, real signals, real limits.
@Suite("Document converter processes", MachineLoad.server, .timeLimit(.minutes(2)))
struct DocumentConverterProcessTests {
    let runner = ConverterRunner(searchPath: ProcessInfo.processInfo.environment["PATH"])

    /// Runs `tool`, without arguments, as a converter runs: on a source file and an output
    /// directory of its own in `directory`, with its logs at `directory/name.out|err`.
    func runTool(_ tool: String, in directory: DocumentTemporaryDirectory, runner: ConverterRunner? = nil, limits: ConverterLimits,
                 deadline: ContinuousClock.Instant, name: String) async throws -> ConverterRunner.Run {
        let job = try directory.job(name)
        return await (runner ?? self.runner).run(.init(tool: tool) { _ in [] }, job: job, limits: limits, deadline: deadline,
                                                 logPrefix: directory.path + "/" + name)
    }

    func limits(timeoutMs: Int = 10_000, memoryMiB: Int = 256) -> ConverterLimits {
        var settings = WebSettings()
        settings.converterMemoryMiB = memoryMiB
        var limits = ConverterLimits(settings: settings)
        limits.timeout = .milliseconds(timeoutMs)
        return limits
    }

    @Test("a converter's output is read back and its exit status reported")
    func output() async throws {
        let directory = try DocumentTemporaryDirectory()
        defer { directory.remove() }
        let tool = try directory.script("count", "echo 'Pages: 7'; echo 'a warning' >&2; exit 0")
        let run = try await runTool(tool, in: directory, limits: limits(), deadline: .now + .seconds(10), name: "count")
        #expect(run.end == .exited(0))
        #expect(PageCountOutput.parse(run.output) == 7)
        #expect(run.errorTail == "a warning")
    }

    @Test("a converter that hangs is killed at the deadline, with everything it started")
    func hangIsKilled() async throws {
        let directory = try DocumentTemporaryDirectory()
        defer { directory.remove() }
        // The converter starts a helper and both sleep; the kill must reach the helper too.
        let tool = try directory.script("hang", """
            sleep 60 &
            echo $! > "\(directory.path)/helper.pid"
            echo $$ > "\(directory.path)/converter.pid"
            wait
            """)
        let started = ContinuousClock.now
        let run = try await runTool(tool, in: directory, limits: limits(timeoutMs: 500), deadline: .now + .milliseconds(500), name: "hang")
        let elapsed = ContinuousClock.now - started
        #expect(run.end == .timedOut)
        // The upper bound is loose: a loaded 2-core machine took 6.5 s. Without the deadline
        // the converter would run its full 60 s.
        #expect(elapsed >= .milliseconds(450) && elapsed < .seconds(30), "killed at the deadline, not later: \(elapsed)")
        let converter = Int32(ConverterRunner.read(directory.path + "/converter.pid", first: 32)) ?? 0
        let helper = Int32(ConverterRunner.read(directory.path + "/helper.pid", first: 32)) ?? 0
        #expect(converter > 0 && helper > 0)
        #expect(documentProcessIsGone(converter), "the converter process was killed")
        // The helper, orphaned by the kill, may take a moment to be reaped by init.
        for _ in 0..<100 where !documentProcessIsGone(helper) { try await Task.sleep(for: .milliseconds(20)) }
        #expect(documentProcessIsGone(helper), "the converter's child process was killed with it")
        #expect(ConverterRunner.describe(run, tool: "hang", package: "x", limits: limits(timeoutMs: 500))
            .contains("ran past the"))
    }

    @Test("a converter that crashes is reported as crashed, with its last words")
    func crash() async throws {
        let directory = try DocumentTemporaryDirectory()
        defer { directory.remove() }
        let tool = try directory.script("crash", "echo 'about to fail' >&2; kill -SEGV $$")
        let run = try await runTool(tool, in: directory, limits: limits(), deadline: .now + .seconds(10), name: "crash")
        #expect(run.end == .signaled(SIGSEGV))
        let described = ConverterRunner.describe(run, tool: "crash", package: "x", limits: limits())
        #expect(described == "crash crashed (signal 11): about to fail")
    }

    @Test("a converter cannot use more memory than its limit")
    func memoryLimit() async throws {
        let directory = try DocumentTemporaryDirectory()
        defer { directory.remove() }
        // dd allocates its 120 MiB block at once (fast even on a loaded machine); the limit is 64 MiB.
        let tool = try directory.script("greedy", #"dd if=/dev/zero of=/dev/null bs=120M count=1 status=none && echo "held 120000000""#)
        let run = try await runTool(tool, in: directory, limits: limits(memoryMiB: 64), deadline: .now + .seconds(60), name: "greedy")
        #expect(run.end != .exited(0))
        #expect(!run.output.contains("held"))
        // The same program without the tight limit works, so the limit is what stopped it.
        let roomy = try await runTool(tool, in: directory, limits: limits(memoryMiB: 2_048), deadline: .now + .seconds(60), name: "roomy")
        #expect(roomy.end == .exited(0))
        #expect(roomy.output == "held 120000000")
    }

    @Test("a missing tool is named with the package to install")
    func missingTool() async throws {
        let directory = try DocumentTemporaryDirectory()
        defer { directory.remove() }
        let empty = ConverterRunner(searchPath: directory.path)
        let run = try await runTool("pdftoppm", in: directory, runner: empty, limits: limits(), deadline: .now + .seconds(10), name: "missing")
        #expect(run.end == .notFound("pdftoppm"))
        #expect(ConverterRunner.describe(run, tool: "pdftoppm", package: "poppler-utils", limits: limits())
            == "pdftoppm not found; install poppler-utils")
    }

    @Test("poppler and mupdf each render every page of a PDF to fit the pixel bound, unconfined and in the sandbox",
          arguments: [false, true])
    func realConverters(sandboxed: Bool) async throws {
        for converter in PDFConverter.standard {
            let directory = try DocumentTemporaryDirectory()
            defer { directory.remove() }
            let runner = sandboxed ? ConverterRunner(searchPath: runner.searchPath, sandbox: try await TestSandbox.probed(data: directory.path))
                : runner
            let source = directory.path + "/source.pdf"
            try Data(DocumentPDF.pages(3, mediaBox: "0 0 200000 100000")).write(to: URL(fileURLWithPath: source))
            let conversion = PDFConversion(converters: [converter], runner: runner, limits: limits(), maxPages: 5, pixels: 120,
                                           logger: RecordedLog().logger())
            let result = await conversion.convert(source: source, workDirectory: directory.path + "/work", document: "d-test")
            let rendered = try result.get()
            #expect(rendered.converter == converter.name)
            #expect(rendered.pages.count == 3)
            for page in rendered.pages {
                let size = DocumentImages.pngSize(Array(try Data(contentsOf: URL(fileURLWithPath: page))))
                #expect(size.map { max($0.width, $0.height) <= 120 && $0.width > $0.height } == true,
                        "\(converter.name): \(String(describing: size)) fits 120 px, landscape kept")
            }
        }
    }

    @Test("the hand-made zero stream is a valid Flate stream: a small one renders as a blank page")
    func zeroStreamIsValid() async throws {
        #expect(ZeroDeflate.encodedLength(zeroBytes: 1 << 20) == 1 + 258 * ((1 << 20 - 1) / 258))
        for converter in PDFConverter.standard {
            let directory = try DocumentTemporaryDirectory()
            defer { directory.remove() }
            let source = directory.path + "/source.pdf"
            try Data(DocumentPDF.zeros(1 << 20)).write(to: URL(fileURLWithPath: source))
            let log = RecordedLog()
            let conversion = PDFConversion(converters: [converter], runner: runner, limits: limits(), maxPages: 5, pixels: 64,
                                           logger: log.logger())
            let result = await conversion.convert(source: source, workDirectory: directory.path + "/work", document: "d-test")
            #expect(try result.get().pages.count == 1, "\(converter.name): \(log.all)")
            // Neither converter complains about the stream (a broken one draws warnings).
            let errors = ConverterRunner.read(directory.path + "/work/0-\(converter.name)/render.err", first: 4096)
            #expect(!errors.lowercased().contains("flate") && !errors.lowercased().contains("zlib"), "\(errors)")
        }
    }
}
