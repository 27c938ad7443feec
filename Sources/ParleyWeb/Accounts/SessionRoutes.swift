import Foundation
import Hummingbird
import ParleyServer
import ParleyStore

/// `/account/sessions`: where a user sees every browser signed in to the account, and signs
/// any of them out (a lost laptop, a shared computer), one or all but this one.
struct SessionRoutes: Sendable {
    let web: WebContext

    struct RevokeForm: Decodable, CSRFProtected {
        var _csrf: String?
        /// The session's id: the hash of its cookie.
        var session: String?
    }

    func add(to router: Router<ParleyRequestContext>) {
        router.get("/account/sessions") { request, _ -> Response in
            guard let account = try await web.signedIn(request) else { return Response.redirect(to: "/signin?next=/account/sessions") }
            let sessions = try await web.storeCall { try await web.accounts.sessions(of: account.id, now: web.now()) }
            return page(request, account: account, sessions: sessions,
                        notice: request.uri.queryParameters.get("ended").flatMap { Int($0) }.map { "Signed out \($0) \($0 == 1 ? "session" : "sessions")." })
                .response()
        }
        router.post("/account/sessions/revoke") { request, _ -> Response in
            guard let account = try await web.signedIn(request) else { return Response.redirect(to: "/signin?next=/account/sessions") }
            let form = try await web.form(request, as: RevokeForm.self, back: "/account/sessions")
            let ended = try await web.storeCall {
                try await web.accounts.deleteSession(tokenHash: form.session ?? "", of: account.id)
            }
            web.logger.info("session revoked", metadata: ["account": "\(account.id)", "found": "\(ended)"])
            // Revoking this browser's own session signs it out here too.
            if ended, form.session == current(request) {
                var response = Response.redirect(to: "/signin", type: .found)
                response.setCookie(web.cookies.expired(WebCookies.session))
                return response
            }
            return Response.redirect(to: "/account/sessions?ended=\(ended ? 1 : 0)", type: .found)
        }
        router.post("/account/sessions/revoke-others") { request, _ -> Response in
            guard let account = try await web.signedIn(request), let mine = current(request) else {
                return Response.redirect(to: "/signin?next=/account/sessions")
            }
            _ = try await web.form(request, as: RevokeForm.self, back: "/account/sessions")
            let ended = try await web.storeCall { try await web.accounts.deleteSessions(of: account.id, keeping: mine) }
            web.logger.info("other sessions revoked", metadata: ["account": "\(account.id)", "ended": "\(ended)"])
            return Response.redirect(to: "/account/sessions?ended=\(ended)", type: .found)
        }
    }

    /// This browser's session id.
    private func current(_ request: Request) -> String? {
        guard let value = request.cookies[WebCookies.session]?.value, !value.isEmpty else { return nil }
        return WebCookies.hash(value)
    }

    private func page(_ request: Request, account: Account, sessions: [WebSession], notice: String?) -> HTMLPage {
        let (csrf, visitor) = web.cookies.csrf(for: request)
        let mine = current(request)
        let lifetime = Int64(web.settings.sessionSeconds) * 1_000
        let rows = sessions.map { session in
            // Every session lasts web.sessionSeconds: when it ends says when it began.
            let began = AccountRoutes.time(session.expiresAt - lifetime)
            let here = session.tokenHash == mine
            return """
                <li class="session" data-current="\(here)"><span>Signed in <time datetime="\(Escaped(began))">\(Escaped(began))</time>\
                \(here ? " — <strong>this browser</strong>" : ""); ends <time datetime="\(Escaped(AccountRoutes.time(session.expiresAt)))">\
                \(Escaped(AccountRoutes.time(session.expiresAt)))</time></span>
                <form method="post" action="/account/sessions/revoke" class="inline">
                <input type="hidden" name="_csrf" value="\(Escaped(csrf))"><input type="hidden" name="session" value="\(Escaped(session.tokenHash))">
                <button type="submit">Sign out</button></form></li>
                """
        }.joined(separator: "\n")
        return HTMLPage(title: "Your sessions", body: """
            <main class="narrow">
            <h1>Where you are signed in</h1>
            <p>\(Escaped(account.displayName)) (\(Escaped(account.username)))</p>
            \(notice.map { "<p id=\"notice\" role=\"status\">\(Escaped($0))</p>" } ?? "")
            <ul id="sessions">\(rows)</ul>
            <form method="post" action="/account/sessions/revoke-others">
            <input type="hidden" name="_csrf" value="\(Escaped(csrf))">
            <button type="submit" id="revoke-others">Sign out everywhere else</button></form>
            <p><a href="/center">Back to the meeting center</a></p>
            </main>
            """, cookies: visitor.map { [$0] } ?? [])
    }
}
