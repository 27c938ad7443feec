import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import ParleyCore
import ParleyProtocol
import ParleyServer
import ParleyStore
import ParleyTelemetry
import ParleyTestSupport
@testable import ParleyWeb
import ParleyZone
import Testing

@Suite("Sign-in lock-out rule")
struct SignInLockoutTests {
    let rule = SignInLockout(maxFailures: 3, lockMillis: 60_000)

    @Test("one after another: the Nth wrong password locks until now + lock; a success before that starts the count again")
    func locksAfterN() {
        var state = SignInState()
        for attempt in 1...2 {
            #expect(rule.begin(&state, now: 1_000) == .check(attempt: attempt, lockEnded: nil))
            #expect(rule.failed(&state, now: 1_000) == nil, "not locked yet")
        }
        var succeeding = state
        #expect(rule.begin(&succeeding, now: 1_000) == .check(attempt: 3, lockEnded: nil))
        #expect(rule.succeeded(&succeeding, now: 1_000) == nil)
        #expect(succeeding == SignInState())
        #expect(rule.begin(&state, now: 5_000) == .check(attempt: 3, lockEnded: nil))
        #expect(rule.failed(&state, now: 5_000) == 65_000, "the third failure locks")
        #expect(state == SignInState(failures: 3, lockedUntil: 65_000))
    }

    @Test("at once: attempts beyond N are refused unchecked, the first of them setting the lock; a right password checked meanwhile does not lift it")
    func parallelAttempts() {
        var state = SignInState()
        let attempts = (0..<5).map { _ in rule.begin(&state, now: 1_000) }
        #expect(attempts == [.check(attempt: 1, lockEnded: nil), .check(attempt: 2, lockEnded: nil), .check(attempt: 3, lockEnded: nil),
                             .locked(until: 61_000, lockedNow: true), .locked(until: 61_000, lockedNow: false)])
        #expect(rule.succeeded(&state, now: 1_000) == 61_000, "refused: locked by an attempt beside it")
        #expect(rule.failed(&state, now: 1_000) == nil, "locked already; not again")
        #expect(state == SignInState(failures: 4, lockedUntil: 61_000))
    }

    @Test("while locked the password is not checked; after the lock the count starts again and the end is reported")
    func lockEnds() {
        var locked = SignInState(failures: 3, lockedUntil: 65_000)
        #expect(rule.begin(&locked, now: 64_999) == .locked(until: 65_000, lockedNow: false))
        #expect(locked == SignInState(failures: 3, lockedUntil: 65_000), "nothing counted while locked")
        #expect(rule.begin(&locked, now: 65_000) == .check(attempt: 1, lockEnded: 65_000))
        #expect(locked == SignInState(failures: 1))
    }
}

@Suite("Meeting schedule times")
struct MeetingScheduleTests {
    @Test("a local date and time becomes the right instant, whatever the time zone")
    func moments() throws {
        // 2026-12-01 10:30 at UTC+1 (offset -60) is 09:30Z.
        #expect(try MeetingSchedule.moment(date: "2026-12-01", time: "10:30", offsetMinutes: -60) == 1_796_117_400_000)
        #expect(try MeetingSchedule.moment(date: "1970-01-01", time: "00:00", offsetMinutes: 0) == 0)
        #expect(try MeetingSchedule.moment(date: "2028-02-29", time: "23:59", offsetMinutes: 300) == 1_835_499_540_000)
        #expect(throws: MeetingSchedule.Problem.self) { try MeetingSchedule.moment(date: "2027-02-29", time: "10:00", offsetMinutes: 0) }
        #expect(throws: MeetingSchedule.Problem.self) { try MeetingSchedule.moment(date: "tomorrow", time: "10:00", offsetMinutes: 0) }
    }
}

@Suite("Accounts, CSRF and escaping over HTTP", MachineLoad.server, .timeLimit(.minutes(1)))
struct AccountHTTPTests {
    @Test("N failed sign-ins lock the account, even against the right password, until the lock ends; both are logged")
    func lockout() async throws {
        var settings = WebServer.fastSettings
        settings.maxFailedSignIns = 3
        settings.lockoutSeconds = 3
        // The server's clock moves only when the test says, so the lock lasts exactly as long
        // as the test means, however slow the machine.
        let clock = TestClock()
        let metrics = ProcessMetrics.prometheus()
        try await WebServer.with(settings, clock: clock.read, metrics: metrics) { server in
            let owner = Visitor(server)
            #expect(try await owner.register("ann", name: "Ann", password: "right password").location == "/center")
            let attacker = Visitor(server)
            for attempt in 1...2 {
                let page = try await attacker.signIn("ann", password: "guess \(attempt)")
                #expect(page.status == 401)
                #expect(page.body.contains("Wrong username or password."))
            }
            let third = try await attacker.signIn("ann", password: "guess 3")
            #expect(third.status == 403)
            #expect(third.body.contains("This account is locked for a while after too many failed sign-ins. You can try again"))
            #expect(third.body.contains("\">in 1 minute (at ") && third.body.contains(" UTC)</time>."), "the server's own wording, before the script localizes it")
            #expect(server.logs.contains("account locked after failed sign-ins"))
            let meanwhile = try await Visitor(server).signIn("ann", password: "right password")
            #expect(meanwhile.status == 403, "the right password does not open a locked account")
            #expect(meanwhile.cookie(named: "parley_session") == nil)
            clock.advance(byMs: 3_200)
            let after = try await Visitor(server).signIn("ann", password: "right password")
            #expect(after.status == 302 && after.location == "/center")
            #expect(server.logs.contains("account lock ended"))
            // And counted, as /metrics shows them.
            let (scraped, _) = try await URLSession.shared.data(from: server.base.appendingPathComponent("metrics"))
            let lines = Set(String(decoding: scraped, as: UTF8.self).split(separator: "\n").map(String.init))
            for line in [#"parley_sign_ins_total{outcome="wrong_password"} 3"#, #"parley_sign_ins_total{outcome="locked"} 1"#,
                         #"parley_sign_ins_total{outcome="signed_in"} 1"#, "parley_lockouts_total 1"] {
                #expect(lines.contains(line), "no \(line) in /metrics")
            }
        }
    }

    @Test("guesses sent at once get no more tries than guesses one after another: of eight wrong passwords at once with a limit of five, the account ends locked, and the right password is refused")
    func parallelGuessesLock() async throws {
        var settings = WebServer.fastSettings
        settings.maxFailedSignIns = 5
        try await WebServer.with(settings) { server in
            #expect(try await Visitor(server).register("ann", name: "Ann", password: "right password").location == "/center")
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for attempt in 0..<8 { group.addTask { try await Visitor(server).signIn("ann", password: "guess \(attempt)").status } }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            // Five are checked (wrong: 401, or 403 for the one that locks, if it locks before
            // an attempt beyond the limit does); the other three are refused unchecked (403).
            let wrong = statuses.filter { $0 == 401 }.count
            #expect((4...5).contains(wrong) && statuses.filter { $0 == 403 }.count == 8 - wrong, "\(statuses)")
            #expect(try await Visitor(server).signIn("ann", password: "right password").status == 403)
            #expect(server.logs.all.filter { $0.contains("account locked after failed sign-ins") }.count == 1, "logged once")
        }
    }

    @Test("session cookies are HttpOnly and SameSite; signing out ends the session")
    func cookies() async throws {
        try await WebServer.with { server in
            let ann = Visitor(server)
            let registered = try await ann.register("ann", name: "Ann")
            let session = try #require(registered.setCookies.first { $0.hasPrefix("parley_session=") })
            #expect(session.contains("HttpOnly") && session.contains("SameSite=Lax") && session.contains("Path=/"))
            let center = try await ann.get("/center")
            #expect(center.status == 200 && center.body.contains("id=\"account-name\">Ann<"))
            let out = try await ann.post("/signout", [("_csrf", center.csrf ?? "")])
            #expect(out.location == "/signin")
            #expect(try await ann.get("/center").location == "/signin?next=/center")
        }
    }

    @Test("a form without this browser's CSRF token changes nothing and says csrf_failed")
    func csrf() async throws {
        try await WebServer.with { server in
            let ann = Visitor(server)
            _ = try await ann.get("/register")
            let missing = try await ann.post("/register", [("username", "ann"), ("displayName", "Ann"), ("password", "correct horse")])
            #expect(missing.status == 403 && missing.problemCode == "csrf_failed")
            let forged = try await ann.post("/register", [("_csrf", "forged"), ("username", "ann"), ("displayName", "Ann"), ("password", "correct horse")])
            #expect(forged.status == 403 && forged.problemCode == "csrf_failed")
            #expect(try await ann.signIn("ann", password: "correct horse").status == 401, "no account was created")

            // A signed-in user's form, replayed with another browser's token (what a
            // cross-site page could at best obtain), is refused too.
            try await ann.register("ann", name: "Ann")
            let mallory = Visitor(server)
            try await mallory.register("mallory", name: "Mallory")
            let stolen = try #require(try await mallory.get("/center").csrf)
            let attack = try await ann.post("/center/meetings", [("_csrf", stolen), ("title", "Planted"), ("action", "start")])
            #expect(attack.status == 403 && attack.problemCode == "csrf_failed")
            let annCenter = try await ann.get("/center")
            #expect(!annCenter.body.contains("Planted"))
            let created = try await ann.post("/center/meetings", [("_csrf", annCenter.csrf ?? ""), ("title", "Real"), ("chat", "on"), ("action", "start")])
            #expect(created.status == 302 && created.location?.hasPrefix("/m/m-") == true)
        }
    }

    @Test("script in names and titles is shown as text in every page and in the page's bootstrap data")
    func escaping() async throws {
        try await WebServer.with { server in
            let script = "<script>alert('x')</script>"
            let ann = Visitor(server)
            try await ann.register("ann", name: script)
            let center = try await ann.get("/center")
            #expect(!center.body.contains(script))
            #expect(center.body.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"))
            #expect(center.headers["content-security-policy"]?.contains("script-src 'self'") == true)
            let created = try await ann.post("/center/meetings", [("_csrf", center.csrf ?? ""), ("title", "</script>" + script), ("action", "start")])
            let meeting = try #require(created.location)
            let page = try await ann.get(meeting)
            #expect(page.status == 200)
            #expect(!page.body.contains(script) && !page.body.contains("</script><script>"))
            #expect(page.body.contains(#"\u003cscript>alert('x')\u003c\/script>"#))

            let guest = Visitor(server)
            let form = try await guest.get(meeting)
            #expect(form.body.contains("id=\"guest-name\""))
            let joined = try await guest.post(meeting + "/join", [("_csrf", form.csrf ?? ""), ("name", script)])
            #expect(joined.location == meeting)
            let guestPage = try await guest.get(meeting)
            #expect(!guestPage.body.contains(script) && guestPage.body.contains("parley-bootstrap"))
        }
    }

    @Test("the meeting page is told the other fronts to choose from (web.otherFronts); ping and locate answer any origin, so it may ask them")
    func otherFrontsOnThePage() async throws {
        var settings = WebServer.fastSettings
        settings.otherFronts = ["https://m2.example:8443", "https://m3.example:8443"]
        try await WebServer.with(settings) { server in
            let ann = Visitor(server)
            try await ann.register("ann", name: "Ann")
            let center = try await ann.get("/center")
            let created = try await ann.post("/center/meetings", [("_csrf", center.csrf ?? ""), ("title", "Fronts"), ("action", "start")])
            let page = try await ann.get(try #require(created.location))
            #expect(page.body.contains(#""otherFronts":["https:\/\/m2.example:8443","https:\/\/m3.example:8443"]"#), "\(page.body)")
            let ping = try await ann.get("/v1/ping")
            #expect(ping.status == 200)
            #expect(ping.headers["access-control-allow-origin"] == "*")
        }
        #expect(WebSettings(otherFrontsForTest: ["m2.example"]).problems() == ["web.otherFronts: 'm2.example' must be an http:// or https:// origin without a trailing slash"])
    }

    @Test("guests need the meeting password when there is one; a guest seat is good for its own meeting only")
    func guests() async throws {
        try await WebServer.with { server in
            let ann = Visitor(server)
            try await ann.register("ann", name: "Ann")
            let center = try await ann.get("/center")
            let locked = try #require(try await ann.post("/center/meetings", [
                ("_csrf", center.csrf ?? ""), ("title", "Board"), ("password", "s3cret"), ("action", "start"),
            ]).location)
            let open = try #require(try await ann.post("/center/meetings", [("_csrf", center.csrf ?? ""), ("title", "Open"), ("action", "start")]).location)
            #expect(try await ann.get(locked).body.contains("\"role\":\"host\""), "the owner needs no password")

            let guest = Visitor(server)
            let form = try await guest.get(locked)
            #expect(form.body.contains("guest-password"))
            let wrong = try await guest.post(locked + "/join", [("_csrf", form.csrf ?? ""), ("name", "Gus"), ("password", "guess")])
            #expect(wrong.status == 403 && wrong.body.contains("That is not the meeting password."))
            let right = try await guest.post(locked + "/join", [("_csrf", form.csrf ?? ""), ("name", "Gus"), ("password", "s3cret")])
            #expect(right.location == locked)
            let seat = try #require(guest.cookie("parley_guest"))
            let inside = try await guest.get(locked)
            #expect(inside.body.contains("\"role\":\"attendee\"") && inside.body.contains("\"name\":\"Gus\""))

            // The same seat presented to another meeting is not a seat there.
            let elsewhere = Visitor(server)
            elsewhere.setCookie("parley_guest", seat)
            #expect(try await elsewhere.get(open).body.contains("guest-name"))
            // Nor is a seat whose signature was tampered with.
            let tampered = Visitor(server)
            tampered.setCookie("parley_guest", String(seat.dropLast(2)) + "xx")
            #expect(try await tampered.get(locked).body.contains("guest-name"))
        }
    }

    @Test("scheduling needs a real date; scheduled and running meetings are listed apart; invited users see them")
    func center() async throws {
        try await WebServer.with { server in
            let bob = Visitor(server)
            try await bob.register("bob", name: "Bob")
            let ann = Visitor(server)
            try await ann.register("ann", name: "Ann")
            let csrf = try #require(try await ann.get("/center").csrf)
            let bad = try await ann.post("/center/meetings", [("_csrf", csrf), ("title", "Later"), ("action", "schedule"), ("date", "2026-02-30"), ("time", "10:00")])
            #expect(bad.status == 400 && bad.body.contains("30 February 2026 is not a day of the calendar; choose another day."))
            let missing = try await ann.post("/center/meetings", [("_csrf", csrf), ("title", "Later"), ("action", "schedule"), ("date", ""), ("time", "")])
            #expect(missing.status == 400 && missing.body.contains("To schedule a meeting, choose the day and the time it starts."))
            #expect(!missing.body.contains("YYYY") && !bad.body.contains("YYYY"))
            let unknown = try await ann.post("/center/meetings", [("_csrf", csrf), ("title", "Later"), ("action", "start"), ("attendees", "bob, zed")])
            #expect(unknown.status == 400 && unknown.body.contains("No account is called zed."))
            let scheduled = try await ann.post("/center/meetings", [
                ("_csrf", csrf), ("title", "Planning"), ("action", "schedule"), ("date", "2026-12-01"), ("time", "10:30"),
                ("tzOffsetMinutes", "-60"), ("attendees", "bob"),
            ])
            let id = try #require(scheduled.location?.split(separator: "=").last.map(String.init))
            let page = try await ann.get("/center?created=\(id)")
            #expect(page.body.contains("id=\"created-link\" href=\"/m/\(id)\""))
            #expect(page.body.contains("2026-12-01T09:30:00Z"))
            let scheduledSection = try #require(page.body.range(of: "id=\"scheduled-meetings\""))
            #expect(page.body[scheduledSection.upperBound...].contains("data-meeting=\"\(id)\""))
            #expect(try await bob.get("/center").body.contains("data-meeting=\"\(id)\""), "the invited user sees it")
        }
    }
}

@Suite("Words for people")
struct WordingTests {
    @Test("a lock-out's end is said relative to now, in minutes and hours")
    func relative() {
        #expect(AccountRoutes.relative(remainingMs: 900_000) == "in 15 minutes")
        #expect(AccountRoutes.relative(remainingMs: 899_001) == "in 15 minutes")
        #expect(AccountRoutes.relative(remainingMs: 60_000) == "in 1 minute")
        #expect(AccountRoutes.relative(remainingMs: 0) == "in less than a minute")
        #expect(AccountRoutes.relative(remainingMs: 3_900_000) == "in 1 hour and 5 minutes")
        #expect(AccountRoutes.relative(remainingMs: 7_200_000) == "in 2 hours")
        #expect(AccountRoutes.lockedMessage(until: 1_800_000_000_000 + 900_000, now: 1_800_000_000_000).contains("in 15 minutes (at 08:15 UTC)"))
    }

    @Test("server phrases become sentences")
    func sentences() {
        #expect(HTMLPage.sentence("no account is called zed") == "No account is called zed.")
        #expect(HTMLPage.sentence("Already one.") == "Already one.")
        #expect(HTMLPage.sentence("  ") == "")
    }

    @Test("a problem page keeps its code for scripts, out of the text people read")
    func problemPage() async throws {
        try await WebServer.with { server in
            let page = try await Visitor(server).get("/m/m-nosuchmeeting")
            #expect(page.status == 404 && page.problemCode == "unknown_meeting")
            #expect(page.body.contains("There is no meeting m-nosuchmeeting. Check the link you were given."))
            #expect(!page.body.contains("(unknown_meeting)"))
        }
    }

    @Test("a guest who came with ?transport=poll is sent back to the meeting with it; anything else is dropped")
    func transportKept() async throws {
        try await WebServer.with { server in
            let ann = Visitor(server)
            try await ann.register("ann", name: "Ann")
            let center = try await ann.get("/center")
            let meeting = try #require(try await ann.post("/center/meetings", [("_csrf", center.csrf ?? ""), ("title", "Open"), ("action", "start")]).location)
            let guest = Visitor(server)
            let form = try await guest.get(meeting + "?transport=poll")
            #expect(form.field("transport") == "poll")
            #expect(form.body.contains("/signin?next=\(meeting)%3Ftransport%3Dpoll"), "signing in instead comes back with it too")
            let joined = try await guest.post(meeting + "/join", [("_csrf", form.csrf ?? ""), ("name", "Gus"), ("transport", "poll")])
            #expect(joined.location == meeting + "?transport=poll")
            let page = try await guest.get(meeting + "?transport=poll")
            #expect(page.body.contains("\"guest\":true") && page.body.contains("\"guestPrefix\":\"g-\""))
            let odd = Visitor(server)
            let oddForm = try await odd.get(meeting + "?transport=%22%3E%3Cscript%3E")
            #expect(oddForm.field("transport") == nil && !oddForm.body.contains("<script>"))
            let oddJoin = try await odd.post(meeting + "/join", [("_csrf", oddForm.csrf ?? ""), ("name", "Od"), ("transport", "https://evil.example")])
            #expect(oddJoin.location == meeting)
        }
    }
}

@Suite("Join tokens")
struct JoinTokenKeyTests {
    @Test("a hosting server verifies tokens with the public key alone and cannot issue any")
    func verifyOnly() async throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("parley-keys-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        await #expect(throws: TokenKeyError.self) { try await TokenAuthority(verifyingIn: data) }
        let web = try await TokenAuthority(signingIn: data, lifetimeSeconds: 60)
        let token = try await web.issue(meeting: "m-1", participant: "p-1", name: "Ann", role: .host)
        let host = try await TokenAuthority(verifyingIn: data)
        #expect(await host.canIssue == false)
        let claims = try await host.verify(token)
        #expect(claims.participant == "p-1" && claims.meeting == "m-1" && claims.role == .host)
        // Another data directory's key pair does not verify it.
        let other = FileManager.default.temporaryDirectory.appendingPathComponent("parley-keys-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: other) }
        _ = try await TokenAuthority(signingIn: other, lifetimeSeconds: 60)
        await #expect(throws: ProtocolError.self) { try await TokenAuthority(verifyingIn: other).verify(token) }
    }
}

extension WebSettings {
    init(otherFrontsForTest fronts: [String]) {
        self.init()
        otherFronts = fronts
    }
}
