import Foundation
import Hummingbird
import Logging
import NIOCore
import ParleyServer
import ParleyZone
import Synchronization

/// What the operator's zone page asks of the zone. The web process's is its supervisor and
/// the leading manager (ParleyNode); tests give their own.
public protocol ZoneConsole: Sendable {
    /// Every process's status report, on every machine.
    func statuses() async throws -> [ProcessStatus]
    /// Stops the process and starts it again; returns what to tell the operator.
    func restart(_ process: NodeName) async throws -> String
    /// Moves every meeting off the collab server live, and returns once none is left there.
    func drain(_ process: NodeName) async throws -> String
}

/// A console action that could not be done, in words for the operator.
public struct ZoneConsoleError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// `/admin`: the zone as its operator sees it, live (the page polls `/admin/overview.json`
/// every second), with drain and restart behind a confirmation and the CSRF token. Only the
/// accounts `web.admins` names may use it: anyone else signed in gets 403, and a visitor who
/// is not signed in is sent to sign in.
struct AdminRoutes: Sendable {
    let web: WebContext
    /// nil with `--single`: there is no zone to operate.
    let console: (any ZoneConsole)?
    /// The last overview made, for the next one's op rates.
    let lastOverview = LastOverview()

    final class LastOverview: Sendable {
        private let value = Mutex<ZoneOverview?>(nil)
        /// Overviews this recent are shared by every viewer rather than asked of the zone
        /// again: each one costs the supervisor a connection (and the store a query in a cluster).
        static let freshMs: Int64 = 900

        /// The last overview, if it is fresh at `nowMs`.
        func fresh(nowMs: Int64) -> ZoneOverview? {
            value.withLock { last in last.flatMap { nowMs - $0.atMs < Self.freshMs ? $0 : nil } }
        }

        /// Makes the next overview from `statuses`, measured from the last one.
        func next(_ statuses: [ProcessStatus], nowMs: Int64) -> ZoneOverview {
            value.withLock { last in
                let overview = ZoneOverview.build(statuses, previous: last, nowMs: nowMs)
                last = overview
                return overview
            }
        }
    }

    struct ActionForm: Decodable, CSRFProtected {
        var _csrf: String?
    }

    /// How an action's outcome is answered: JSON, for the page's script.
    struct ActionAnswer: Codable {
        var ok: Bool
        var code: String?
        var message: String
    }

    func add(to router: Router<ParleyRequestContext>) {
        router.get("/admin") { request, _ -> Response in
            guard let account = try await web.signedIn(request) else { return Response.redirect(to: "/signin?next=/admin") }
            try refuseUnlessAdmin(account.username, request: request, json: false)
            return page(request, username: account.username).response()
        }
        router.get("/admin/overview.json") { request, _ -> Response in
            let account = try await web.signedIn(request)
            try refuseUnlessAdmin(account?.username, request: request, json: true)
            guard let console else { return Self.json(.notFound, ActionAnswer(ok: false, code: "no_zone", message: Self.noZone)) }
            if let fresh = lastOverview.fresh(nowMs: Int64(web.now())) { return Self.json(.ok, fresh) }
            do {
                let statuses = try await console.statuses()
                return Self.json(.ok, lastOverview.next(statuses, nowMs: Int64(web.now())))
            } catch {
                web.logger.warning("zone page: cannot read the zone's status", metadata: ["error": "\(error)"])
                return Self.json(.serviceUnavailable, ActionAnswer(ok: false, code: "zone_unreachable",
                                                                   message: "cannot read the zone's status: \(error)"))
            }
        }
        for action in ["restart", "drain"] {
            router.post("/admin/processes/:name/\(action)") { request, context -> Response in
                let account = try await web.signedIn(request)
                try refuseUnlessAdmin(account?.username, request: request, json: true)
                do throws(FormRefusal) {
                    _ = try await web.checkedForm(request, as: ActionForm.self)
                } catch {
                    let (status, code): (HTTPResponse.Status, String) = switch error {
                    case .csrf: (.forbidden, "csrf_failed")
                    case .tooLarge: (.contentTooLarge, "form_too_large")
                    case .malformed: (.badRequest, "malformed_form")
                    }
                    return Self.json(status, ActionAnswer(ok: false, code: code, message: "the request was refused (\(code)): reload the page and try again"))
                }
                guard let console else { return Self.json(.notFound, ActionAnswer(ok: false, code: "no_zone", message: Self.noZone)) }
                let process = NodeName(try context.parameters.require("name"))
                web.logger.notice("zone page: operator action", metadata: [
                    "action": "\(action)", "process": "\(process)", "by": "\(account?.username ?? "-")",
                ])
                do {
                    let message = action == "drain" ? try await console.drain(process) : try await console.restart(process)
                    return Self.json(.ok, ActionAnswer(ok: true, code: nil, message: message))
                } catch {
                    web.logger.warning("zone page: action failed", metadata: ["action": "\(action)", "process": "\(process)", "error": "\(error)"])
                    return Self.json(.conflict, ActionAnswer(ok: false, code: "\(action)_failed", message: "\(error)"))
                }
            }
        }
    }

    static let noZone = "this server runs alone (parley serve --single): there is no zone to operate"

    /// Administrators are named by username, and registration is open: a name listed before
    /// its account exists could be taken by anyone. Says so, loudly, for each.
    func warnAboutUnclaimedAdmins() async {
        for admin in web.settings.admins {
            do {
                guard try await web.accounts.account(username: admin) == nil else { continue }
            } catch {
                continue  // the store is not there yet; nothing to say about the account
            }
            web.logger.error("web.admins names an account that does not exist: whoever registers it first gets the zone page; register it now, or remove it",
                             metadata: ["username": "\(admin)"])
        }
    }

    private func refuseUnlessAdmin(_ username: String?, request: Request, json: Bool) throws {
        guard let username, web.settings.admins.contains(username) else {
            web.logger.notice("zone page refused", metadata: ["user": "\(username ?? "-")", "path": "\(request.uri.path)"])
            let message = "only the zone's administrators may use the zone page (the configuration's web.admins names them)"
            if json { throw AdminRefusal(message: message) }
            throw PageError(.problem(.forbidden, code: "not_an_administrator", message: message, back: "/center"))
        }
    }

    private func page(_ request: Request, username: String) -> HTMLPage {
        let csrf = web.cookies.csrf(for: request)
        var page = HTMLPage(title: "Zone", body: """
            <header class="admin-header">
            <h1>Zone</h1>
            <p>Signed in as \(Escaped(username)) · <span id="updated" aria-live="polite">loading…</span>
            <span id="overview-problem" class="error" role="alert" hidden></span></p>
            </header>
            <main id="admin" class="admin" data-csrf="\(Escaped(csrf.token))">
            <p id="action-result" role="status" hidden></p>
            <section aria-labelledby="processes-title">
            <h2 id="processes-title">Processes</h2>
            <table id="processes"><thead><tr><th>Name</th><th>Role</th><th>Machine</th><th>State</th><th>PID</th>
            <th>Uptime</th><th>Restarts</th><th>Ready</th><th>Load</th><th>Actions</th></tr></thead><tbody></tbody></table>
            </section>
            <section aria-labelledby="meetings-title">
            <h2 id="meetings-title">Meetings</h2>
            <table id="meetings"><thead><tr><th>Meeting</th><th>Host</th><th>Standby</th><th>Edges</th>
            <th>Participants</th><th>Ops/s</th></tr></thead><tbody></tbody></table>
            <p id="no-meetings" hidden>No meeting is running.</p>
            </section>
            <section aria-labelledby="failovers-title">
            <h2 id="failovers-title">Recent failovers</h2>
            <table id="failovers"><thead><tr><th>Meeting</th><th>Taken over by</th><th>Took</th><th>When</th></tr></thead>
            <tbody></tbody></table>
            <p id="no-failovers" hidden>No failover since the leading manager took over.</p>
            </section>
            </main>
            <dialog id="confirm">
            <form method="dialog">
            <p id="confirm-text"></p>
            <button id="confirm-yes" value="yes">Yes</button> <button id="confirm-no" value="no">Cancel</button>
            </form>
            </dialog>
            <script type="module" src="/static/js/admin.js"></script>
            """, bodyClass: "plain admin-page")
        if let visitor = csrf.newVisitor { page.cookies.append(visitor) }
        return page
    }

    static func json(_ status: HTTPResponse.Status, _ value: some Encodable) -> Response {
        let data = (try? JSONEncoder().encode(value)) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// A refusal of the zone page's JSON routes: 403 with a code, as JSON.
struct AdminRefusal: HTTPResponseError {
    let message: String
    var status: HTTPResponse.Status { .forbidden }
    func response(from request: Request, context: some RequestContext) throws -> Response {
        AdminRoutes.json(.forbidden, AdminRoutes.ActionAnswer(ok: false, code: "not_an_administrator", message: message))
    }
}
