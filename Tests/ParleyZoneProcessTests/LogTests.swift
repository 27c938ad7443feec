import Foundation
import Logging
import ParleyClient
import ParleyCore
import ParleySupervisor
import ParleyTelemetry
import ParleyZone
import Testing

#if canImport(Glibc)
import Glibc
import ParleyTestSupport
#endif

@Suite("Logs: JSON lines and rotation")
struct LogFormatTests {
    @Test("a JSON log line is one object: time, level, logger, source, message, and the metadata with snake_case keys, escaped")
    func jsonLine() throws {
        var handler = JSONLogHandler(label: "parley.node") { Date(timeIntervalSince1970: 1_764_876_469.125) }
        handler[metadataKey: "node"] = "collab-1"
        let line = handler.format(level: .warning, message: "copy \"dropped\"\nsecond line",
                                  metadata: ["lockedUntil": "soon", "from_seq": "12", "list": ["a", "b"]], source: "ParleyServer")
        #expect(!line.contains("\n"), "one line")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["time"] as? String == "2025-12-04T19:27:49.125Z")
        #expect(object["level"] as? String == "warning")
        #expect(object["logger"] as? String == "parley.node")
        #expect(object["source"] as? String == "ParleyServer")
        #expect(object["message"] as? String == "copy \"dropped\"\nsecond line")
        let metadata = try #require(object["metadata"] as? [String: Any])
        #expect(Set(metadata.keys) == ["node", "locked_until", "from_seq", "list"])
        #expect(metadata["list"] as? [String] == ["a", "b"])
    }

    @Test("a log file past its size is copied to .1 and emptied; older copies move up, and the oldest beyond keepFiles is deleted")
    func rotation() throws {
        let directory = FileManager.default.temporaryDirectory.path + "/parley-rotation-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/collab-1.log"
        for round in 1...3 {
            try String(repeating: "line of round \(round)\n", count: 400).write(toFile: path, atomically: false, encoding: .utf8)
            #expect(try LogRotation.rotateIfLarger(path, maxBytes: 4_096, keep: 2))
        }
        #expect(try !LogRotation.rotateIfLarger(path, maxBytes: 4_096, keep: 2), "empty now: nothing to rotate")
        #expect(try String(contentsOfFile: path, encoding: .utf8).isEmpty)
        #expect(try String(contentsOfFile: path + ".1", encoding: .utf8).hasPrefix("line of round 3"))
        #expect(try String(contentsOfFile: path + ".2", encoding: .utf8).hasPrefix("line of round 2"))
        #expect(!FileManager.default.fileExists(atPath: path + ".3"), "keepFiles is 2")
    }
}

@Suite("Logs: a zone writing JSON, with rotation", MachineLoad.processes, .serialized, .timeLimit(.minutes(3)))
struct ZoneLogTests {
    @Test("with logs.format json every line the processes write is a JSON object, and a log past logs.maxFileBytes is rotated while its process writes on")
    func jsonLogsRotate() async throws {
        let extra = #""logs": {"format": "json", "maxFileBytes": 4096, "keepFiles": 2},"#
        try await ZoneHarness.run(extraConfiguration: extra) { zone in
            let logs = zone.data + "/logs"
            // Meetings placed and opened: a few hundred bytes of log each on the manager and
            // the collab server, so some log passes 4 KiB.
            let web = try await zone.publicURL()
            for index in 0..<40 { _ = try await ParleyHTTP.createMeeting(server: web, title: "Logged \(index)") }
            // The supervisor looks once a second; give it a bounded while.
            let rotated = try await zone.waitFor("a rotated log", timeout: .seconds(20)) { _ in
                (try? FileManager.default.contentsOfDirectory(atPath: logs))?.first { $0.hasSuffix(".log.1") }
            }
            let name = String(rotated.dropLast(".1".count))
            // The process writes on into the emptied file.
            for index in 0..<10 { _ = try await ParleyHTTP.createMeeting(server: web, title: "After \(index)") }
            _ = try await zone.waitFor("new lines after the rotation") { _ in
                ((try? String(contentsOfFile: logs + "/" + name, encoding: .utf8)) ?? "").isEmpty ? nil : true
            }
            for file in try FileManager.default.contentsOfDirectory(atPath: logs) {
                let text = try String(contentsOfFile: logs + "/" + file, encoding: .utf8)
                // The supervisor marks each start in the file; everything else is JSON.
                for line in text.split(separator: "\n") where !line.hasPrefix("--- parley zone:") {
                    let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                    #expect(object?["message"] != nil, "\(file): not a JSON log line: \(line.prefix(200))")
                }
            }
        }
    }
}
