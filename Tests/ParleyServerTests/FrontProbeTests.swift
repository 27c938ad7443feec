import Foundation
import ParleyClient
import ParleyTestSupport
import Testing

/// A client given several web fronts asks the nearest first: it times `GET /v1/ping` on each.
@Suite("The SDK picks the nearest web front by probing", MachineLoad.server, .timeLimit(.minutes(1)))
struct FrontProbeTests {
    @Test("given a front 300 ms away and a near one, the client asks the near one; the far one is only pinged")
    func nearestFrontFirst() async throws {
        try await withServer { endpoint in
            let created = try await endpoint.createMeeting()
            let far = try DistantFront(delayMs: 300)
            defer { far.stop() }
            var options = MeetingClient.Options(policy: ConnectionPolicy(transport: .webSocket))
            options.otherServers = [URL(string: endpoint.base)!]
            // The far front is the app's own, given first: only its round trip puts it last.
            let client = try MeetingClient(server: far.url, token: created.hostToken, options: options)
            try await client.connect()
            let ack = try await client.send(.chat(text: "near"))
            #expect(ack.seq >= 1)
            await client.close()
            #expect(try far.requests() == ["GET /v1/ping"])
        }
    }

    @Test("with probing off, the fronts are asked in the order given: the far one first")
    func orderGivenWithoutProbing() async throws {
        try await withServer { endpoint in
            let created = try await endpoint.createMeeting()
            let far = try DistantFront(delayMs: 0)
            defer { far.stop() }
            var options = MeetingClient.Options(policy: ConnectionPolicy(transport: .webSocket))
            options.otherServers = [URL(string: endpoint.base)!]
            options.probeFronts = false
            options.policy.backoffInitial = .milliseconds(20)
            let client = try MeetingClient(server: far.url, token: created.hostToken, options: options)
            try await client.connect()
            await client.close()
            // It asked the far front where the meeting is, got no answer it could use, and went on.
            #expect(try far.requests().contains { $0.hasPrefix("GET /v1/meetings/") })
        }
    }
}

/// A web front far away: an HTTP server (Python's, in a process of its own) that answers
/// `GET /v1/ping` after a delay, 404 to anything else, and records every request.
struct DistantFront {
    let process: Process
    let url: URL
    let log: String

    static let script = """
        import http.server, sys, time
        delay, port_file, log_file = float(sys.argv[1]) / 1000, sys.argv[2], sys.argv[3]
        class Front(http.server.BaseHTTPRequestHandler):
            def answer(self):
                with open(log_file, 'a') as log: log.write(f'{self.command} {self.path}\\n')
                time.sleep(delay)
                self.send_response(200 if self.path == '/v1/ping' else 404)
                self.send_header('Content-Length', '0')
                self.end_headers()
            do_GET = do_POST = answer
            def log_message(self, *args): pass
        server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Front)
        with open(port_file + '.tmp', 'w') as out: out.write(str(server.server_address[1]))
        __import__('os').rename(port_file + '.tmp', port_file)
        server.serve_forever()
        """

    init(delayMs: Int) throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("parley-front-\(UUID().uuidString)").path
        log = base + ".log"
        FileManager.default.createFile(atPath: log, contents: nil)
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", Self.script, String(delayMs), base + ".port", log]
        try process.run()
        let deadline = Date().addingTimeInterval(10)
        while !FileManager.default.fileExists(atPath: base + ".port") {
            guard Date() < deadline, process.isRunning else { throw TestFailure("the distant front did not start") }
            Thread.sleep(forTimeInterval: 0.02)
        }
        let port = try String(contentsOfFile: base + ".port", encoding: .utf8)
        try? FileManager.default.removeItem(atPath: base + ".port")
        url = URL(string: "http://127.0.0.1:\(port)")!
    }

    func requests() throws -> [String] {
        try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    /// Kills it (Foundation's `waitUntilExit` can hang inside a test's task: poll instead).
    func stop() {
        kill(process.processIdentifier, SIGKILL)
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        try? FileManager.default.removeItem(atPath: log)
    }
}
