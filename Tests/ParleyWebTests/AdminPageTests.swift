import Foundation
import ParleyWeb
import ParleyZone
import Synchronization
import Testing

/// A zone as the console shows it, scripted: what it reports, and what it was asked to do.
final class ScriptedConsole: ZoneConsole {
    let reports = Mutex<[ProcessStatus]>([])
    let asked = Mutex<[String]>([])
    let failDrain = Mutex<String?>(nil)

    func statuses() async throws -> [ProcessStatus] { reports.withLock { $0 } }
    func restart(_ process: NodeName) async throws -> String {
        asked.withLock { $0.append("restart \(process)") }
        return "restarting \(process)"
    }
    func drain(_ process: NodeName) async throws -> String {
        asked.withLock { $0.append("drain \(process)") }
        if let why = failDrain.withLock({ $0 }) { throw ZoneConsoleError(why) }
        return "drained"
    }
}

@Suite("The operator's zone page")
struct AdminPageTests {
    static var settings: WebSettings {
        var settings = WebServer.fastSettings
        settings.admins = ["root"]
        return settings
    }

    static func collab(_ name: NodeName, hosting: [String], standby: [String], participants: Int, seq: Int,
                       atMs: Int = 1_000) -> ProcessStatus {
        let activity = Dictionary(uniqueKeysWithValues: hosting.map {
            ($0, JSONValue.object(["participants": .number(Double(participants)), "seq": .number(Double(seq))]))
        })
        return ProcessStatus(name: name, role: .collab, pid: 100, state: .running, uptimeMs: 5_000, load: .object([
            "connections": .number(Double(participants)), "meetings": .number(Double(hosting.count)), "cpuPercent": .number(3),
            "hosting": .array(hosting.map(JSONValue.string)), "standby": .array(standby.map(JSONValue.string)),
            "edges": .array([]), "activity": .object(activity), "activityAtMs": .number(Double(atMs)), "ready": .bool(true),
        ]))
    }

    @Test("only the configured administrators see it: others signed in get 403, visitors are sent to sign in")
    func onlyAdministrators() async throws {
        let console = ScriptedConsole()
        try await WebServer.with(Self.settings, console: console) { server in
            let visitor = Visitor(server)
            let anonymous = try await visitor.get("/admin")
            #expect(anonymous.status == 303 || anonymous.status == 302)
            #expect(anonymous.location == "/signin?next=/admin")
            #expect(try await visitor.get("/admin/overview.json").status == 403)

            let mallory = Visitor(server)
            try await mallory.register("mallory", name: "Mallory")
            let refused = try await mallory.get("/admin")
            #expect(refused.status == 403)
            #expect(refused.problemCode == "not_an_administrator")
            let refusedJSON = try await mallory.get("/admin/overview.json")
            #expect(refusedJSON.status == 403 && refusedJSON.body.contains("\"not_an_administrator\""))
            let csrf = try #require(try await mallory.get("/center").csrf)
            #expect(try await mallory.post("/admin/processes/collab-1/restart", [("_csrf", csrf)]).status == 403)
            #expect(console.asked.withLock { $0 } == [], "a non-administrator's action reached the zone")

            let root = Visitor(server)
            try await root.register("root", name: "Root")
            let page = try await root.get("/admin")
            #expect(page.status == 200 && page.body.contains("id=\"processes\"") && page.body.contains("/static/js/admin.js"))
            #expect(server.logs.all.contains { $0.contains("zone page refused") && $0.contains("mallory") })
        }
    }

    @Test("the overview lists processes, meetings with host, standby, participants and op rate, and failovers")
    func overview() async throws {
        let console = ScriptedConsole()
        let clock = TestClock()
        console.reports.withLock {
            $0 = [
                ProcessStatus(name: "manager-1", role: .manager, pid: 10, state: .running, load: .object([
                    "leader": .bool(true), "term": .number(3), "ready": .bool(true),
                    "failovers": .array([.object(["meeting": .string("m-1"), "to": .string("collab-2"),
                                                  "agoMs": .number(4_000), "durationMs": .number(85)])]),
                ])),
                Self.collab("collab-1", hosting: ["m-1"], standby: [], participants: 2, seq: 10),
                Self.collab("collab-2", hosting: [], standby: ["m-1"], participants: 0, seq: 0),
                ProcessStatus(name: "services", role: .services, state: .waiting, restarts: 2, detail: "restarting in 400 ms"),
            ]
        }
        try await WebServer.with(Self.settings, clock: clock.read, console: console) { server in
            let root = Visitor(server)
            try await root.register("root", name: "Root")
            let first = try JSONDecoder().decode(ZoneOverview.self, from: Data(try await root.get("/admin/overview.json").body.utf8))
            #expect(first.processes.map(\.name) == ["manager-1", "collab-1", "collab-2", "services"])
            #expect(first.processes[0].load == "leader, term 3")
            #expect(first.processes[1].actions == ["drain", "restart"] && first.processes[1].ready == true)
            #expect(first.processes[3].ready == nil && first.processes[3].detail == "restarting in 400 ms")
            let meeting = try #require(first.meetings.first)
            #expect(first.meetings.count == 1)
            #expect(meeting.id == "m-1" && meeting.host == "collab-1" && meeting.standby == "collab-2" && meeting.edges == [])
            #expect(meeting.participants == 2 && meeting.seq == 10 && meeting.opsPerSecond == nil)
            let failover = try #require(first.failovers.first)
            #expect(first.failovers.count == 1)
            #expect(failover.meeting == "m-1" && failover.to == "collab-2" && failover.agoMs == 4_000 && failover.durationMs == 85)

            // The host reports two seconds and 30 entries later: 15 ops a second, measured
            // between its reports (the viewer's own timing does not matter).
            console.reports.withLock { $0[1] = Self.collab("collab-1", hosting: ["m-1"], standby: [], participants: 3, seq: 40, atMs: 3_000) }
            clock.advance(byMs: 500)
            let cached = try JSONDecoder().decode(ZoneOverview.self, from: Data(try await root.get("/admin/overview.json").body.utf8))
            #expect(cached == first, "an overview under a second old is shared, not asked of the zone again")
            clock.advance(byMs: 1_000)
            let second = try JSONDecoder().decode(ZoneOverview.self, from: Data(try await root.get("/admin/overview.json").body.utf8))
            #expect(second.meetings.first?.opsPerSecond == 15)
            #expect(second.meetings.first?.participants == 3)
            // The same report seen again (another viewer, a second later): the same rate, not zero.
            clock.advance(byMs: 1_000)
            let third = try JSONDecoder().decode(ZoneOverview.self, from: Data(try await root.get("/admin/overview.json").body.utf8))
            #expect(third.meetings.first?.opsPerSecond == 15)
        }
    }

    @Test("drain and restart need the page's CSRF token; the outcome, or why it failed, is answered")
    func actions() async throws {
        let console = ScriptedConsole()
        try await WebServer.with(Self.settings, console: console) { server in
            let root = Visitor(server)
            try await root.register("root", name: "Root")
            let page = try await root.get("/admin")
            let csrf = try #require(page.body.range(of: "data-csrf=\"").map { String(page.body[$0.upperBound...].prefix { $0 != "\"" }) })

            let forged = try await root.post("/admin/processes/collab-1/restart", [("_csrf", "forged")])
            #expect(forged.status == 403 && forged.body.contains("\"csrf_failed\""))
            let missing = try await root.post("/admin/processes/collab-1/drain", [])
            #expect(missing.status == 403)
            #expect(console.asked.withLock { $0 } == [])

            let restarted = try await root.post("/admin/processes/collab-1/restart", [("_csrf", csrf)])
            #expect(restarted.status == 200 && restarted.body.contains("restarting collab-1"))
            console.failDrain.withLock { $0 = "collab-9 is not a collab server of this zone" }
            let drained = try await root.post("/admin/processes/collab-9/drain", [("_csrf", csrf)])
            #expect(drained.status == 409 && drained.body.contains("\"drain_failed\"") && drained.body.contains("collab-9 is not a collab server"))
            #expect(console.asked.withLock { $0 } == ["restart collab-1", "drain collab-9"])
            #expect(server.logs.all.contains { $0.contains("operator action") && $0.contains("root") && $0.contains("collab-1") })
        }
    }

    @Test("an administrator named before the account exists is logged at startup, loudly; a name that is not a username is refused")
    func unclaimedAdministrator() async throws {
        var settings = Self.settings
        settings.admins = ["root", "ops"]
        try await WebServer.with(settings) { server in
            #expect(server.logs.all.filter { $0.contains("web.admins names an account that does not exist") }.count == 2)
        }
        settings.admins = ["Root"]
        #expect(settings.problems() == ["web.admins: 'Root' is not a username (3 to 32 lower-case letters, digits, '.', '-' and '_')"])
    }

    @Test("with --single there is no zone: the page says so")
    func single() async throws {
        try await WebServer.with(Self.settings) { server in
            let root = Visitor(server)
            try await root.register("root", name: "Root")
            let overview = try await root.get("/admin/overview.json")
            #expect(overview.status == 404 && overview.body.contains("\"no_zone\""))
        }
    }
}
