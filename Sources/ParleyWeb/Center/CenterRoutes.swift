import Foundation
import Hummingbird
import ParleyCore
import ParleyServer
import ParleyStore

/// The meeting center: a signed-in user's current and scheduled meetings, and the form
/// that creates one.
struct CenterRoutes: Sendable {
    let web: WebContext

    struct CreateForm: Decodable, CSRFProtected {
        var _csrf: String?
        var title: String?
        var date: String?
        var time: String?
        var tzOffsetMinutes: String?
        var attendees: String?
        var maxParticipants: String?
        var password: String?
        var chat: String?
        var privateChat: String?
        var annotation: String?
        var polls: String?
        var applicationSharing: String?
        /// `start` or `schedule`.
        var action: String?
    }

    struct StartForm: Decodable, CSRFProtected {
        var _csrf: String?
    }

    func add(to router: Router<ParleyRequestContext>) {
        router.get("/center") { request, _ in
            guard let account = try await web.signedIn(request) else { return Response.redirect(to: "/signin?next=/center") }
            let created = request.uri.queryParameters.get("created").map { MeetingID(String($0)) }
            return try await centerPage(request, account: account, created: created).response()
        }
        router.post("/center/meetings") { request, context in
            guard let account = try await web.signedIn(request) else { return Response.redirect(to: "/signin?next=/center") }
            let form = try await web.form(request, as: CreateForm.self, back: "/center")
            try web.limits.take(.createMeeting, request, context: context, web: web)
            return try await create(form, by: account, request: request)
        }
        router.post("/center/meetings/:id/start") { request, context in
            guard let account = try await web.signedIn(request) else { return Response.redirect(to: "/signin?next=/center") }
            _ = try await web.form(request, as: StartForm.self, back: "/center")
            let id = MeetingID(try context.parameters.require("id"))
            guard let listing = try await web.storeCall({ try await web.accounts.listing(id) }), listing.owner == account.id else {
                throw PageError(.problem(.notFound, code: "unknown_meeting", message: "you have no meeting \(id.rawValue.prefix(64)) to start", back: "/center"))
            }
            try await web.storeCall { try await web.accounts.markStarted(id, at: web.now()) }
            return Response.redirect(to: "/m/\(id)", type: .found)
        }
    }

    private func create(_ form: CreateForm, by account: Account, request: Request) async throws -> Response {
        var problems: [String] = []
        let starting = form.action != "schedule"
        var scheduledAt: Millis?
        if !starting {
            do {
                scheduledAt = try MeetingSchedule.moment(date: form.date ?? "", time: form.time ?? "",
                                                         offsetMinutes: Int(form.tzOffsetMinutes ?? "0") ?? 0)
            } catch .unreadable(let why) {
                problems.append(why)
            }
        }
        let maxParticipants = Int((form.maxParticipants ?? "").trimmingCharacters(in: .whitespaces)) ?? 0
        let features = Features(chat: form.chat != nil, privateChat: form.privateChat != nil, annotation: form.annotation != nil,
                                polls: form.polls != nil, applicationSharing: form.applicationSharing != nil)
        var record: MeetingRecord?
        do {
            record = try MeetingRecord.new(title: form.title ?? "", settings: MeetingSettings(maxParticipants: maxParticipants, features: features),
                                           at: web.now())
        } catch {
            problems.append(error.message)
        }
        let attendees = Array(Set((form.attendees ?? "").lowercased()
            .split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\n" || $0 == "\r" }).map(String.init))).sorted()
        var unknown: [String] = []
        for username in attendees where try await web.storeCall({ try await web.accounts.account(username: username) }) == nil {
            unknown.append(username)
        }
        if !unknown.isEmpty { problems.append("no account is called \(unknown.joined(separator: ", "))") }
        let password = form.password ?? ""
        if password.count > AccountRoutes.passwordLength.upperBound { problems.append("a meeting password has at most 200 characters") }
        guard problems.isEmpty, let record else {
            return try await centerPage(request, account: account, problems: problems, status: .badRequest).response()
        }
        try await web.storeCall { try await web.meetings.createMeeting(record) }
        let now = web.now()
        try await web.storeCall {
            try await web.accounts.createListing(MeetingListing(
                meeting: record.id, owner: account.id, scheduledAt: scheduledAt, attendees: attendees,
                passwordHash: password.isEmpty ? nil : try await web.passwords.hash(password),
                startedAt: starting ? now : nil, createdAt: now))
        }
        web.logger.info("meeting created", metadata: [
            "meeting": "\(record.id)", "owner": "\(account.id)", "scheduled": "\(scheduledAt.map(AccountRoutes.time) ?? "now")",
        ])
        return Response.redirect(to: starting ? "/m/\(record.id)" : "/center?created=\(record.id)", type: .found)
    }

    /// A join link as a read-only field; the page's script turns `data-path` into the full
    /// address the browser used (scheme, host, port), which the server cannot know behind a
    /// proxy, and shows the copy button.
    static func joinLink(_ path: String, id: String, label: String) -> String {
        """
        <span class="join-box"><input class="join-link join-url" id="\(Escaped(id))" readonly value="\(Escaped(path))" \
        data-path="\(Escaped(path))" aria-label="\(Escaped(label))"> \(copyButton(for: id))</span>
        """
    }

    /// Hidden until the script can copy (it needs JavaScript).
    static func copyButton(for target: String) -> String {
        """
        <button type="button" class="copy-link" data-copy="\(Escaped(target))" hidden>Copy link</button>\
        <span class="copy-status" role="status" aria-live="polite"></span>
        """
    }

    private func centerPage(_ request: Request, account: Account, created: MeetingID? = nil, problems: [String] = [],
                            status: HTTPResponse.Status = .ok) async throws -> HTMLPage {
        let (csrf, _) = web.cookies.csrf(for: request)
        let listings = try await web.storeCall { try await web.accounts.listings(for: account) }
        var current = ""
        var scheduled = ""
        for listing in listings {
            guard let record = try await web.storeCall({ try await web.meetings.meeting(listing.meeting) }) else { continue }
            let link = "/m/\(listing.meeting)"
            let owner = listing.owner == account.id
            let when = listing.scheduledAt.map { "<time datetime=\"\(Escaped(AccountRoutes.time($0)))\">\(Escaped(AccountRoutes.time($0)))</time>" } ?? ""
            let start = owner && listing.startedAt == nil ? """
                <form method="post" action="/center/meetings/\(Escaped(listing.meeting.rawValue))/start" class="inline">
                <input type="hidden" name="_csrf" value="\(Escaped(csrf))"><button type="submit" class="start">Start now</button></form>
                """ : ""
            let item = """
                <li class="listing" data-meeting="\(Escaped(listing.meeting.rawValue))">
                <a class="listing-title" href="\(Escaped(link))">\(Escaped(record.title))</a> \(when)
                <span class="listing-role">\(owner ? "host" : "invited")</span>
                \(Self.joinLink(link, id: "join-link-\(listing.meeting.rawValue)", label: "Join link for \(record.title)")) \(start)
                </li>
                """
            if listing.startedAt != nil { current += item } else { scheduled += item }
        }
        let notice = created.map { id in
            let link = "/m/\(id.rawValue)"
            return """
                <div class="notice" id="created" role="status"><p>Meeting scheduled. Send this link to the people you invite:</p>
                <p class="join-box"><a id="created-link" href="\(Escaped(link))" class="join-url" data-path="\(Escaped(link))">\(Escaped(link))</a>
                \(Self.copyButton(for: "created-link"))</p></div>
                """
        } ?? ""
        let errors = problems.map { "<li>\(Escaped(HTMLPage.sentence($0)))</li>" }.joined()
        // The box first, then its text, in one label: the box sits left of its name.
        let checkbox = { (name: String, label: String) in
            "<label class=\"check\" id=\"feature-\(name)-label\"><input type=\"checkbox\" name=\"\(name)\" id=\"feature-\(name)\" checked><span>\(label)</span></label>"
        }
        return HTMLPage(title: "Meeting center", body: """
            <header class="bar"><span class="brand">Parley</span>
            <span id="account-name">\(Escaped(account.displayName))</span> <a href="/account/sessions" id="sessions-link">Sessions</a>
            <form method="post" action="/signout" class="inline"><input type="hidden" name="_csrf" value="\(Escaped(csrf))">
            <button type="submit" id="sign-out">Sign out</button></form></header>
            <main class="center">
            \(notice)
            \(errors.isEmpty ? "" : "<ul class=\"error\" id=\"problem\" role=\"alert\">\(errors)</ul>")
            <section><h2>Now</h2><ul id="current-meetings">\(current.isEmpty ? "<li class=\"empty\">No meeting is running.</li>" : current)</ul></section>
            <section><h2>Scheduled</h2><ul id="scheduled-meetings">\(scheduled.isEmpty ? "<li class=\"empty\">Nothing scheduled.</li>" : scheduled)</ul></section>
            <section><h2>New meeting</h2>
            <form method="post" action="/center/meetings" class="stack" id="create-meeting">
            <input type="hidden" name="_csrf" value="\(Escaped(csrf))">
            <input type="hidden" name="tzOffsetMinutes" id="tz-offset" value="0">
            <label>Title <input name="title" id="meeting-title" required maxlength="\(ModelLimits.titleLength)"></label>
            <div class="row"><label>Date <input type="date" name="date" id="meeting-date" aria-describedby="schedule-problem"></label>
            <label>Time <input type="time" name="time" id="meeting-time" aria-describedby="schedule-problem"></label>
            <span class="hint">Needed to schedule; <em>Start now</em> needs neither.</span></div>
            <p class="error" id="schedule-problem" role="alert" hidden></p>
            <label>Attendees (usernames, separated by commas) <input name="attendees" id="meeting-attendees"></label>
            <div class="row"><label>Maximum participants (0: no limit) <input type="number" min="0" name="maxParticipants" id="meeting-max" value="0"></label>
            <label>Meeting password for guests (optional) <input type="password" name="password" id="meeting-password" autocomplete="new-password"></label></div>
            <fieldset class="features"><legend>Features</legend>
            \(checkbox("chat", "Chat")) \(checkbox("privateChat", "Private chat")) \(checkbox("annotation", "Annotation"))
            \(checkbox("polls", "Polls")) \(checkbox("applicationSharing", "Application sharing"))
            </fieldset>
            <div class="row"><button type="submit" name="action" value="start" id="start-now">Start now</button>
            <button type="submit" name="action" value="schedule" id="schedule">Schedule</button></div>
            </form></section>
            </main>
            <script type="module" src="/static/js/center.js"></script>
            """, status: status)
    }
}
