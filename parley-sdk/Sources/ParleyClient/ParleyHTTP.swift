import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import ParleyCore
import ParleyProtocol

/// The small HTTP API next to the real-time protocol: create meetings and issue tokens.
public enum ParleyHTTP {
    /// `POST /v1/meetings`. The caller becomes the host: keep `hostToken` secret.
    /// - Parameter server: the server's HTTP base URL, e.g. `http://127.0.0.1:8080`.
    /// - Parameter title: at most 200 characters.
    /// - Parameter settings: the participant limit and features; nil for the server's defaults
    ///   (no limit, everything on).
    /// - Parameter apiKey: needed when the server runs with `--api-key`.
    /// - Parameter session: the `URLSession` to use; nil for a shared one without a cache.
    public static func createMeeting(server: URL, title: String, settings: MeetingSettings? = nil,
                                     apiKey: String? = nil, session: URLSession? = nil)
        async throws(ParleyError) -> CreatedMeeting {
        struct Body: Encodable { var title: String; var settings: MeetingSettings? }
        let url = try endpoint(server, "v1/meetings")
        return try await HTTP.call("POST", url, body: Body(title: title, settings: settings), apiKey: apiKey,
                                session: session ?? HTTP.defaultSession)
    }

    /// `POST /v1/meetings/{id}/tokens`: a token for someone else to join with.
    /// - Parameter server: the server's HTTP base URL, e.g. `http://127.0.0.1:8080`.
    /// - Parameter meeting: ``MeetingInfo/id`` of the meeting.
    /// - Parameter name: the display name, 1 to 64 characters.
    /// - Parameter role: `.attendee` or `.presenter`; the server refuses `.host` (a meeting's
    ///   host token comes from ``createMeeting(server:title:settings:apiKey:session:)``).
    /// - Parameter apiKey: needed when the server runs with `--api-key`.
    /// - Parameter session: the `URLSession` to use; nil for a shared one without a cache.
    public static func issueToken(server: URL, meeting: MeetingID, name: String, role: Role = .attendee,
                                  apiKey: String? = nil, session: URLSession? = nil)
        async throws(ParleyError) -> IssuedToken {
        struct Body: Encodable { var name: String; var role: Role }
        let url = try endpoint(server, "v1/meetings/\(meeting.rawValue)/tokens")
        return try await HTTP.call("POST", url, body: Body(name: name, role: role), apiKey: apiKey,
                                session: session ?? HTTP.defaultSession)
    }

    /// `POST /v1/tokens/renew`: a fresh token for the same participant (same name, role and
    /// meeting) as `token`, which must be valid or have expired within the server's token
    /// lifetime (and at least 10 minutes). The token is the credential: no API key is needed, and nobody without the
    /// token can renew it. The usual ``MeetingClient/Options/tokenProvider``.
    /// - Throws: ``ParleyError/http(_:)`` with ``APIErrorCode/tokenExpired`` when it expired
    ///   too long ago (join again), ``APIErrorCode/invalidToken`` when it is not genuine.
    public static func renewToken(server: URL, token: String, session: URLSession? = nil)
        async throws(ParleyError) -> IssuedToken {
        let url = try endpoint(server, "v1/tokens/renew")
        return try await HTTP.call("POST", url, body: [String: String](), apiKey: token, session: session ?? HTTP.defaultSession)
    }

    /// `GET /v1/ping`: the round trip to `server`, so a client can pick the nearest zone.
    public static func ping(server: URL, timeout: Duration = .seconds(5), session: URLSession? = nil) async throws(ParleyError) -> Duration {
        let url = try endpoint(server, "v1/ping")
        let started = ContinuousClock.now
        let (status, data) = try await HTTP.send("GET", url, body: nil, timeoutSeconds: Double(timeout.wholeMilliseconds) / 1000,
                                                 session: session ?? HTTP.defaultSession)
        guard (200..<300).contains(status) else { throw HTTP.httpError(status, data) }
        return ContinuousClock.now - started
    }

    /// `GET /v1/meetings/{id}/locate`: the base URL of the server that hosts the meeting now.
    /// In a zone this is the collaboration server the manager placed it on; a single server
    /// answers with itself. Asked again before every connection, so a client follows a
    /// meeting that failed over or moved.
    public static func locate(server: URL, meeting: MeetingID, session: URLSession? = nil) async throws(ParleyError) -> URL {
        struct Located: Decodable { var url: String }
        let url = try endpoint(server, "v1/meetings/\(meeting.rawValue)/locate")
        let (status, data) = try await HTTP.send("GET", url, body: nil, timeoutSeconds: 5, session: session ?? HTTP.defaultSession)
        guard (200..<300).contains(status) else { throw HTTP.httpError(status, data) }
        guard let located = try? JSONDecoder().decode(Located.self, from: data), let host = URL(string: located.url) else {
            throw .network(NetworkFailure(url: url.absoluteString, message: "\(url) answered with a body that is not a location"))
        }
        _ = try endpoint(host, "")  // an http(s) URL with a host, or invalidServerURL
        return host
    }

    /// The meeting a token is for, read from its payload without verifying it (the server
    /// verifies). Nil if the token is not a JWT with an `mtg` claim.
    static func meeting(inToken token: String) -> MeetingID? {
        let parts = token.split(separator: ".")
        guard parts.count == 3 else { return nil }
        var base64 = parts[1].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        struct Claims: Decodable { var mtg: String }
        guard let data = Data(base64Encoded: base64), let claims = try? JSONDecoder().decode(Claims.self, from: data) else {
            return nil
        }
        return MeetingID(claims.mtg)
    }

    static func endpoint(_ server: URL, _ path: String) throws(ParleyError) -> URL {
        guard let scheme = server.scheme?.lowercased(), scheme == "http" || scheme == "https", server.host != nil else {
            throw .invalidServerURL(server.absoluteString)
        }
        var base = server.absoluteString
        while base.hasSuffix("/") { base.removeLast() }
        guard let url = URL(string: base + "/" + path) else { throw .invalidServerURL(server.absoluteString) }
        return url
    }

    /// `ws(s)://host:port/base/v1/ws` for an `http(s)://host:port/base` server URL.
    static func webSocketURL(_ server: URL) throws(ParleyError) -> String {
        let http = try endpoint(server, "v1/ws").absoluteString
        return http.hasPrefix("https:") ? "wss:" + http.dropFirst("https:".count) : "ws:" + http.dropFirst("http:".count)
    }
}

/// A meeting as the HTTP API describes it.
public struct MeetingInfo: Codable, Equatable, Sendable {
    /// Pass it to ``ParleyHTTP/issueToken(server:meeting:name:role:apiKey:session:)`` to invite someone.
    public var id: MeetingID
    /// The title it was created with.
    public var title: String
    /// Its settings; the defaults when the server leaves them out.
    public var settings: MeetingSettings
    /// Milliseconds since the Unix epoch, when the server sends it as a number.
    public var createdAt: Millis?

    enum CodingKeys: String, CodingKey { case id, title, settings, createdAt }

    /// Lenient: missing `settings` are the defaults and an unreadable `createdAt` is nil, so one
    /// odd field does not fail the whole call.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(MeetingID.self, forKey: .id)
        title = try container.decode(String.self, forKey: .title)
        settings = try container.decodeIfPresent(MeetingSettings.self, forKey: .settings) ?? MeetingSettings()
        // Informational only: tolerate other encodings rather than fail the whole call.
        createdAt = try? container.decodeIfPresent(Millis.self, forKey: .createdAt)
    }
}

/// What ``ParleyHTTP/createMeeting(server:title:settings:apiKey:session:)`` returns.
public struct CreatedMeeting: Codable, Equatable, Sendable {
    /// The new meeting.
    public var meeting: MeetingInfo
    /// A join token for the host: whoever holds it joins as the host, so keep it secret.
    public var hostToken: String
    /// The participant ``hostToken`` joins as.
    public var participant: ParticipantID
}

/// A join token and the participant it joins as.
public struct IssuedToken: Codable, Equatable, Sendable {
    /// The join token, for ``MeetingClient/init(server:token:options:)``. It expires (after 12
    /// hours by default); see ``ParleyHTTP/renewToken(server:token:session:)``.
    public var token: String
    /// The participant the token names; every renewal of the token keeps it.
    public var participant: ParticipantID
}

/// The server's error body: `{"code": "...", "message": "..."}`.
struct ErrorBody: Decodable {
    var code: String
    var message: String
}

enum HTTP {
    /// For calls that are never cancelled half-way; shared to reuse connections.
    static let defaultSession = makeSession(timeoutSeconds: 30)

    /// A session without a URL cache. On Linux, cancelling a request of a session that has
    /// a cache can trap inside FoundationNetworking ("task that in not in the registry");
    /// long-polls are cancelled routinely, and Parley's answers are never cacheable anyway.
    static func makeSession(timeoutSeconds: Double) -> URLSession {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.urlCache = nil
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        configuration.timeoutIntervalForRequest = timeoutSeconds
        return URLSession(configuration: configuration)
    }

    static func call<Response: Decodable>(_ method: String, _ url: URL, body: some Encodable, apiKey: String? = nil,
                                          session: URLSession) async throws(ParleyError) -> Response {
        let bodyData: Data
        do { bodyData = try JSONEncoder().encode(body) } catch {
            throw .network(NetworkFailure(url: url.absoluteString, message: "could not encode the request to \(url): \(error)",
                                          underlying: error))
        }
        let (status, data) = try await send(method, url, body: bodyData, apiKey: apiKey, session: session)
        guard (200..<300).contains(status) else { throw httpError(status, data) }
        do { return try JSONDecoder().decode(Response.self, from: data) } catch {
            throw .network(NetworkFailure(
                url: url.absoluteString, message: "\(url) answered \(status) with a body that is not what Parley sends: \(error)",
                underlying: error))
        }
    }

    static func send(_ method: String, _ url: URL, body: Data?, timeoutSeconds: Double = 30, apiKey: String? = nil,
                     session: URLSession) async throws(ParleyError) -> (status: Int, body: Data) {
        var request = URLRequest(url: url, timeoutInterval: timeoutSeconds)
        request.httpMethod = method
        if let apiKey { request.setValue("Bearer \(apiKey)", forHTTPHeaderField: "Authorization") }
        if let body {
            request.httpBody = body
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        do {
            let (data, response) = try await cancellableData(for: request, session: session)
            guard let http = response as? HTTPURLResponse else {
                throw ParleyError.network(NetworkFailure(url: url.absoluteString, message: "\(url) did not answer over HTTP"))
            }
            return (http.statusCode, data)
        } catch let error as ParleyError {
            throw error
        } catch {
            if error is CancellationError || (error as? URLError)?.code == .cancelled { throw .cancelled }
            throw .network(NetworkFailure(url: url.absoluteString,
                                          message: "could not reach \(url.absoluteString): \(error.localizedDescription)",
                                          underlying: error))
        }
    }

    /// An answer with its headers, for the calls that read them (a page's type and ETag).
    struct Reply: Sendable {
        var status: Int
        /// Keyed by lowercased field name.
        var headers: [String: String]
        var body: Data

        func header(_ name: String) -> String? { headers[name.lowercased()] }
    }

    /// ``send(_:_:body:timeoutSeconds:apiKey:session:)`` for calls that are not JSON: the
    /// caller names every header (a body without `Content-Type` would go out as a form on
    /// Linux), and the answer keeps its headers. Errors are mapped the same way.
    /// - Parameter bearer: sent as `Authorization: Bearer <bearer>` (an API key or a join token).
    static func send(_ method: String, _ url: URL, body: Data?, headers: [String: String], timeoutSeconds: Double = 30,
                     bearer: String?, session: URLSession) async throws(ParleyError) -> Reply {
        var request = URLRequest(url: url, timeoutInterval: timeoutSeconds)
        request.httpMethod = method
        if let bearer { request.setValue("Bearer \(bearer)", forHTTPHeaderField: "Authorization") }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        request.httpBody = body
        do {
            let (data, response) = try await cancellableData(for: request, session: session)
            guard let http = response as? HTTPURLResponse else {
                throw ParleyError.network(NetworkFailure(url: url.absoluteString, message: "\(url) did not answer over HTTP"))
            }
            var fields: [String: String] = [:]
            for (name, value) in http.allHeaderFields {
                if let name = name as? String, let value = value as? String { fields[name.lowercased()] = value }
            }
            return Reply(status: http.statusCode, headers: fields, body: data)
        } catch let error as ParleyError {
            throw error
        } catch {
            if error is CancellationError || (error as? URLError)?.code == .cancelled { throw .cancelled }
            throw .network(NetworkFailure(url: url.absoluteString,
                                          message: "could not reach \(url.absoluteString): \(error.localizedDescription)",
                                          underlying: error))
        }
    }

    /// `session.data(for:)`, but safe to cancel on Linux.
    ///
    /// FoundationNetworking's own `data(for:)` cancels its `URLSessionTask` from inside the
    /// Swift task's cancellation handler, which holds the task's status lock, while
    /// `URLSessionTask.cancel()` waits for the session's work queue; a transfer failing on
    /// that queue at the same moment waits for the status lock to resume the task. Both wait
    /// forever, and with them the threads of the cooperative pool (swift-corelibs-foundation
    /// issue 5412, fixed upstream by PR 5417). Long-polls are cancelled routinely, while
    /// servers die under them, so this happens: here the cancellation is handed to another
    /// thread and never waits under the lock.
    static func cancellableData(for request: URLRequest, session: URLSession) async throws -> (Data, URLResponse) {
        let handle = TaskHandle()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<(Data, URLResponse), any Error>) in
                let task = session.dataTask(with: request) { data, response, error in
                    if let error {
                        continuation.resume(throwing: error)
                    } else if let data, let response {
                        continuation.resume(returning: (data, response))
                    } else {
                        continuation.resume(throwing: URLError(.badServerResponse))
                    }
                }
                handle.start(task)
            }
        } onCancel: {
            DispatchQueue.global().async { handle.cancel() }
        }
    }

    /// A data task that may be cancelled before it is started: then it starts cancelled.
    private final class TaskHandle: @unchecked Sendable {
        private let lock = NSLock()
        private var task: URLSessionDataTask?
        private var cancelled = false

        func start(_ task: URLSessionDataTask) {
            let cancelled = lock.withLock {
                self.task = task
                return self.cancelled
            }
            task.resume()
            if cancelled { task.cancel() }
        }

        func cancel() {
            let task = lock.withLock {
                cancelled = true
                return self.task
            }
            task?.cancel()
        }
    }

    static func httpError(_ status: Int, _ data: Data) -> ParleyError {
        if let body = try? JSONDecoder().decode(ErrorBody.self, from: data) {
            return .http(HTTPFailure(status: status, code: APIErrorCode(rawValue: body.code), message: body.message))
        }
        let text = String(decoding: data.prefix(200), as: UTF8.self)
        return .http(HTTPFailure(status: status, code: .other("http_\(status)"), message: text.isEmpty ? "no details" : text))
    }
}
