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
    let sandbox = ConverterSandbox(bubblewrap: "/usr/bin/bwrap", hiddenPaths: ["/srv/parley-data"], tmpfsBytes: 16 << 20)
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
        #expect(Set(hostBinds.map { $0[0] }) == Set(sandbox.trees + [job.source]))
        #expect(!hostBinds.contains { ConverterSandbox.isInside("/srv/parley-data/keys/token-signing.ed25519", any: $0) })
        for flag in ["--unshare-all", "--unshare-user", "--die-with-parent", "--new-session"] {
            #expect(line.contains(flag), "\(flag)")
        }
        #expect(values(of: "--cap-drop", count: 1, in: line) == [["ALL"]])
        #expect(values(of: "--uid", count: 1, in: line) == [["65534"]])
        #expect(values(of: "--tmpfs", count: 1, in: line) == [["/dev/shm"], ["/tmp"]],
                "a private /tmp and /dev/shm; the data directory is not under a bound tree")
        #expect(values(of: "--chdir", count: 1, in: line) == [["/out"]])
    }

    @Test("a tool outside the system trees is bound alone, read-only; a data directory inside one is covered by an empty tmpfs")
    func toolsAndHiddenPaths() {
        let script = "/tmp/parley-test/spy"
        let line = sandbox.commandLine(executable: script, arguments: [], job: job)
        #expect(values(of: "--ro-bind", count: 2, in: line).contains([script, script]))

        let underUsr = ConverterSandbox(bubblewrap: "/usr/bin/bwrap", hiddenPaths: ["/usr/local/var/parley"], tmpfsBytes: 16 << 20)
        let covered = underUsr.commandLine(executable: "/usr/bin/pdftoppm", arguments: [], job: job)
        #expect(values(of: "--tmpfs", count: 1, in: covered) == [["/dev/shm"], ["/tmp"], ["/usr/local/var/parley"]])
        // The cover is the smallest tmpfs, and read-only: not a place to write either.
        #expect(values(of: "--size", count: 3, in: covered).contains(["4096", "--tmpfs", "/usr/local/var/parley"]))
        #expect(values(of: "--remount-ro", count: 1, in: covered).contains(["/usr/local/var/parley"]))
        // After the system binds, so it covers what they show.
        #expect(covered.lastIndex(of: "/usr/local/var/parley")! > covered.lastIndex(of: "--ro-bind-try")!)
        #expect(!line.contains("/usr/local/var/parley") && !covered.contains(where: { $0 == script }))
    }

    @Test("on a merged-/usr system a system link such as /lib is recreated as the same link, never bound again, so a cover over /usr/lib/DATA covers /lib/DATA")
    func mergedUsr() {
        let links = ["/bin": "usr/bin", "/lib": "usr/lib", "/lib64": "/usr/lib64"]
        let layout = ConverterSandbox.layout(ConverterSandbox.systemTrees, readLink: { links[$0] })
        #expect(layout.prefix(4) == [.tree("/usr"), .link("/bin", target: "usr/bin"), .link("/lib", target: "usr/lib"),
                                     .link("/lib64", target: "/usr/lib64")])
        let merged = ConverterSandbox(bubblewrap: "/usr/bin/bwrap", hiddenPaths: ["/usr/lib/parley"], systemPaths: layout, tmpfsBytes: 16 << 20)
        let line = merged.commandLine(executable: "/usr/bin/pdftoppm", arguments: [], job: job)
        #expect(values(of: "--symlink", count: 2, in: line) == [["usr/bin", "/bin"], ["usr/lib", "/lib"], ["/usr/lib64", "/lib64"]])
        let bound = (values(of: "--ro-bind", count: 1, in: line) + values(of: "--ro-bind-try", count: 1, in: line)).map { $0[0] }
        #expect(!bound.contains("/lib") && !bound.contains("/bin") && !bound.contains("/lib64"), "\(bound)")
        #expect(values(of: "--tmpfs", count: 1, in: line).contains(["/usr/lib/parley"]))
        // The probe looks through every way in.
        #expect(ConverterSandbox.aliases(of: "/usr/lib/parley", through: layout) == ["/usr/lib/parley", "/lib/parley"])
        #expect(ConverterSandbox.aliases(of: "/usr/lib64/parley", through: layout) == ["/usr/lib64/parley", "/lib64/parley"])
        #expect(ConverterSandbox.aliases(of: "/usr/libexec/parley", through: layout) == ["/usr/libexec/parley"], "a name that merely starts the same")
        #expect(ConverterSandbox.aliases(of: "/srv/parley", through: layout) == ["/srv/parley"])
        #expect(ConverterSandbox.resolve("../usr/./lib", from: "/opt") == "/usr/lib")
    }

    @Test("the sandbox's writable tmpfs mounts are bounded and /dev is read-only")
    func boundedTmpfs() {
        let line = sandbox.commandLine(executable: "/usr/bin/pdftoppm", arguments: [], job: job)
        let sized = values(of: "--size", count: 3, in: line)
        #expect(sized.contains(["\(16 << 20)", "--tmpfs", "/tmp"]) && sized.contains(["\(16 << 20)", "--tmpfs", "/dev/shm"]), "\(sized)")
        #expect(values(of: "--tmpfs", count: 1, in: line).count == sized.count, "every tmpfs has a size")
        // Read-only after /dev/shm is mounted on it (a remount does not reach below).
        #expect(line.firstIndex(of: "/dev/shm")! < line.firstIndex(of: "--remount-ro")!)
        #expect(values(of: "--remount-ro", count: 1, in: line) == [["/dev"]])
        // The budget for the output directory: every page at its largest, but no more than a meeting may keep.
        var settings = DocumentServer.settings()
        settings.meetingDocumentBytes = 3 << 20
        let limits = ConverterLimits(settings: settings)
        #expect(limits.outputBytes == limits.fileBytes && limits.outputEntries == 5 + ConverterLimits.spareOutputEntries)
        settings.meetingDocumentBytes = 1 << 40
        #expect(ConverterLimits(settings: settings).outputBytes == 5 * limits.fileBytes)
    }

    @Test("the startup log names each converter that runs and why another does not; none running is an error")
    func converterLog() {
        let works = ConverterCheck(converter: "poppler", outcome: .works(["pdfinfo version 22.12.0", "pdftoppm version 22.12.0"]))
        let fails = ConverterCheck(converter: "mupdf", outcome: .fails("mutool not found; install mupdf-tools"))
        let lines = ConverterIsolation.sandboxed(sandbox).converterLog([works, fails])
        #expect(lines.map(\.level) == [.info, .warning])
        #expect(lines[0].message == "document converter poppler runs in the sandbox: pdfinfo version 22.12.0; pdftoppm version 22.12.0")
        #expect(lines[1].message.hasPrefix("document converter mupdf does not run in the sandbox: mutool not found; install mupdf-tools"))
        let none = DocumentServer.unconfined.converterLog([fails])
        #expect(none.map(\.level) == [.warning, .error])
        #expect(none[1].message.hasPrefix("no document converter runs unconfined"))
        #expect(ConverterIsolation.sandboxed(sandbox).converterLog([]).isEmpty)
    }

    @Test("a relative data directory is made absolute against the working directory before any path reaches bwrap")
    func absolutePaths() {
        #expect(DocumentStore.absolute("./data", in: "/srv/parley") == "/srv/parley/data")
        #expect(DocumentStore.absolute("data/", in: "/srv/parley/") == "/srv/parley/data")
        #expect(DocumentStore.absolute("../data", in: "/srv/parley") == "/srv/parley/../data", "'..' is the kernel's to resolve")
        #expect(DocumentStore.absolute("/var/lib/parley", in: "/srv") == "/var/lib/parley")
        let root = DocumentStore(dataDirectory: "./data").root
        #expect(root.hasPrefix("/") && root.hasSuffix("/data/documents") && !root.contains("/./"), "\(root)")
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

    /// A converter that says a PDF has two pages and leaves in its output directory what
    /// `plant` (a shell command on the directory, `$1`) makes of them.
    static func planting(_ name: String, _ plant: String, in scripts: DocumentTemporaryDirectory) throws -> PDFConverter {
        let count = try scripts.script("count-\(name)", "echo 'Pages: 2'")
        let render = try scripts.script("render-\(name)", plant)
        return PDFConverter(name: name, package: "nothing", count: .init(tool: count) { [$0.source] },
                            render: .init(tool: render) { [$0.outputDirectory] })
    }

    @Test("a page left as a FIFO or as a link to a PNG outside is refused at once as conversion_failed: nothing hangs, nothing is kept or served")
    func hostileOutput() async throws {
        let outside = try DocumentTemporaryDirectory()
        defer { outside.remove() }
        let secret = outside.path + "/secret.png"
        try Data(DocumentImages.png).write(to: URL(fileURLWithPath: secret))
        let cases = [
            ("fifo", #"mkfifo "$1/p-1.png""#, "wrote page 1 that is not a regular file"),
            ("link", #"ln -s "\#(secret)" "$1/p-1.png""#, "wrote page 1 as a symbolic link"),
            ("hardlink", #"printf '\211PNG\r\n\032\n' > "$1/p-2.png"; ln "$1/p-2.png" "$1/p-1.png""#,
             "wrote page 1 that has other names (a hard link)"),
        ]
        for (name, plant, reason) in cases {
            let data = try DocumentTemporaryDirectory(), scripts = try DocumentTemporaryDirectory()
            defer { data.remove(); scripts.remove() }
            let converter = try Self.planting(name, plant, in: scripts)
            let isolation = ConverterIsolation.sandboxed(try await TestSandbox.probed(data: data.path))
            try await DocumentServer.run(settings: DocumentServer.settings(timeoutSeconds: 20), data: data.path,
                                         converters: [converter], isolation: isolation) { client, log, _ in
                let meeting = try await client.createMeeting()
                let started = ContinuousClock.now
                let response = try await client.upload(DocumentPDF.pages(2), to: meeting)
                #expect(response.status == 422 && response.error?.code == "conversion_failed", "\(name): \(response.text)")
                #expect(ContinuousClock.now - started < .seconds(20), "\(name): answered within the converter's time limit")
                #expect(log.contains(reason), "\(name): \(log.all)")
                let kept = documentFiles(under: data.path + "/documents").filter { !$0.hasPrefix(".incoming") }
                #expect(kept.isEmpty, "\(name): \(kept)")
            }
        }
    }

    @Test("a converter that writes without end to its output directory is killed past the budget, in bytes or in files; /tmp and /dev/shm fill at their size; /dev takes nothing")
    func boundedWrites() async throws {
        let directory = try DocumentTemporaryDirectory()
        defer { directory.remove() }
        var sandbox = try await TestSandbox.probed(data: directory.path)
        var limits = ConverterLimits(settings: DocumentServer.settings())
        let run = { (script: String, name: String, sandbox: ConverterSandbox, limits: ConverterLimits) async throws -> ConverterRunner.Run in
            let job = try directory.job(name)
            return await ConverterRunner(searchPath: Self.path, sandbox: sandbox)
                .run(.init(tool: script) { [$0.outputDirectory] }, job: job, limits: limits, deadline: .now + limits.timeout,
                     logPrefix: directory.path + "/" + name)
        }
        limits.outputBytes = 4 << 20
        let flood = try directory.script("flood", #"i=0; while :; do head -c 1048576 /dev/zero > "$1/f$i" || exit 9; i=$((i+1)); done"#)
        let flooded = try await run(flood, "flood", sandbox, limits)
        guard case .wroteTooMuch(let usage) = flooded.end else { Issue.record("\(flooded)"); return }
        #expect(usage.bytes > limits.outputBytes)
        #expect(ConverterRunner.describe(flooded, tool: "flood", package: "x", limits: limits).hasPrefix("flood put more than 4 MiB or 21 files"))
        // Killed well before its time limit, with what it wrote in one check's interval to spare.
        #expect(DocumentStore.fileBytes(in: directory.path + "/flood-pages") < 512 << 20)

        limits.outputBytes = 1 << 30
        let names = try directory.script("names", #"i=0; while :; do : > "$1/n$i"; mkdir "$1/d$i"; i=$((i+1)); done"#)
        let named = try await run(names, "names", sandbox, limits)
        guard case .wroteTooMuch(let many) = named.end else { Issue.record("\(named)"); return }
        #expect(many.entries > limits.outputEntries)

        sandbox.tmpfsBytes = 2 << 20
        let fill = try directory.script("fill", """
            for d in /tmp /dev/shm; do
              if head -c 3145728 /dev/zero > $d/fill 2>/dev/null; then echo "$d took 3 MiB"; else echo "$d full"; fi
            done
            if (: > /dev/planted) 2>/dev/null; then echo "/dev writable"; else echo "/dev read-only"; fi
            echo x > /dev/null && echo "/dev/null works"
            """)
        let filled = try await run(fill, "fill", sandbox, limits)
        #expect(filled.end == .exited(0) && filled.output == "/tmp full\n/dev/shm full\n/dev read-only\n/dev/null works", "\(filled)")
    }

    @Test("a data directory under a tree that a system link points into stays hidden through the link; the probe looks through the host's links and refuses a layout that shows it")
    func hiddenThroughLinks() async throws {
        // ROOT/usr/lib/data holds a key, and ROOT/lib links to usr/lib: /usr and /lib of a
        // merged-/usr system in small.
        let root = try DocumentTemporaryDirectory()
        defer { root.remove() }
        let data = root.path + "/usr/lib/data", scratch = root.path + "/scratch"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        try Data("secret".utf8).write(to: URL(fileURLWithPath: data + "/key"))
        try FileManager.default.createSymbolicLink(atPath: root.path + "/lib", withDestinationPath: "usr/lib")
        let limits = ConverterLimits(settings: DocumentServer.settings())
        let trees = ConverterSandbox.systemTrees + [root.path + "/usr", root.path + "/lib"]
        let sandbox = try await ConverterSandbox.probe(searchPath: Self.path, hiddenPaths: [data], scratch: scratch, limits: limits,
                                                       systemPaths: trees).get()
        #expect(sandbox.systemPaths.last == .link(root.path + "/lib", target: "usr/lib"))

        let spy = try root.script("spy", """
            if cat "\(root.path)/lib/data/key" 2> /dev/null; then echo; else echo "hidden at lib"; fi
            if cat "\(data)/key" 2> /dev/null; then echo; else echo "hidden at usr/lib"; fi
            """)
        let job = try root.job("spy")
        let spied = await ConverterRunner(searchPath: Self.path, sandbox: sandbox)
            .run(.init(tool: spy) { _ in [] }, job: job, limits: limits, deadline: .now + limits.timeout, logPrefix: root.path + "/spy")
        #expect(spied.output == "hidden at lib\nhidden at usr/lib", "\(spied)")

        // Bound as a tree instead, the link mounts ROOT/usr/lib again at ROOT/lib, which the
        // cover does not reach: the probe looks there too, and says so.
        var bound = sandbox
        bound.systemPaths = sandbox.systemPaths.map { $0.path == root.path + "/lib" ? .tree($0.path) : $0 }
        let verdict = await bound.verify(searchPath: Self.path, scratch: scratch, limits: limits)
        guard case .failure(let why) = verdict else { Issue.record("a layout that shows the data directory passed the probe"); return }
        #expect(why.description.contains("the data directory was visible inside") && why.description.contains(root.path + "/lib/data"), "\(why)")
    }

    @Test("with a relative data directory (the default ./data) the probe passes and a PDF is converted, sandboxed and unconfined")
    func relativeDataDirectory() async throws {
        let data = try DocumentTemporaryDirectory()
        defer { data.remove() }
        // The same directory, named from this process's working directory (a test may not chdir).
        let depth = FileManager.default.currentDirectoryPath.split(separator: "/").count
        let relative = String(repeating: "../", count: depth) + data.path.dropFirst()
        let sandbox = try await TestSandbox.probed(data: relative)
        for isolation in [ConverterIsolation.sandboxed(sandbox), DocumentServer.unconfined] {
            try await DocumentServer.run(settings: DocumentServer.settings(), data: relative, converters: PDFConverter.standard,
                                         isolation: isolation) { client, log, _ in
                let meeting = try await client.createMeeting()
                let response = try await client.upload(DocumentPDF.pages(2), to: meeting)
                #expect(response.status == 201, "\(isolation): \(response.text) \(log.all)")
            }
        }
        #expect(FileManager.default.fileExists(atPath: data.path + "/documents"))
    }

    @Test("at startup each converter's version commands run in the sandbox, and the log says which converters work there")
    func convertersChecked() async throws {
        let data = try DocumentTemporaryDirectory()
        defer { data.remove() }
        let log = RecordedLog()
        let missing = PDFConverter(name: "missing", package: "missing-tools", count: .init(tool: "parley-no-such-tool") { _ in [] },
                                   render: .init(tool: "parley-no-such-tool") { _ in [] },
                                   checks: [.init(tool: "parley-no-such-tool") { _ in ["-v"] }])
        let isolation = await ConverterIsolation.startup(settings: DocumentServer.settings(), dataDirectory: data.path,
                                                         logger: log.logger(), probe: ConverterIsolation.probe,
                                                         converters: PDFConverter.standard + [missing])
        #expect(isolation.sandbox != nil, "\(log.all)")
        #expect(log.contains("[info] document converter poppler runs in the sandbox: pdfinfo version "), "\(log.all)")
        #expect(log.contains("; pdftoppm version "), "\(log.all)")
        #expect(log.contains("[info] document converter mupdf runs in the sandbox: mutool version "), "\(log.all)")
        #expect(log.contains("[warning] document converter missing does not run in the sandbox: parley-no-such-tool not found; install missing-tools"),
                "\(log.all)")
        #expect(documentFiles(under: data.path + "/documents/.incoming").isEmpty, "the checks leave nothing behind")
    }

    @Test("the server probes the real sandbox at startup and says converters run in it")
    func probedAtStartup() async throws {
        try await runTestServer(routes: WebZone.routes(settings: DocumentServer.settings())) { _, log, _ in
            #expect(log.contains("[info] document converters run sandboxed by"), "\(log.all)")
        }
    }
}
