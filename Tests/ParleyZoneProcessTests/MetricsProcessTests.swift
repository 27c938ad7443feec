import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import ParleyClient
import ParleyCore
import ParleyTelemetry
import ParleyZone
import Testing

#if canImport(Glibc)
import Glibc
import ParleyTestSupport
#endif

/// `/metrics` of a running zone: scraped the way Prometheus would, after traffic and a failover.
@Suite("Metrics: every process of a zone serves /metrics", MachineLoad.processes, .serialized, .timeLimit(.minutes(3)))
struct MetricsProcessTests {
    @Test("after chat and a SIGKILL of the meeting's host, the new host and the leading manager show the documented series with the values the traffic implies; every process serves its metrics, and no series carries a meeting id")
    func scrapeAfterFailover() async throws {
        try await ZoneHarness.run(processes: ZoneHarness.fullZone) { zone in
            let web = try await zone.publicURL()
            let created = try await ParleyHTTP.createMeeting(server: web, title: "Metrics")
            let meeting = created.meeting.id
            let alice = try MeetingClient(server: web, token: created.hostToken, options: Scenario.options(.webSocket))
            try await alice.connect()
            for index in 0..<5 { _ = try await alice.send(.chat(text: "before-\(index)")) }
            let (host, _) = try await zone.hostAndStandby(of: meeting)
            try zone.signal(try await zone.running(host.name).pid, SIGKILL)
            let newHost = try await zone.waitFor("the meeting hosted on another server") { status in
                status.values.first { $0.hosts(meeting) && $0.name != host.name && $0.state == .running }
            }
            for index in 0..<5 { _ = try await alice.send(.chat(text: "after-\(index)")) }

            let collab = try await Exposition.scrape(newHost)
            #expect(collab.value("parley_meetings", ["role": "host"]) == 1)
            #expect(collab.value("parley_connections", ["transport": "websocket"]) == 1, "Alice is attached here now")
            // The five chats after the failover, each committed and delivered to Alice here.
            #expect((collab.value("parley_ops_committed_total") ?? 0) >= 5)
            #expect((collab.value("parley_commit_duration_seconds_count") ?? 0) >= 5)
            #expect((collab.value("parley_commit_batch_entries_sum") ?? 0) >= 5)
            #expect((collab.value("parley_deliveries_total") ?? 0) >= 5)
            #expect(collab.value("parley_store_commit_errors_total") == 0)
            #expect(collab.value("parley_slow_consumers_dropped_total") == 0)

            let status = try await zone.status()
            let leader = try #require(status.values.first { process in
                guard case .object(let load)? = process.load, case .bool(true)? = load["leader"] else { return false }
                return true
            })
            let manager = try await Exposition.scrape(leader)
            #expect(manager.value("parley_manager_leading") == 1)
            #expect((manager.value("parley_manager_term") ?? 0) >= 1)
            #expect((manager.value("parley_placements_total") ?? 0) >= 1, "the meeting was opened")
            #expect((manager.value("parley_failovers_total") ?? 0) >= 1, "its standby was promoted")
            #expect((manager.value("parley_promotion_duration_seconds_count") ?? 0) >= 1)
            #expect(manager.value("parley_lease_changes_total", ["change": "acquired"]) == 1)

            // The supervisor started the killed host again, and says why.
            let supervisorURL = try String(contentsOfFile: zone.data + "/zone/supervisor-metrics-url", encoding: .utf8)
            let supervisor = try await Exposition.scrape(URL(string: supervisorURL.trimmingCharacters(in: .whitespacesAndNewlines))!)
            _ = try await zone.waitFor("the killed host running again") { $0[host.name]?.state == .running ? true : nil }
            let restarted = try await Exposition.scrape(URL(string: supervisorURL.trimmingCharacters(in: .whitespacesAndNewlines))!)
            #expect(restarted.value("parley_process_restarts_total", ["process": host.name.rawValue, "reason": "signaled"]) == 1,
                    "\(restarted.text)")
            #expect(supervisor.value("parley_processes_given_up_total") == nil, "nothing given up")

            // Every process (the restarted host too, once it reports) is ready: it says so with
            // its load, and on its listener's /ready.
            let ready = try await zone.waitFor("every process ready") { status in
                let running = status.values.filter { $0.state == .running }
                return running.count == status.count && running.allSatisfy { process in
                    guard case .object(let load)? = process.load, case .bool(true)? = load["ready"] else { return false }
                    return true
                } ? running : nil
            }
            // Every process serves its metrics; none names a meeting.
            for process in ready {
                let scraped = try await Exposition.scrape(process)
                #expect(!scraped.text.contains(meeting.rawValue), "\(process.name) labels a series with the meeting id")
            }
            for process in ready {
                guard case .object(let load)? = process.load, case .string(let address)? = load["metrics"],
                      let url = URL(string: address.replacingOccurrences(of: "/metrics", with: "/ready")) else { continue }
                let (body, response) = try await URLSession.shared.data(from: url)
                #expect((response as? HTTPURLResponse)?.statusCode == 200, "\(process.name): \(String(decoding: body, as: UTF8.self))")
            }
            await alice.leave()
        }
    }
}

@Suite("Metrics: the catalogue and its documentation")
struct MetricCatalogueTests {
    @Test("docs/operations.md names every metric Parley records, with its type and labels")
    func everyMetricIsDocumented() throws {
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/operations.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        for metric in MetricName.allCases {
            let row = text.split(separator: "\n").first { $0.hasPrefix("| `\(metric.rawValue)` |") }
            guard let row else {
                Issue.record("docs/operations.md has no row for \(metric.rawValue)")
                continue
            }
            #expect(row.contains("| \(metric.kind.rawValue) |"), "\(metric.rawValue) is a \(metric.kind.rawValue): \(row)")
            for label in metric.labels { #expect(row.contains("`\(label)`"), "\(metric.rawValue) carries the label \(label): \(row)") }
        }
    }
}

/// A scrape, parsed enough to read one series.
struct Exposition {
    let text: String

    /// The metrics of `process`, from the address it reports with its load.
    static func scrape(_ process: ProcessStatus) async throws -> Exposition {
        guard case .object(let load)? = process.load, case .string(let address)? = load["metrics"], let url = URL(string: address) else {
            throw HarnessFailure("\(process.name) reports no metrics address: \(String(describing: process.load))")
        }
        return try await scrape(url)
    }

    static func scrape(_ url: URL) async throws -> Exposition {
        let (data, response) = try await URLSession.shared.data(from: url)
        let http = response as? HTTPURLResponse
        guard http?.statusCode == 200 else { throw HarnessFailure("\(url) answered \(http?.statusCode ?? 0)") }
        #expect(http?.value(forHTTPHeaderField: "Content-Type")?.hasPrefix("text/plain; version=0.0.4") == true)
        return Exposition(text: String(decoding: data, as: UTF8.self))
    }

    /// The value of the series `name` with exactly `labels`.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " ") else { continue }
            let series = line[..<space]
            let seriesName = series.prefix { $0 != "{" }
            guard seriesName == name else { continue }
            var found: [String: String] = [:]
            if let open = series.firstIndex(of: "{"), series.hasSuffix("}") {
                let inner = series[series.index(after: open)..<series.index(before: series.endIndex)]
                for pair in inner.split(separator: ",") {
                    let parts = pair.split(separator: "=", maxSplits: 1)
                    guard parts.count == 2 else { continue }
                    found[String(parts[0])] = String(parts[1].dropFirst().dropLast())
                }
            }
            if found == labels { return Double(line[line.index(after: space)...]) }
        }
        return nil
    }
}
