import Foundation
import Hummingbird
import ParleyCore
import ParleyServer
import ParleyStore

/// Register, sign in and sign out.
struct AccountRoutes: Sendable {
    let web: WebContext

    struct RegisterForm: Decodable, CSRFProtected {
        var _csrf: String?
        var username: String?
        var displayName: String?
        var password: String?
    }

    struct SignInForm: Decodable, CSRFProtected {
        var _csrf: String?
        var username: String?
        var password: String?
        var next: String?
    }

    struct SignOutForm: Decodable, CSRFProtected {
        var _csrf: String?
    }

    static let passwordLength = 8...200
    static let usernamePattern = "a username has 3 to 32 characters: lower-case letters, digits, '.', '-' and '_'"

    func add(to router: Router<ParleyRequestContext>) {
        router.get("/") { request, _ in
            try await web.signedIn(request) == nil ? Response.redirect(to: "/signin") : Response.redirect(to: "/center")
        }
        router.get("/register") { request, _ in registerPage(request).response() }
        // Counted once the form has passed its CSRF check: another site's page cannot spend a
        // shared address's budget through its visitors' browsers.
        router.post("/register") { request, context in
            try await register(request) { try web.limits.take(.register, request, context: context, web: web) }
        }
        router.get("/signin") { request, _ in
            signInPage(request, next: safeNext(request.uri.queryParameters.get("next"))).response()
        }
        router.post("/signin") { request, context in
            try await signIn(request) { try web.limits.take(.signIn, request, context: context, web: web) }
        }
        router.post("/signout") { request, _ in
            _ = try await web.form(request, as: SignOutForm.self, back: "/center")
            if let value = request.cookies[WebCookies.session]?.value {
                try await web.storeCall { try await web.accounts.deleteSession(tokenHash: WebCookies.hash(value)) }
            }
            var response = Response.redirect(to: "/signin", type: .found)
            response.setCookie(web.cookies.expired(WebCookies.session))
            return response
        }
    }

    // MARK: Register

    /// `count`: the per-address limit, taken once the form is this browser's.
    private func register(_ request: Request, count: () throws -> Void) async throws -> Response {
        let form = try await web.form(request, as: RegisterForm.self, back: "/register")
        try count()
        let username = (form.username ?? "").trimmingCharacters(in: .whitespaces).lowercased()
        let displayName = (form.displayName ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        let password = form.password ?? ""
        var problems: [String] = []
        if !(3...32).contains(username.count) || username.contains(where: { !($0.isASCII && ($0.isLowercase || $0.isNumber || "._-".contains($0))) }) {
            problems.append(Self.usernamePattern)
        }
        if displayName.isEmpty || displayName.count > ModelLimits.nameLength {
            problems.append("a display name has 1 to \(ModelLimits.nameLength) characters")
        }
        if !Self.passwordLength.contains(password.count) {
            problems.append("a password has \(Self.passwordLength.lowerBound) to \(Self.passwordLength.upperBound) characters")
        }
        guard problems.isEmpty else {
            return registerPage(request, problems: problems, username: username, displayName: displayName, status: .badRequest).response()
        }
        let account = Account(id: randomID(prefix: "a"), username: username, displayName: displayName,
                              passwordHash: try await web.passwords.hash(password), createdAt: web.now())
        guard try await web.storeCall({ try await web.accounts.createAccount(account) }) else {
            return registerPage(request, problems: ["the username \(username) is taken"], username: "", displayName: displayName,
                                status: .conflict).response()
        }
        web.logger.info("account registered", metadata: ["account": "\(account.id)", "username": "\(username)"])
        return try await startSession(for: account, next: "/center")
    }

    // MARK: Sign in

    private func signIn(_ request: Request, count: () throws -> Void) async throws -> Response {
        let form = try await web.form(request, as: SignInForm.self, back: "/signin")
        try count()
        let username = (form.username ?? "").trimmingCharacters(in: .whitespaces).lowercased()
        let password = form.password ?? ""
        let next = safeNext(form.next)
        let refused = { (message: String, status: HTTPResponse.Status) in
            signInPage(request, next: next, problem: message, username: username, status: status).response()
        }
        let locked = { (until: Millis) in
            signInPage(request, next: next, problemHTML: Self.lockedMessage(until: until, now: web.now()), username: username,
                       status: .forbidden).response()
        }
        guard let account = try await web.storeCall({ try await web.accounts.account(username: username) }) else {
            try await web.passwords.verifyNothing(password)
            web.logger.notice("sign-in failed: no such account", metadata: ["username": "\(username.prefix(64))"])
            web.metrics.signIn(.noAccount)
            return refused("wrong username or password", .unauthorized)
        }
        let now = web.now()
        // Each step of the rule is one atomic change of the stored state (`SignInLockout`).
        let (rule, id) = (web.lockout, account.id)
        let attempt = try await web.storeCall { try await web.accounts.changeSignInState(account: id) { rule.begin(&$0, now: now) } }
        switch attempt {
        case nil:
            return refused("wrong username or password", .unauthorized)
        case .locked(let until, let lockedNow)?:
            if lockedNow { lockedOut(account, until: until) }
            web.logger.notice("sign-in refused: account locked", metadata: ["account": "\(account.id)", "locked_until": "\(Self.time(until))"])
            web.metrics.signIn(.locked)
            return locked(until)
        case .check(let failures, let lockEnded)?:
            if let lockEnded {
                web.logger.notice("account lock ended", metadata: ["account": "\(account.id)", "locked_until": "\(Self.time(lockEnded))"])
            }
            if try await web.passwords.verify(password, against: account.passwordHash) {
                // Refused if an attempt beside this one locked the account meanwhile.
                if let until = try await web.storeCall({ try await web.accounts.changeSignInState(account: id) { rule.succeeded(&$0, now: now) } }) ?? nil {
                    web.metrics.signIn(.locked)
                    return locked(until)
                }
                web.logger.info("signed in", metadata: ["account": "\(account.id)"])
                web.metrics.signIn(.signedIn)
                return try await startSession(for: account, next: next)
            }
            web.metrics.signIn(.wrongPassword)
            if let until = try await web.storeCall({ try await web.accounts.changeSignInState(account: id) { rule.failed(&$0, now: now) } }) ?? nil {
                lockedOut(account, until: until)
                return locked(until)
            }
            web.logger.notice("sign-in failed: wrong password", metadata: ["account": "\(account.id)", "failures": "\(failures)"])
            return refused("wrong username or password", .unauthorized)
        }
    }

    /// This attempt locked the account: logged and counted once.
    private func lockedOut(_ account: Account, until: Millis) {
        web.metrics.lockedOut()
        web.logger.warning("account locked after failed sign-ins", metadata: [
            "account": "\(account.id)", "failures": "\(web.lockout.maxFailures)", "locked_until": "\(Self.time(until))",
        ])
    }

    private func startSession(for account: Account, next: String) async throws -> Response {
        let value = WebCookies.randomValue()
        let expires = web.now() + Millis(web.settings.sessionSeconds) * 1000
        try await web.storeCall { try await web.accounts.createSession(tokenHash: WebCookies.hash(value), account: account.id, expiresAt: expires) }
        var response = Response.redirect(to: next, type: .found)
        response.setCookie(web.cookies.cookie(WebCookies.session, value, maxAge: web.settings.sessionSeconds))
        return response
    }

    /// Only a local path, so a crafted link cannot send a user elsewhere after signing in.
    private func safeNext(_ next: String?) -> String {
        guard let next, next.hasPrefix("/"), !next.hasPrefix("//"), !next.contains("\\") else { return "/center" }
        return next
    }

    static func time(_ millis: Millis) -> String {
        Date(timeIntervalSince1970: Double(millis) / 1000).formatted(.iso8601)
    }

    /// The lock-out notice, as HTML. The server says when in UTC and how long from now; the
    /// page's script rewrites the `<time>` in the reader's own time zone.
    static func lockedMessage(until: Millis, now: Millis) -> String {
        let remaining = max(0, until - now)
        let minuteOfDay = Int((until / 60_000) % (24 * 60))
        let clock = String(format: "%02d:%02d", minuteOfDay / 60, minuteOfDay % 60)
        return """
            This account is locked for a while after too many failed sign-ins. You can try again \
            <time id="locked-until" datetime="\(Escaped(time(until)))" data-remaining-ms="\(remaining)">\(Escaped(relative(remainingMs: remaining))) \
            (at \(Escaped(clock)) UTC)</time>.
            """
    }

    /// "in 15 minutes", "in 1 hour and 5 minutes", "in less than a minute".
    static func relative(remainingMs: Int64) -> String {
        let minutes = Int((remainingMs + 59_999) / 60_000)
        if minutes < 1 { return "in less than a minute" }
        let plural = { (n: Int, noun: String) in "\(n) \(noun)\(n == 1 ? "" : "s")" }
        if minutes < 60 { return "in " + plural(minutes, "minute") }
        let (hours, rest) = minutes.quotientAndRemainder(dividingBy: 60)
        return "in " + plural(hours, "hour") + (rest == 0 ? "" : " and " + plural(rest, "minute"))
    }

    // MARK: Pages

    private func registerPage(_ request: Request, problems: [String] = [], username: String = "", displayName: String = "",
                              status: HTTPResponse.Status = .ok) -> HTMLPage {
        let (csrf, visitor) = web.cookies.csrf(for: request)
        let errors = problems.map { "<li>\(Escaped(HTMLPage.sentence($0)))</li>" }.joined()
        return HTMLPage(title: "Create an account", body: """
            <main class="narrow">
            <h1>Create a Parley account</h1>
            \(errors.isEmpty ? "" : "<ul class=\"error\" id=\"problem\" role=\"alert\">\(errors)</ul>")
            <form method="post" action="/register" class="stack">
            <input type="hidden" name="_csrf" value="\(Escaped(csrf))">
            <label>Username <input name="username" id="username" required autocomplete="username" value="\(Escaped(username))"></label>
            <label>Display name <input name="displayName" id="display-name" required value="\(Escaped(displayName))"></label>
            <label>Password <input name="password" id="password" type="password" required autocomplete="new-password" minlength="8"></label>
            <button type="submit" id="register">Create account</button>
            </form>
            <p>Have an account? <a href="/signin">Sign in</a></p>
            </main>
            """, status: status, cookies: visitor.map { [$0] } ?? [])
    }

    /// `problem` is text; `problemHTML` is markup made here (the lock-out notice).
    private func signInPage(_ request: Request, next: String, problem: String? = nil, problemHTML: String? = nil,
                            username: String = "", status: HTTPResponse.Status = .ok) -> HTMLPage {
        let (csrf, visitor) = web.cookies.csrf(for: request)
        let problemMarkup = problemHTML ?? problem.map { "\(Escaped(HTMLPage.sentence($0)))" }
        return HTMLPage(title: "Sign in", body: """
            <main class="narrow">
            <h1>Sign in to Parley</h1>
            \(problemMarkup.map { "<p class=\"error\" id=\"problem\" role=\"alert\">\($0)</p>" } ?? "")
            <form method="post" action="/signin" class="stack">
            <input type="hidden" name="_csrf" value="\(Escaped(csrf))">
            <input type="hidden" name="next" value="\(Escaped(next))">
            <label>Username <input name="username" id="username" required autocomplete="username" value="\(Escaped(username))"></label>
            <label>Password <input name="password" id="password" type="password" required autocomplete="current-password"></label>
            <button type="submit" id="sign-in">Sign in</button>
            </form>
            <p>New here? <a href="/register">Create an account</a></p>
            </main>
            <script type="module" src="/static/js/plain-page.js"></script>
            """, status: status, cookies: visitor.map { [$0] } ?? [])
    }
}
