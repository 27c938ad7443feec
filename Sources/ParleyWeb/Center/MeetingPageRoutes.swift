import Foundation
import Hummingbird
import ParleyCore
import ParleyServer
import ParleyStore

/// The meeting page at `/m/ID`: for a signed-in user or a guest who has a seat, the page
/// shell with a fresh join token; for anyone else, the guest form (name, and the meeting
/// password if there is one).
struct MeetingPageRoutes: Sendable {
    let web: WebContext

    struct GuestForm: Decodable, CSRFProtected {
        var _csrf: String?
        var name: String?
        var password: String?
        /// The page's `?transport=`, carried through the form so the redirect keeps it.
        var transport: String?
    }

    /// What the page's script starts from (`#parley-bootstrap`).
    struct Bootstrap: Encodable {
        var meeting: String
        var title: String
        var token: String
        var participant: String
        var name: String
        var role: Role
        /// This page's user is a guest (no account): there is no meeting center to go back to.
        var guest: Bool
        /// Guests' participant ids start with this, so the page can mark them in the attendee list.
        var guestPrefix: String
        /// Other web fronts the page may locate the meeting through (`web.otherFronts`).
        var otherFronts: [String]
    }

    /// The web zone gives guests ids `g-…` (accounts' are `a-…`, the API's `p-…`).
    static let guestPrefix = "g"

    /// The `?transport=` values the page understands (main.js); anything else is dropped.
    static let transports: Set<String> = ["poll", "long-poll", "websocket", "ws"]

    /// `?transport=X` for a link or redirect, if `value` is one the page understands.
    static func transportQuery(_ value: String?) -> String {
        guard let value, transports.contains(value) else { return "" }
        return "?transport=\(value)"
    }

    func add(to router: Router<ParleyRequestContext>) {
        router.get("/m/:id") { request, context in
            let id = MeetingID(try context.parameters.require("id"))
            let (record, listing) = try await meeting(id)
            let account = try await web.signedIn(request)
            if let account {
                let owner = listing?.owner == account.id
                let invited = listing?.attendees.contains(account.username) ?? false
                if owner || invited || listing?.passwordHash == nil {
                    if owner { try await web.storeCall { try await web.accounts.markStarted(id, at: web.now()) } }
                    return try await shell(record, participant: ParticipantID(account.id), name: account.displayName,
                                           role: owner ? .host : .attendee, guest: false)
                }
            }
            if let seat = web.cookies.guestSeat(in: request, meeting: id) {
                return try await shell(record, participant: ParticipantID(seat.p), name: seat.n, role: .attendee, guest: true)
            }
            return guestPage(request, record, listing, name: account?.displayName ?? "",
                             transport: request.uri.queryParameters.get("transport").map { String($0) }).response()
        }
        router.post("/m/:id/join") { request, context in
            let id = MeetingID(try context.parameters.require("id"))
            let form = try await web.form(request, as: GuestForm.self, back: "/m/\(id)")
            let (record, listing) = try await meeting(id)
            let name = (form.name ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            guard !name.isEmpty, name.count <= ModelLimits.nameLength else {
                return guestPage(request, record, listing, name: name, transport: form.transport,
                                 problem: "Please give your name: 1 to \(ModelLimits.nameLength) characters.", status: .badRequest).response()
            }
            if let hash = listing?.passwordHash {
                // A meeting password is guessed like an account's: the same per-address budget.
                try web.limits.take(.signIn, request, context: context, web: web)
                guard try await web.passwords.verify(form.password ?? "", against: hash) else {
                    web.logger.notice("guest refused: wrong meeting password", metadata: ["meeting": "\(id)"])
                    return guestPage(request, record, listing, name: name, transport: form.transport,
                                     problem: "That is not the meeting password. Check it with the person who invited you.",
                                     status: .forbidden).response()
                }
            }
            let seat = WebCookies.GuestSeat(m: id.rawValue, p: randomID(prefix: Self.guestPrefix), n: name)
            web.logger.info("guest joined", metadata: ["meeting": "\(id)", "participant": "\(seat.p)"])
            var response = Response.redirect(to: "/m/\(id)\(Self.transportQuery(form.transport))", type: .found)
            response.setCookie(web.cookies.guestCookie(seat))
            return response
        }
    }

    private func meeting(_ id: MeetingID) async throws -> (MeetingRecord, MeetingListing?) {
        guard let record = try await web.storeCall({ try await web.meetings.meeting(id) }) else {
            throw PageError(.problem(.notFound, code: "unknown_meeting", message: "There is no meeting \(id.rawValue.prefix(64)). Check the link you were given."))
        }
        return (record, try await web.storeCall { try await web.accounts.listing(id) })
    }

    private func shell(_ record: MeetingRecord, participant: ParticipantID, name: String, role: Role, guest: Bool) async throws -> Response {
        let token = try await web.tokens.issue(meeting: record.id, participant: participant, name: name, role: role)
        let bootstrap = Bootstrap(meeting: record.id.rawValue, title: record.title, token: token, participant: participant.rawValue,
                                  name: name, role: role, guest: guest, guestPrefix: Self.guestPrefix + "-",
                                  otherFronts: web.settings.otherFronts)
        return HTMLPage(title: record.title, body: """
            <div id="app"></div>
            <noscript>The meeting page needs JavaScript.</noscript>
            """, bodyClass: "meeting", head: """
            <script type="application/json" id="parley-bootstrap">\(HTMLPage.scriptJSON(bootstrap))</script>
            <script type="module" src="/static/js/meeting/main.js"></script>
            """).response()
    }

    private func guestPage(_ request: Request, _ record: MeetingRecord, _ listing: MeetingListing?, name: String, transport: String?,
                           problem: String? = nil, status: HTTPResponse.Status = .ok) -> HTMLPage {
        let (csrf, visitor) = web.cookies.csrf(for: request)
        let query = Self.transportQuery(transport)
        let keepTransport = query.isEmpty ? "" : "<input type=\"hidden\" name=\"transport\" value=\"\(Escaped(transport ?? ""))\">"
        // The sign-in link comes back to this page with the same transport.
        let signInNext = "/m/\(record.id.rawValue)\(query)".addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(.init(charactersIn: "/-_.~"))) ?? "/center"
        let password = listing?.passwordHash == nil ? "" : """
            <label>Meeting password <input type="password" name="password" id="guest-password" required></label>
            """
        return HTMLPage(title: record.title, body: """
            <main class="narrow">
            <h1>Join “\(Escaped(record.title))”</h1>
            \(problem.map { "<p class=\"error\" id=\"problem\" role=\"alert\">\(Escaped($0))</p>" } ?? "")
            <form method="post" action="/m/\(Escaped(record.id.rawValue))/join" class="stack">
            <input type="hidden" name="_csrf" value="\(Escaped(csrf))">
            \(keepTransport)
            <label>Your name <input name="name" id="guest-name" required maxlength="\(ModelLimits.nameLength)" value="\(Escaped(name))"></label>
            \(password)
            <button type="submit" id="guest-join">Join</button>
            </form>
            <p><a href="/signin?next=\(Escaped(signInNext))" id="guest-sign-in">Sign in</a> instead</p>
            </main>
            """, status: status, cookies: visitor.map { [$0] } ?? [])
    }
}
