import Foundation
import ParleyServer
import ParleyTestSupport
@testable import ParleyWeb
import ParleyZone
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The sandbox as data: the bwrap command line a converter command becomes, and what the
/// server decides from the startup probe.
@Suite("Converter sandbox rules")
struct ConverterSandboxRuleTests {
    let sandbox = ConverterSandbox(bubblewrap: "/usr/bin/bwrap", hiddenPaths: ["/srv/parley-data"])
    let job = PDFConverter.Job(source: "/srv/parley-data/documents/.incoming/1-x/document/source.pdf",
                               outputDirectory: "/srv/parley-data/documents/.incoming/1-x/work/0-poppler/pages", pages: 3, pixels: 200)

    /// The values that follow `option` in `line`, each time it appears.
    func values(of option: String, count: Int, in line: [String]) -> [[String]] {
        line.indices.filter { line[$0] == option }.map { Array(line[($0 + 1)...].prefix(count)) }
    }

    @Test("the converter sees its input read-only at a fixed path, writes only its output directory, and runs after '--' with its own arguments")
    func commandLine() {
        let inside = sandbox.inside(job)
        #expect(inside.source == "/in/document.pdf" && inside.outputDirectory == "/out" && inside.pages == 3 && inside.pixels == 200)
        let arguments = PDFConverter.poppler.render.arguments(inside)
        let line = sandbox.commandLine(executable: "/usr/bin/pdftoppm", arguments: arguments, job: job)
        #expect(line.first == "/usr/bin/bwrap")
        #expect(Array(line.suffix(arguments.count + 2)) == ["--", "/usr/bin/pdftoppm"] + arguments)
        #expect(arguments.contains("/in/document.pdf") && arguments.contains("/out/p"), "\(arguments)")
        #expect(values(of: "--ro-bind", count: 2, in: line).contains([job.source, "/in/document.pdf"]))
        #expect(values(of: "--bind", count: 2, in: line) == [[job.outputDirectory, "/out"]], "the only writable bind")
        // Everything else of the host is read-only system trees, and none is the data directory.
        let hostBinds = values(of: "--ro-bind", count: 1, in: line) + values(of: "--ro-bind-try", count: 1, in: line)
        #expect(Set(hostBinds.map { $0[0] }) == Set(sandbox.systemPaths + [job.source]))
        #expect(!hostBinds.contains { ConverterSandbox.isInside("/srv/parley-data/keys/token-signing.ed25519", any: $0) })
        for flag in ["--unshare-all", "--unshare-user", "--die-with-parent", "--new-session"] {
            #expect(line.contains(flag), "\(flag)")
        }
        #expect(values(of: "--cap-drop", count: 1, in: line) == [["ALL"]])
        #expect(values(of: "--uid", count: 1, in: line) == [["65534"]])
        #expect(values(of: "--tmpfs", count: 1, in: line) == [["/tmp"]], "a private /tmp; the data directory is not under a bound tree")
        #expect(values(of: "--chdir", count: 1, in: line) == [["/out"]])
    }

    @Test("a tool outside the system trees is bound alone, read-only; a data directory inside one is covered by an empty tmpfs")
    func toolsAndHiddenPaths() {
        let script = "/tmp/parley-test/spy"
        let line = sandbox.commandLine(executable: script, arguments: [], job: job)
        #expect(values(of: "--ro-bind", count: 2, in: line).contains([script, script]))

        let underUsr = ConverterSandbox(bubblewrap: "/usr/bin/bwrap", hiddenPaths: ["/usr/local/var/parley"])
        let covered = underUsr.commandLine(executable: "/usr/bin/pdftoppm", arguments: [], job: job)
        #expect(values(of: "--tmpfs", count: 1, in: covered) == [["/tmp"], ["/usr/local/var/parley"]])
        // After the system binds, so it covers what they show.
        #expect(covered.lastIndex(of: "/usr/local/var/parley")! > covered.lastIndex(of: "--ro-bind-try")!)
        #expect(!line.contains("/usr/local/var/parley") && !covered.contains(where: { $0 == script }))
    }

    @Test("bwrap's 128 + N exit status for a converter ended by signal N is read back as that signal")
    func signalsComeBack() {
        #expect(ConverterSandbox.end(.exited(128 + SIGSEGV)) == .signaled(SIGSEGV))
        #expect(ConverterSandbox.end(.exited(128 + SIGXCPU)) == .signaled(SIGXCPU))
        #expect(ConverterSandbox.end(.exited(0)) == .exited(0))
        #expect(ConverterSandbox.end(.exited(1)) == .exited(1), "bwrap's own failure")
        #expect(ConverterSandbox.end(.exited(128)) == .exited(128))
        #expect(ConverterSandbox.end(.timedOut) == .timedOut)
    }

    @Test("a working sandbox is used whatever the setting; without one, uploads are refused unless the operator allows unsandboxed conversion")
    func decision() {
        let why = SandboxUnavailable("bwrap: No permissions to create a new namespace")
        for allowed in [false, true] {
            #expect(ConverterIsolation.decide(probe: .success(sandbox), allowUnsandboxed: allowed) == .sandboxed(sandbox))
        }
        #expect(ConverterIsolation.decide(probe: .failure(why), allowUnsandboxed: false) == .refused(why))
        #expect(ConverterIsolation.decide(probe: .failure(why), allowUnsandboxed: true) == .unconfined(why))
        #expect(ConverterIsolation.refused(why).sandbox == nil && ConverterIsolation.unconfined(why).sandbox == nil)

        let refused = ConverterIsolation.refused(why).startupLog
        #expect(refused.level == .error)
        #expect(refused.message.contains(why.description) && refused.message.contains("web.allowUnsandboxedConversion"))
        let unconfined = ConverterIsolation.unconfined(why).startupLog
        #expect(unconfined.level == .warning && unconfined.message.contains("WITHOUT"))
        #expect(ConverterIsolation.sandboxed(sandbox).startupLog.level == .info)
    }
}

/// The sandbox with real processes: bwrap, the limits inside it, and what a converter can
/// and cannot reach. Fails, saying why, where bwrap cannot run.
@Suite("Converter sandbox processes", MachineLoad.server, .serialized, .timeLimit(.minutes(2)))
struct ConverterSandboxProcessTests {
    static let path = ProcessInfo.processInfo.environment["PATH"]

    /// A converter that reports, on standard error, what it could reach: its input, the
    /// signing key in `data`, the data directory itself, and a listener on 127.0.0.1:`port`.
    /// It then fails, so that the server logs the report and falls back to mupdf.
    static func spy(in scripts: DocumentTemporaryDirectory, data: String, port: Int) throws -> PDFConverter {
        let key = TokenKeys.privateKeyPath(dataDirectory: data)
        let spy = try scripts.script("spy", """
            input=$(head -c 5 "$1")
            if head -c 16 "\(key)" > /dev/null 2>&1; then key=read; else key=unreadable; fi
            if ls "\(data)" > /dev/null 2>&1; then data=visible; else data=hidden; fi
            if bash -c 'exec 3<>/dev/tcp/127.0.0.1/\(port)' 2> /dev/null; then net=connected; else net=refused; fi
            echo "spy: input=$input key=$key data=$data net=$net" >&2
            exit 3
            """)
        return PDFConverter(name: "spy", package: "nothing", count: .init(tool: spy) { [$0.source] },
                            render: .init(tool: spy) { [$0.source] })
    }

    @Test("in the sandbox a converter cannot read the signing key, see the data directory or connect to 127.0.0.1; unconfined, the same converter can")
    func confinement() async throws {
        let listener = try LoopbackListener()
        defer { listener.close() }
        for sandboxed in [true, false] {
            let data = try DocumentTemporaryDirectory(), scripts = try DocumentTemporaryDirectory()
            defer { data.remove(); scripts.remove() }
            let isolation = sandboxed ? ConverterIsolation.sandboxed(try await TestSandbox.probed(data: data.path)) : DocumentServer.unconfined
            let converters = [try Self.spy(in: scripts, data: data.path, port: listener.port), .mupdf]
            try await DocumentServer.run(settings: DocumentServer.settings(), data: data.path, converters: converters,
                                         isolation: isolation) { client, log, _ in
                #expect(FileManager.default.fileExists(atPath: TokenKeys.privateKeyPath(dataDirectory: data.path)), "the key is there")
                let meeting = try await client.createMeeting()
                let response = try await client.upload(DocumentPDF.pages(2), to: meeting)
                // mupdf, sandboxed like the spy, still renders the pages.
                #expect(response.status == 201, "\(response.text)")
                let report = sandboxed ? "spy: input=%PDF- key=unreadable data=hidden net=refused"
                    : "spy: input=%PDF- key=read data=visible net=connected"
                #expect(log.contains(report + "; trying mupdf"), "sandboxed: \(sandboxed): \(log.all)")
            }
        }
    }

    @Test("the limits hold inside the sandbox: a crash is a crash, memory is capped, and a hang is killed with everything it started")
    func limitsInside() async throws {
        let directory = try DocumentTemporaryDirectory()
        defer { directory.remove() }
        let runner = ConverterRunner(searchPath: Self.path, sandbox: try await TestSandbox.probed(data: directory.path))
        var limits = ConverterLimits(settings: DocumentServer.settings())
        let run = { (tool: String, name: String, limits: ConverterLimits) async throws -> ConverterRunner.Run in
            await runner.run(.init(tool: tool) { _ in [] }, job: try directory.job(name), limits: limits,
                             deadline: .now + limits.timeout, logPrefix: directory.path + "/" + name)
        }

        let crash = try await run(try directory.script("crash", "echo 'about to fail' >&2; kill -SEGV $$"), "crash", limits)
        #expect(crash.end == .signaled(SIGSEGV))
        #expect(ConverterRunner.describe(crash, tool: "crash", package: "x", limits: limits) == "crash crashed (signal 11): about to fail")

        let greedy = try directory.script("greedy", #"dd if=/dev/zero of=/dev/null bs=120M count=1 status=none && echo "held 120000000""#)
        limits.memoryMiB = 64
        let starved = try await run(greedy, "starved", limits)
        #expect(starved.end != .exited(0) && !starved.output.contains("held"))
        limits.memoryMiB = 2_048
        let roomy = try await run(greedy, "roomy", limits)
        #expect(roomy.end == .exited(0) && roomy.output == "held 120000000", "the limit, not the sandbox, stopped it: \(roomy)")

        // A helper and the converter sleep for a time no other process uses; nothing may
        // remain of either once the deadline has passed.
        let marker = 4_000_000 + Int.random(in: 0..<1_000_000)
        let hang = try directory.script("hang", "sleep \(marker) & exec sleep \(marker + 1)")
        limits.timeout = .milliseconds(500)
        let started = ContinuousClock.now
        let hung = try await run(hang, "hang", limits)
        #expect(hung.end == .timedOut)
        #expect(ContinuousClock.now - started < .seconds(30))
        #expect(await documentProcessesLeft(mentioning: "sleep \(marker)").isEmpty, "the helper is gone")
        #expect(await documentProcessesLeft(mentioning: "sleep \(marker + 1)").isEmpty, "the converter is gone")
        #expect(await documentProcessesLeft(mentioning: directory.path).isEmpty, "bwrap is gone")
    }

    @Test("an unavailable sandbox is logged at startup and every upload is refused with converter_sandbox_unavailable")
    func unavailableRefuses() async throws {
        let probe: ConverterIsolation.Probe = { _, _, _ in .failure(SandboxUnavailable("bwrap: No permissions to create a new namespace")) }
        try await runTestServer(routes: WebZone.routes(settings: DocumentServer.settings(), probe: probe)) { base, log, data in
            #expect(log.contains("[error] the document converter sandbox is unavailable: bwrap: No permissions to create a new namespace; document uploads are refused"), "\(log.all)")
            let client = DocumentClient(base: base)
            let meeting = try await client.createMeeting()
            for (bytes, type) in [(DocumentPDF.pages(1), "application/pdf"), (DocumentImages.png, "image/png")] {
                let response = try await client.upload(bytes, to: meeting, contentType: type)
                #expect(response.status == 503)
                #expect(response.error?.code == "converter_sandbox_unavailable", "\(response.text)")
            }
            #expect(!FileManager.default.fileExists(atPath: data + "/documents/" + meeting.id))
        }
    }

    @Test("with allowUnsandboxedConversion an unavailable sandbox is a warning, and uploads are converted unconfined")
    func allowedWithout() async throws {
        let probe: ConverterIsolation.Probe = { _, _, _ in .failure(SandboxUnavailable("bwrap not found; install bubblewrap")) }
        var settings = DocumentServer.settings()
        settings.allowUnsandboxedConversion = true
        try await runTestServer(routes: WebZone.routes(settings: settings, probe: probe)) { base, log, _ in
            #expect(log.contains("[warning] the document converter sandbox is unavailable: bwrap not found; install bubblewrap; converters run WITHOUT it"), "\(log.all)")
            let client = DocumentClient(base: base)
            let meeting = try await client.createMeeting()
            let response = try await client.upload(DocumentPDF.pages(2), to: meeting)
            #expect(response.status == 201, "\(response.text)")
        }
    }

    @Test("the server probes the real sandbox at startup and says converters run in it")
    func probedAtStartup() async throws {
        try await runTestServer(routes: WebZone.routes(settings: DocumentServer.settings())) { _, log, _ in
            #expect(log.contains("[info] document converters run sandboxed by"), "\(log.all)")
        }
    }
}
