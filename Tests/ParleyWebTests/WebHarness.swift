import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import ParleyCore
import ParleyServer
import ParleyStore
import ParleyTelemetry
import ParleyTestSupport
import ParleyWeb
import ParleyZone
import Synchronization

/// A `parley serve --single` server run in-process with the web zone, on a free loopback
/// port, in a fresh data directory; its log lines are kept for assertions.
struct WebServer {
    let base: URL
    let data: String
    let logs: RecordedLog

    /// Runs `body` against a fresh server, then stops it and removes its data.
    static func with<T>(_ settings: WebSettings = WebServer.fastSettings, clock: (@Sendable () -> Millis)? = nil,
                        metrics: ProcessMetrics? = nil, console: (any ZoneConsole)? = nil,
                        _ body: (WebServer) async throws -> T) async throws -> T {
        var makeConsole: (@Sendable (any ZoneStore) -> any ZoneConsole)?
        if let console { makeConsole = { _ in console } }
        let routes = WebZone.routes(settings: settings, console: makeConsole)
        return try await runTestServer(routes: routes, clock: clock, metrics: metrics) { base, logs, data in
            try await body(WebServer(base: URL(string: base)!, data: data, logs: logs))
        }
    }

    /// Cheap bcrypt and short locks, so tests take milliseconds rather than seconds.
    static var fastSettings: WebSettings {
        var settings = WebSettings()
        settings.passwordCost = 4
        return settings
    }
}

/// A wall clock that moves only when the test moves it, starting at the real time.
final class TestClock: Sendable {
    private let now = Mutex(Millis((Date().timeIntervalSince1970 * 1000).rounded()))

    func read() -> Millis { now.withLock { $0 } }
    func advance(byMs ms: Millis) { now.withLock { $0 += ms } }
}

/// One browser, as far as the server can tell: a cookie jar, no automatic redirects.
final class Visitor: NSObject, URLSessionTaskDelegate, @unchecked Sendable {
    // @unchecked: `cookies` is only touched under `lock`.
    private let lock = NSLock()
    private var cookies: [String: String] = [:]
    let base: URL
    private lazy var session: URLSession = {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpCookieStorage = nil
        configuration.httpShouldSetCookies = false
        return URLSession(configuration: configuration, delegate: self, delegateQueue: nil)
    }()

    /// Sent with every request (a proxy's `X-Forwarded-For`, say).
    let extraHeaders: [String: String]

    init(_ server: WebServer, headers: [String: String] = [:]) {
        base = server.base
        extraHeaders = headers
    }

    struct Page {
        var status: Int
        var headers: [String: String]
        var setCookies: [String]
        var body: String

        var location: String? { headers["location"] }
        func cookie(named name: String) -> String? {
            setCookies.first { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1).prefix { $0 != ";" }) }
        }
        /// The value of the first hidden `_csrf` field.
        var csrf: String? { field("_csrf") }
        func field(_ name: String) -> String? {
            guard let range = body.range(of: "name=\"\(name)\" value=\"") else { return nil }
            return String(body[range.upperBound...].prefix { $0 != "\"" })
        }
        /// The `data-code` of the page's problem paragraph.
        var problemCode: String? {
            guard let range = body.range(of: "data-code=\"") else { return nil }
            return String(body[range.upperBound...].prefix { $0 != "\"" })
        }
    }

    func get(_ path: String) async throws -> Page { try await send("GET", path, form: nil) }

    func post(_ path: String, _ form: [(String, String)]) async throws -> Page { try await send("POST", path, form: form) }

    func cookie(_ name: String) -> String? { lock.withLock { cookies[name] } }
    func setCookie(_ name: String, _ value: String?) { lock.withLock { cookies[name] = value } }

    private func send(_ method: String, _ path: String, form: [(String, String)]?) async throws -> Page {
        var request = URLRequest(url: URL(string: path, relativeTo: base)!)
        request.httpMethod = method
        let jar = lock.withLock { cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; ") }
        if !jar.isEmpty { request.setValue(jar, forHTTPHeaderField: "Cookie") }
        for (name, value) in extraHeaders { request.setValue(value, forHTTPHeaderField: name) }
        if let form {
            var allowed = CharacterSet.alphanumerics
            allowed.insert(charactersIn: "-._~")
            request.httpBody = Data(form.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed)!)" }
                .joined(separator: "&").utf8)
            request.setValue("application/x-www-form-urlencoded", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await session.data(for: request)
        let http = response as! HTTPURLResponse
        var headers: [String: String] = [:]
        for (key, value) in http.allHeaderFields { headers[String(describing: key).lowercased()] = String(describing: value) }
        let setCookies = headers["set-cookie"].map { Self.splitSetCookie($0) } ?? []
        lock.withLock {
            for line in setCookies {
                let pair = line.split(separator: ";", maxSplits: 1)[0].split(separator: "=", maxSplits: 1).map(String.init)
                guard pair.count == 2 else { continue }
                if line.contains("Max-Age=0") { cookies[pair[0]] = nil } else { cookies[pair[0]] = pair[1] }
            }
        }
        return Page(status: http.statusCode, headers: headers, setCookies: setCookies, body: String(decoding: data, as: UTF8.self))
    }

    /// Foundation joins several Set-Cookie headers with ", "; split them back (cookie values
    /// here never contain commas, and Max-Age is used rather than Expires).
    private static func splitSetCookie(_ joined: String) -> [String] {
        joined.components(separatedBy: ", ").filter { !$0.isEmpty }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void) {
        completionHandler(nil)
    }

    /// Registers an account through the form and keeps its session cookie.
    @discardableResult
    func register(_ username: String, name: String, password: String = "correct horse") async throws -> Page {
        let form = try await get("/register")
        return try await post("/register", [("_csrf", form.csrf ?? ""), ("username", username), ("displayName", name), ("password", password)])
    }

    func signIn(_ username: String, password: String) async throws -> Page {
        let form = try await get("/signin")
        return try await post("/signin", [("_csrf", form.csrf ?? ""), ("username", username), ("password", password)])
    }
}
