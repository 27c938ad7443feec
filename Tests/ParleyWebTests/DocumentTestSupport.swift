import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import ParleyCore
import ParleyServer
import ParleyStore
import ParleyTelemetry
import ParleyTestSupport
@testable import ParleyWeb
import ParleyZone
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

// Support for the documents tests: PDFs made on the spot, a real server with the documents
// routes on a free port, an HTTP client, and the server's log.

/// PDFs written by hand, object by object, with a correct cross-reference table.
enum DocumentPDF {
    /// A PDF of objects 1...n (object 1 is the catalog).
    static func build(_ objects: [[UInt8]]) -> [UInt8] {
        var out = Array("%PDF-1.4\n%\u{E2}\u{E3}\u{CF}\u{D3}\n".utf8)
        var offsets: [Int] = []
        for (index, body) in objects.enumerated() {
            offsets.append(out.count)
            out += Array("\(index + 1) 0 obj\n".utf8) + body + Array("\nendobj\n".utf8)
        }
        let xref = out.count
        out += Array("xref\n0 \(objects.count + 1)\n0000000000 65535 f \n".utf8)
        for offset in offsets {
            let digits = String(offset)
            out += Array((String(repeating: "0", count: 10 - digits.count) + digits + " 00000 n \n").utf8)
        }
        out += Array("trailer\n<< /Size \(objects.count + 1) /Root 1 0 R >>\nstartxref\n\(xref)\n%%EOF\n".utf8)
        return out
    }

    static func object(_ text: String) -> [UInt8] { Array(text.utf8) }

    static func stream(_ dictionary: String, _ data: [UInt8]) -> [UInt8] {
        Array("<< \(dictionary) /Length \(data.count) >>\nstream\n".utf8) + data + Array("\nendstream".utf8)
    }

    /// `count` pages reading "Page 1", "Page 2", … in Helvetica.
    static func pages(_ count: Int, mediaBox: String = "0 0 612 792") -> [UInt8] {
        let font = 3 + 2 * count
        var objects = [
            object("<< /Type /Catalog /Pages 2 0 R >>"),
            object("<< /Type /Pages /Kids [\((0..<count).map { "\(3 + 2 * $0) 0 R" }.joined(separator: " "))] /Count \(count) >>"),
        ]
        for page in 1...count {
            objects.append(object("<< /Type /Page /Parent 2 0 R /MediaBox [\(mediaBox)] /Contents \(2 + 2 * page) 0 R "
                + "/Resources << /Font << /F1 \(font) 0 R >> >> >>"))
            objects.append(stream("", Array("BT /F1 48 Tf 72 600 Td (Page \(page)) Tj ET".utf8)))
        }
        objects.append(object("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"))
        return build(objects)
    }

    /// One page whose content stream is `zeroBytes` zero bytes, Flate-compressed about
    /// 160 to 1: a decompression bomb when large, an ordinary blank page when small.
    static func zeros(_ zeroBytes: Int) -> [UInt8] {
        let compressed = ZeroDeflate.zlib(zeroBytes: zeroBytes)
        return build([
            object("<< /Type /Catalog /Pages 2 0 R >>"),
            object("<< /Type /Pages /Kids [3 0 R] /Count 1 >>"),
            object("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>"),
            stream("/Filter /FlateDecode", compressed),
        ])
    }

    /// One page that draws form X₁ `fanout` times, which draws X₂ `fanout` times, and so on
    /// `depth` levels down: `fanout^depth` tiny paths from a file of a few hundred bytes.
    static func nestedForms(depth: Int, fanout: Int) -> [UInt8] {
        var objects = [
            object("<< /Type /Catalog /Pages 2 0 R >>"),
            object("<< /Type /Pages /Kids [3 0 R] /Count 1 >>"),
            object("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /XObject << /X 5 0 R >> >> >>"),
            stream("", Array("/X Do".utf8)),
        ]
        for level in 0..<depth {
            let last = level == depth - 1
            let body = last ? "0 0 m 10 10 l S" : Array(repeating: "/X Do", count: fanout).joined(separator: " ")
            let resources = last ? "" : "/Resources << /XObject << /X \(6 + level) 0 R >> >>"
            objects.append(stream("/Type /XObject /Subtype /Form /BBox [0 0 612 792] \(resources)", Array(body.utf8)))
        }
        return build(objects)
    }
}

/// A zlib stream of zeros without zlib: one fixed-Huffman deflate block holding a literal
/// 0 and then copies of 258 bytes at distance 1 (13 bits each). Eight copies are 13 whole
/// bytes, so the middle of the stream is one 13-byte pattern repeated.
enum ZeroDeflate {
    static func zlib(zeroBytes: Int) -> [UInt8] {
        precondition(zeroBytes >= 1 + 258)
        let copies = (zeroBytes - 1) / 258
        var head = BitWriter()
        head.bits(1, 1)                 // BFINAL
        head.bits(1, 2)                 // BTYPE 01: fixed Huffman codes
        head.code(0x30, 8)              // literal 0
        head.copy258()                  // 3 + 8 + 13 = 24 bits: byte-aligned from here
        var pattern = BitWriter()
        for _ in 0..<8 { pattern.copy258() }
        var tail = BitWriter()
        let groups = (copies - 1) / 8
        for _ in 0..<((copies - 1) % 8) { tail.copy258() }
        tail.code(0, 7)                 // end of block
        let length = 1 + 258 * copies
        var out: [UInt8] = [0x78, 0x01]
        out.reserveCapacity(2 + 3 + 13 * groups + 16)
        out += head.finish()
        let patternBytes = pattern.finish()
        for _ in 0..<groups { out += patternBytes }
        out += tail.finish()
        // Adler-32 of `length` zeros: a = 1, b = length.
        let adler = (UInt32(length % 65_521) << 16) | 1
        out += [UInt8(adler >> 24), UInt8((adler >> 16) & 0xFF), UInt8((adler >> 8) & 0xFF), UInt8(adler & 0xFF)]
        return out
    }

    /// How many zero bytes `zlib(zeroBytes:)` really encodes (a whole number of copies).
    static func encodedLength(zeroBytes: Int) -> Int { 1 + 258 * ((zeroBytes - 1) / 258) }

    struct BitWriter {
        var bytes: [UInt8] = []
        var current: UInt8 = 0
        var count = 0

        mutating func bit(_ value: Int) {
            if value != 0 { current |= 1 << count }
            count += 1
            if count == 8 { bytes.append(current); current = 0; count = 0 }
        }

        /// A header field, least significant bit first.
        mutating func bits(_ value: Int, _ width: Int) { for index in 0..<width { bit((value >> index) & 1) } }

        /// A Huffman code, most significant bit first.
        mutating func code(_ value: Int, _ width: Int) { for index in (0..<width).reversed() { bit((value >> index) & 1) } }

        /// Length 258 (code 285, no extra bits) at distance 1 (code 0, no extra bits).
        mutating func copy258() {
            code(0xC5, 8)
            code(0, 5)
        }

        mutating func finish() -> [UInt8] {
            if count > 0 { bytes.append(current); current = 0; count = 0 }
            return bytes
        }
    }
}

/// Small images, as browsers upload them.
enum DocumentImages {
    /// A 1×1 PNG.
    static let png: [UInt8] = [
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
        0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0,
        0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
        0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ]

    /// The width and height in a PNG's IHDR.
    static func pngSize(_ bytes: [UInt8]) -> (width: Int, height: Int)? {
        guard bytes.count >= 24, Array(bytes[12..<16]) == Array("IHDR".utf8) else { return nil }
        func be32(_ at: Int) -> Int { bytes[at..<(at + 4)].reduce(0) { $0 << 8 | Int($1) } }
        return (be32(16), be32(20))
    }
}

/// A fixture file from `Fixtures/`.
func documentFixture(_ name: String) throws -> [UInt8] {
    guard let url = Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures") else {
        throw TestFailure("no fixture \(name)")
    }
    return Array(try Data(contentsOf: url))
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A temporary directory, removed by `remove()`.
struct DocumentTemporaryDirectory: Sendable {
    let path: String
    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("parley-documents-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func remove() { try? FileManager.default.removeItem(atPath: path) }

    /// Writes an executable shell script and returns its path.
    func script(_ name: String, _ body: String) throws -> String {
        let file = path + "/" + name
        try Data(("#!/bin/sh\n" + body + "\n").utf8).write(to: URL(fileURLWithPath: file))
        chmod(file, 0o755)
        return file
    }

    /// A job for a converter named `name`: a small PDF as its source and an empty output
    /// directory, both in this directory.
    func job(_ name: String) throws -> PDFConverter.Job {
        let job = PDFConverter.Job(source: path + "/\(name).pdf", outputDirectory: path + "/\(name)-pages", pages: 1, pixels: 64)
        try Data(DocumentPDF.pages(1)).write(to: URL(fileURLWithPath: job.source))
        try FileManager.default.createDirectory(atPath: job.outputDirectory, withIntermediateDirectories: true)
        return job
    }

    /// A converter that says a PDF has three pages and, like pdftoppm, writes one file per
    /// page in order, each only once the test lets it (``open(page:)``), so every step lasts
    /// until the test has seen it, however loaded the machine.
    func gatedConverter(name: String) throws -> PDFConverter {
        try Data(DocumentImages.png).write(to: URL(fileURLWithPath: path + "/page.png"))
        let count = try script("count", "echo 'Pages: 3'")
        let render = try script("render", """
            for n in 1 2 3; do
              i=0; while [ ! -e "\(path)/go-$n" ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done
              cp "\(path)/page.png" "$1/p-$n.png"
            done
            """)
        return PDFConverter(name: name, package: "nothing", count: .init(tool: count) { [$0.source] },
                            render: .init(tool: render) { [$0.outputDirectory] })
    }

    /// Lets a ``gatedConverter(name:)`` write `page`.
    @discardableResult
    func open(page: Int) -> Bool {
        FileManager.default.createFile(atPath: path + "/go-\(page)", contents: nil)
    }
}

/// A response, as the tests look at it.
struct DocumentResponse: Sendable {
    var status: Int
    var headers: [String: String]
    var body: Data

    func header(_ name: String) -> String? {
        headers.first { $0.key.lowercased() == name.lowercased() }?.value
    }

    /// The `{"code", "message"}` of an error response.
    var error: (code: String, message: String)? {
        guard let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any],
              let code = object["code"] as? String, let message = object["message"] as? String
        else { return nil }
        return (code, message)
    }

    var text: String { String(decoding: body, as: UTF8.self) }
}

/// What `POST /v1/meetings/{id}/documents` answers on success.
struct UploadedDocument: Decodable, Sendable {
    var document: String
    var title: String
    var pages: [String]
}

/// A meeting created on the test server.
struct DocumentMeeting: Sendable {
    var id: String
    var hostToken: String
}

/// A client of one running server.
struct DocumentClient: Sendable {
    let base: String

    private static let session: URLSession = {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.urlCache = nil
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        configuration.timeoutIntervalForRequest = 60
        return URLSession(configuration: configuration)
    }()

    func send(_ method: String, _ path: String, token: String? = nil, headers: [String: String] = [:],
              body: [UInt8]? = nil, streamed: Bool = false) async throws -> DocumentResponse {
        var request = URLRequest(url: URL(string: base + path)!)
        request.httpMethod = method
        request.timeoutInterval = 60
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        if let body {
            if streamed {
                request.httpBodyStream = InputStream(data: Data(body))
            } else {
                request.httpBody = Data(body)
            }
        }
        let (data, response) = try await Self.session.data(for: request)
        guard let http = response as? HTTPURLResponse else { throw TestFailure("not an HTTP response") }
        var fields: [String: String] = [:]
        for (name, value) in http.allHeaderFields {
            if let name = name as? String, let value = value as? String { fields[name] = value }
        }
        return DocumentResponse(status: http.statusCode, headers: fields, body: data)
    }

    func createMeeting(_ title: String = "Documents") async throws -> DocumentMeeting {
        let response = try await send("POST", "/v1/meetings", headers: ["Content-Type": "application/json"],
                                      body: Array(#"{"title": "\#(title)"}"#.utf8))
        guard response.status == 201,
              let object = try JSONSerialization.jsonObject(with: response.body) as? [String: Any],
              let meeting = object["meeting"] as? [String: Any], let id = meeting["id"] as? String,
              let token = object["hostToken"] as? String
        else { throw TestFailure("create meeting: \(response.status) \(response.text)") }
        return DocumentMeeting(id: id, hostToken: token)
    }

    /// Uploads `bytes` to `meeting` with its host token.
    func upload(_ bytes: [UInt8], to meeting: DocumentMeeting, contentType: String = "application/pdf",
                title: String? = nil, token: String? = nil) async throws -> DocumentResponse {
        var headers = ["Content-Type": contentType]
        if let title { headers["X-Parley-Title"] = title.addingPercentEncoding(withAllowedCharacters: .alphanumerics) }
        return try await send("POST", "/v1/meetings/\(meeting.id)/documents", token: token ?? meeting.hostToken,
                              headers: headers, body: bytes)
    }

    func page(_ page: String, of meeting: DocumentMeeting, token: String? = nil,
              headers: [String: String] = [:]) async throws -> DocumentResponse {
        try await send("GET", "/v1/meetings/\(meeting.id)/pages/\(page)", token: token ?? meeting.hostToken, headers: headers)
    }
}

/// A real Parley server with the documents routes, on a free loopback port.
enum DocumentServer {
    /// Settings small enough that every limit is reached in well under a second.
    static func settings(timeoutSeconds: Int = 20) -> WebSettings {
        var settings = WebSettings()
        settings.passwordCost = 4
        settings.maxUploadBytes = 16 << 20
        settings.maxDocumentPages = 5
        settings.converterTimeoutSeconds = timeoutSeconds
        settings.converterMemoryMiB = 512
        settings.pageImagePixels = 200
        return settings
    }

    /// Runs `body` against a server on `data` (a fresh directory if nil). With `converters`,
    /// the documents routes alone, with those converters; without, the whole web zone.
    /// How the tests' own converters run unless a test says otherwise: unconfined, since
    /// they talk to the test through files in its temporary directory.
    static let unconfined = ConverterIsolation.unconfined(SandboxUnavailable("a test's own converters run unconfined"))

    static func run(settings: WebSettings, data: String? = nil, converters: [PDFConverter]? = nil,
                    searchPath: String? = ProcessInfo.processInfo.environment["PATH"], isolation: ConverterIsolation = unconfined,
                    metrics: ProcessMetrics? = nil,
                    _ body: @Sendable (DocumentClient, RecordedLog, String) async throws -> Void) async throws {
        let routes: FrontRoutes
        if let converters {
            routes = { router, front in
                DocumentRoutes(dataDirectory: front.configuration.dataDirectory, meetings: front.store, tokens: front.tokens,
                               settings: settings, logger: front.logger, converters: converters, searchPath: searchPath,
                               isolation: isolation, metrics: WebMetrics(metrics: front.configuration.metrics.process))
                    .add(to: router)
            }
        } else {
            routes = WebZone.routes(settings: settings)
        }
        try await runTestServer(routes: routes, data: data, metrics: metrics) { base, log, directory in
            try await body(DocumentClient(base: base), log, directory)
        }
    }
}

/// Runs `body` against a real Parley server with `routes` on a free loopback port, in `data`
/// (a fresh directory, removed afterwards, if nil); then stops the server. `body` gets the
/// server's base URL, its log and its data directory.
func runTestServer<T>(routes: @escaping FrontRoutes, data: String? = nil, store: StoreLocation = .sqlite(directory: nil),
                      apiKey: String? = nil, clock: (@Sendable () -> Millis)? = nil, metrics: ProcessMetrics? = nil,
                      _ body: (String, RecordedLog, String) async throws -> T) async throws -> T {
    let temporary = data == nil ? try DocumentTemporaryDirectory() : nil
    defer { temporary?.remove() }
    let directory = data ?? temporary!.path
    let log = RecordedLog()
    var configuration = ServerConfiguration(host: "127.0.0.1", port: 0, dataDirectory: directory, fsyncEveryCommit: false)
    configuration.apiKey = apiKey
    configuration.store = store
    if let clock { configuration.clock = clock }
    if let metrics {
        configuration.metrics = ServerMetrics(metrics)
        configuration.metricsPath = "/metrics"
    }
    let server = ParleyServer(configuration: configuration, frontRoutes: routes, logger: log.logger())
    let (ports, sink) = AsyncStream<Int>.makeStream()
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            defer { sink.finish() }
            try await server.run { sink.yield($0) }
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else {
            try await group.next()
            throw TestFailure("the server did not start")
        }
        defer { group.cancelAll() }
        return try await body("http://127.0.0.1:\(port)", log, directory)
    }
}

/// Whether process `pid` is gone: no such process, or a zombie nobody reaped yet.
func documentProcessIsGone(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return kill(pid, 0) != 0 }
    guard let close = stat.lastIndex(of: ")") else { return false }
    return stat[stat.index(close, offsetBy: 2)] == "Z"
}

/// Live processes whose command line mentions `text` (converters working in a data directory).
func documentProcesses(mentioning text: String) -> [String] {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    return entries.compactMap { entry -> String? in
        guard let pid = Int32(entry), pid != getpid(), !documentProcessIsGone(pid),
              let raw = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline")
        else { return nil }
        let commandLine = String(decoding: raw.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
        return commandLine.contains(text) ? "\(pid): \(commandLine)" : nil
    }
}

/// Live processes mentioning `text` once those being killed have had `within` to go. A
/// sandbox's processes are killed with its bwrap, but the kernel finishes them off a moment
/// after bwrap is reaped (a converter holding much memory takes a few hundred milliseconds).
func documentProcessesLeft(mentioning text: String, within: Duration = .seconds(5)) async -> [String] {
    let deadline = ContinuousClock.now + within
    var left = documentProcesses(mentioning: text)
    while !left.isEmpty, ContinuousClock.now < deadline {
        try? await Task.sleep(for: .milliseconds(20))
        left = documentProcesses(mentioning: text)
    }
    return left
}

/// Every file under `path`, relative to it.
func documentFiles(under path: String) -> [String] {
    guard let enumerator = FileManager.default.enumerator(atPath: path) else { return [] }
    return (enumerator.allObjects as? [String] ?? []).sorted()
}

/// The converter sandbox as the server probes it at startup.
enum TestSandbox {
    /// The working sandbox for a server on `data`; throws with bwrap's reason where it
    /// cannot run (then the tests that need it fail, saying why).
    static func probed(data: String) async throws -> ConverterSandbox {
        switch await ConverterIsolation.probe(DocumentServer.settings(), data, ProcessInfo.processInfo.environment["PATH"]) {
        case .success(let sandbox): return sandbox
        case .failure(let why): throw TestFailure("the converter sandbox does not work here: \(why)")
        }
    }
}

/// A TCP listener on 127.0.0.1 that never accepts: a connection to it completes in the
/// kernel's backlog, so whether one can be made is all it tells.
final class LoopbackListener: Sendable {
    let descriptor: Int32
    let port: Int

    init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw TestFailure("socket: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                bind(descriptor, address, length) == 0 && listen(descriptor, 16) == 0
                    && getsockname(descriptor, address, &length) == 0
            }
        }
        guard bound else {
            Glibc.close(descriptor)
            throw TestFailure("cannot listen on 127.0.0.1: errno \(errno)")
        }
        self.descriptor = descriptor
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    func close() { Glibc.close(descriptor) }
}
