import Foundation
import Subprocess
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
import ParleyTestSupport
#endif

/// The SDK's sample app (Examples/MeetingApp), built on the SDK alone, run against a real
/// `parley serve` that is SIGKILLed and restarted twice under it, the second time after
/// every token it holds has expired.
@Suite("The sample app against a restarted server", MachineLoad.processes, .timeLimit(.minutes(3)))
struct SampleAppTests {
    static var appBinary: String { BuiltProducts.sibling("meeting-app") }

    @Test("the sample app keeps its meeting through two kill -9 restarts and a token renewal")
    func sampleAppSurvivesRestarts() async throws {
        let directory = try TemporaryDirectory()
        let data = directory.path + "/data"
        let portFile = directory.path + "/port"
        let output = directory.path + "/app.out"
        let tokenLifetime = 5

        // The first server; its port is kept for the restarts, so the app's URL stays good.
        let (ports, portSink) = AsyncStream<Int>.makeStream()
        let appOutput = AppOutput(path: output)
        let appStatus: TerminationStatus = try await withThrowingTaskGroup(of: TerminationStatus?.self) { group in
            group.addTask {
                var port = 0
                for restart in 0...2 {
                    let outcome = try await ServerProcess.run(
                        data: data, port: port, portFile: portFile, extraArguments: ["--token-lifetime", "\(tokenLifetime)"]
                    ) { server, bound in
                        if restart == 0 { portSink.yield(bound) }
                        if restart < 2 {
                            try await appOutput.waitFor("restart \(restart + 1) now", timeout: .seconds(60))
                            try server.send(signal: .kill)
                        } else {
                            try await appOutput.waitFor("summary:", timeout: .seconds(90))
                            try server.send(signal: .terminate)
                        }
                        return bound
                    }
                    port = outcome.value
                    if restart < 2 {
                        #expect(outcome.status == .signaled(SIGKILL))
                        // Start again only once the app has seen the server go and acted on it.
                        try await appOutput.waitFor("waiting for the server", after: "restart \(restart + 1) now",
                                                    timeout: .seconds(60))
                    }
                }
                return nil
            }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { throw TestFailure("the server did not start") }
            let log = try FileDescriptor.open(FilePath(output), .writeOnly, options: [.create, .truncate],
                                              permissions: [.ownerReadWrite])
            let app = try await Subprocess.run(
                .path(FilePath(Self.appBinary)),
                arguments: ["--server", "http://127.0.0.1:\(port)", "--restarts", "2", "--token-lifetime", "\(tokenLifetime)"],
                output: .fileDescriptor(log, closeAfterSpawningProcess: true), error: .discarded)
            var status: TerminationStatus? = app.terminationStatus
            for try await result in group { status = status ?? result }
            return status!
        }
        let lines = try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(appStatus == .exited(0), "the app said:\n\(lines.joined(separator: "\n"))")
        #expect(lines.contains("connected: ada on webSocket, bob on longPolling"))
        #expect(lines.contains("bob may not end the meeting: not_host"))
        #expect(lines.contains("poll votes: 1, page: board.1"))
        #expect(lines.contains("impatient-1 withdrawn; may have committed: false"))
        #expect(lines.contains("impatient-2 withdrawn; may have committed: false"))
        #expect(lines.contains { $0.hasPrefix("resumed 1: ") })
        #expect(lines.contains { $0.hasPrefix("resumed 2: ") })
        #expect(lines.contains("ada back on webSocket"))
        // Both tokens had expired by the second restart, so each was renewed at least once
        // (a loaded machine may time out an attempt and fetch one more).
        let renewed = lines.first { $0.hasPrefix("renewed tokens: ") }.flatMap { Int($0.dropFirst("renewed tokens: ".count)) }
        #expect((renewed ?? 0) >= 2, "renewed \(renewed.map(String.init) ?? "none")")
        #expect(lines.contains { $0.hasPrefix("summary: ok; 28 acked ops, each seen once in order by both;") },
                "\(lines.joined(separator: "\n"))")
    }
}

/// The app's output file, read as it grows.
struct AppOutput: Sendable {
    let path: String

    /// Waits for a line starting with `prefix` (after the line starting with `after`, if given).
    func waitFor(_ prefix: String, after: String? = nil, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var lines = ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n")[...]
            if let after, let start = lines.firstIndex(where: { $0.hasPrefix(after) }) {
                lines = lines[start...]
            } else if after != nil {
                lines = []
            }
            if lines.contains(where: { $0.hasPrefix(prefix) }) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        throw TestFailure("the sample app did not say '\(prefix)' within \(timeout); it said:\n\(text)")
    }
}
