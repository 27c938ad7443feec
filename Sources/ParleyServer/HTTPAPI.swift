import FoundationEssentials
import Hummingbird
import Logging
import NIOCore
import ParleyCore
import ParleyProtocol
import ParleyStore
import ParleyTelemetry

/// An HTTP error with a stable code, rendered as `{"code": ..., "message": ...}`.
public struct APIError: HTTPResponseError {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = try JSONEncoder().encode(["code": code, "message": message])
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}

struct CreateMeetingRequest: Decodable {
    var title: String
    var settings: MeetingSettings?
}

struct CreatedMeeting: Encodable {
    var meeting: MeetingRecord
    var hostToken: String
    var participant: ParticipantID
}

struct IssueTokenRequest: Decodable {
    var name: String
    var role: Role?
}

struct IssuedToken: Encodable {
    var token: String
    var participant: ParticipantID
}

/// Where the locator sends a meeting's clients.
public enum Location: Sendable {
    /// The base URL of the server hosting the meeting.
    case at(String)
    /// No server can take the meeting right now; the client retries after backing off.
    case unavailable(String)
}

/// The HTTP surface: meeting creation, join tokens and the locator (the front), the
/// long-poll transport (the hosting side), and health. A single server serves both sides.
struct HTTPAPI: Sendable {
    /// The hosting side: present on servers that host meetings.
    struct Transports: Sendable {
        let polls: PollSessions
        let gateway: Gateway
    }

    let store: any Store
    let tokens: TokenAuthority
    let transports: Transports?
    /// The front: present on servers clients create meetings and locate them through. Nil
    /// `locate` in a front means "this server itself".
    let front: Bool
    let locate: (@Sendable (MeetingID) async -> Location)?
    let configuration: ServerConfiguration
    let clock: @Sendable () -> Millis
    let logger: Logger

    /// A token expired this long ago can still be renewed, however short tokens live: a
    /// client that was offline for a few minutes keeps its session.
    static let minimumRenewalGraceSeconds = 600

    func router() -> Router<ParleyRequestContext> {
        let router = Router(context: ParleyRequestContext.self)
        let probe = StoreProbe(store: store)
        // Requests, errors and durations by route pattern (never by path: ids stay out of labels).
        if configuration.metrics.process.isOn { router.add(middleware: MetricsMiddleware()) }
        // Liveness: the process answers.
        router.get("/health") { _, _ in
            try json(["status": "ok"])
        }
        // Readiness: it can do its job (docs/operations.md, "Health and readiness").
        router.get("/ready") { _, _ in
            let problems = await readinessProblems(probe)
            return try json(ReadyAnswer(problems), status: problems.isEmpty ? .ok : .serviceUnavailable)
        }
        if front {
            addFrontRoutes(router)
        } else if configuration.servesEdges {
            // A collaboration server serving edges is a place to connect to in its own right:
            // a client given its address is timed with ping and located here.
            addPing(router)
            addLocate(router)
        }
        if let transports { addPollRoutes(router, transports) }
        return router
    }

    /// The ping service: cheap enough to probe often, so a client can pick the nearest zone or
    /// server. Any origin may read it: a meeting page served by one front times the others.
    private func addPing(_ router: Router<ParleyRequestContext>) {
        router.group().add(middleware: AnyOrigin()).get("/v1/ping") { _, _ in
            struct Pong: Encodable { var pong = true; var serverTimeMs: Int64 }
            return try json(Pong(serverTimeMs: clock()))
        }
    }

    private func addFrontRoutes(_ router: Router<ParleyRequestContext>) {
        addPing(router)
        router.post("/v1/meetings") { request, context in
            try authorize(request)
            let body: CreateMeetingRequest = try await decode(request, context)
            let record = try MeetingRecord.new(title: body.title, settings: body.settings ?? MeetingSettings(), at: clock())
            do {
                try await store.createMeeting(record)
            } catch {
                logger.error("cannot create meeting", metadata: ["error": "\(error)"])
                throw APIError(.internalServerError, "internal_error", "the meeting could not be stored")
            }
            let participant = ParticipantID(randomID(prefix: "p"))
            let token = try await tokens.issue(meeting: record.id, participant: participant, name: "Host", role: .host)
            logger.info("meeting created", metadata: ["meeting": "\(record.id)", "title": "\(record.title)"])
            return try json(CreatedMeeting(meeting: record, hostToken: token, participant: participant), status: .created)
        }
        router.post("/v1/meetings/:id/tokens") { request, context in
            try authorize(request)
            let id = MeetingID(try context.parameters.require("id"))
            let body: IssueTokenRequest = try await decode(request, context)
            let name = body.name.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !name.isEmpty, name.count <= ModelLimits.nameLength else {
                throw APIError(.badRequest, "invalid_argument", "a name has 1 to \(ModelLimits.nameLength) characters")
            }
            let role = body.role ?? .attendee
            guard role != .host else {
                throw APIError(.forbidden, "forbidden", "host tokens are issued only when the meeting is created")
            }
            guard try await knownMeeting(id) else {
                throw APIError(.notFound, "unknown_meeting", "there is no meeting \(id)")
            }
            let participant = ParticipantID(randomID(prefix: "p"))
            let token = try await tokens.issue(meeting: id, participant: participant, name: name, role: role)
            return try json(IssuedToken(token: token, participant: participant), status: .created)
        }

        // A fresh token for the holder of a current (or lately expired) one: what an SDK's
        // token provider calls. The old token is the credential, so no API key is needed.
        router.post("/v1/tokens/renew") { request, _ in
            guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
                throw APIError(.unauthorized, "invalid_token", "send the token to renew as 'Authorization: Bearer <token>'")
            }
            do {
                let (token, claims) = try await tokens.renew(String(header.dropFirst("Bearer ".count)),
                                                             graceSeconds: max(configuration.tokenLifetimeSeconds,
                                                                               Self.minimumRenewalGraceSeconds))
                guard try await knownMeeting(claims.meeting) else {
                    throw APIError(.notFound, "unknown_meeting", "there is no meeting \(claims.meeting)")
                }
                return try json(IssuedToken(token: token, participant: claims.participant))
            } catch let error as ProtocolError {
                let status: HTTPResponse.Status = error.code == .internalError ? .internalServerError : .unauthorized
                throw APIError(status, error.code.rawValue, error.message)
            }
        }

        addLocate(router)
    }

    /// The locator. A single server hosts every meeting itself, and so does a collaboration
    /// server serving edges (from a copy); in a zone the web process answers with the
    /// collaboration server the manager chose.
    private func addLocate(_ router: Router<ParleyRequestContext>) {
        // Any origin may ask: a meeting page served by one front may locate through another
        // (`web.otherFronts`), and the answer is only an address.
        router.group().add(middleware: AnyOrigin()).get("/v1/meetings/:id/locate") { request, context in
            let id = MeetingID(try context.parameters.require("id"))
            guard try await knownMeeting(id) else {
                throw APIError(.notFound, "unknown_meeting", "there is no meeting \(id)")
            }
            guard let locate else {
                let host = request.head.authority ?? "\(configuration.host):\(configuration.port)"
                return try json(["meeting": id.rawValue, "url": "\(configuration.scheme)://\(host)"])
            }
            switch await locate(id) {
            case .at(let url):
                return try json(["meeting": id.rawValue, "url": url])
            case .unavailable(let why):
                throw APIError(.serviceUnavailable, "unavailable", why)
            }
        }
    }

    /// Long-polling virtual sockets.
    private func addPollRoutes(_ router: Router<ParleyRequestContext>, _ transports: Transports) {
        let polls = transports.polls
        let gateway = transports.gateway
        // In a zone the meeting page comes from the web process and polls a collaboration
        // server on another port. The token in the hello authorizes, not a cookie, so any
        // origin may read the answers.
        let router = router.group().add(middleware: AnyOrigin())
        router.post("/v1/poll") { request, _ in
            let body = try await collect(request, upTo: configuration.limits.maxFrameBytes, code: ProtocolErrorCode.frameTooLarge.rawValue,
                                         "a hello may be at most maxFrameBytes (\(configuration.limits.maxFrameBytes)) bytes")
            // A session exists only for a readable hello, so a bad request leaves nothing behind.
            let hello: ClientFrame
            do throws(ProtocolError) {
                hello = try ClientFrameDecoder(maxFrameBytes: configuration.limits.maxFrameBytes).decode(body.readableBytesView)
            } catch {
                throw APIError(.badRequest, error.code.rawValue, error.message)
            }
            guard case .hello = hello else {
                throw APIError(.badRequest, ProtocolErrorCode.malformedFrame.rawValue, "the body of POST /v1/poll must be a hello frame")
            }
            let (sid, connection) = await polls.open()
            await gateway.receive(hello, from: connection)
            return try json(["sid": sid])
        }
        router.post("/v1/poll/:sid") { request, context in
            let sid = try context.parameters.require("sid")
            let batch = try count(request, "batch", minimum: 1)
            let connection: ClientConnection
            do throws(PollSessions.SendError) {
                // A batch taken already (the request was retried) is answered as before.
                guard let taken = try await polls.connection(sid, batch: batch) else { return Response(status: .noContent) }
                connection = taken
            } catch .unknownSession {
                throw unknownSession(sid)
            } catch .outOfStep(let batch, let expected) {
                throw APIError(.conflict, "poll_out_of_step", "batch \(batch) came before batch \(expected); open a new session and resume")
            }
            let body = try await collect(request, upTo: configuration.maxRequestBytes, code: "request_too_large",
                                         "a batch of frames may be at most \(configuration.maxRequestBytes) bytes")
            let decoder = ClientFrameDecoder(maxFrameBytes: configuration.limits.maxFrameBytes)
            do throws(ProtocolError) {
                for result in try decoder.decodeBatch(body.readableBytesView, maxBytes: configuration.maxRequestBytes) {
                    switch result {
                    case .success(let frame): await gateway.receive(frame, from: connection)
                    case .failure(let error): connection.fail(error, FrameEncoder())
                    }
                }
            } catch {
                throw APIError(.badRequest, error.code.rawValue, error.message)
            }
            return Response(status: .noContent)
        }
        router.get("/v1/poll/:sid") { request, context in
            let sid = try context.parameters.require("sid")
            var wait: Int64 = 25_000
            if let text = request.uri.queryParameters.get("waitMs") {
                guard let value = Int64(text), value >= 0 else {
                    throw APIError(.badRequest, "invalid_argument", "waitMs must be a whole number of milliseconds, 0 or more")
                }
                wait = value
            }
            wait = min(wait, configuration.pollMaxWaitMillis)
            let after = try count(request, "after", minimum: 0)
            do throws(PollSessions.ReceiveError) {
                let frames = try await polls.receive(sid, after: after, waitMillis: wait)
                var body = ByteBuffer()
                body.writeStaticString("[")
                for (index, frame) in frames.enumerated() {
                    if index > 0 { body.writeStaticString(",") }
                    body.writeImmutableBuffer(frame)
                }
                body.writeStaticString("]")
                return Response(status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                                body: .init(byteBuffer: body))
            } catch .alreadyReceiving {
                throw APIError(.conflict, "already_receiving", "another receive is waiting on this session")
            } catch .outOfStep(let after, let sent) {
                throw APIError(.conflict, "poll_out_of_step",
                               "the receive has read \(after) batches, and \(sent) were sent; open a new session and resume")
            } catch .unknownSession {
                throw unknownSession(sid)
            }
        }
        router.delete("/v1/poll/:sid") { _, context in
            let sid = try context.parameters.require("sid")
            guard await polls.close(sid) else { throw unknownSession(sid) }
            return Response(status: .noContent)
        }
    }

    /// The whole body, or `413 {"code": code}` when it is longer than `limit` (Hummingbird's
    /// own answer would be an empty 413, with nothing for a client to act on).
    private func collect(_ request: Request, upTo limit: Int, code: String, _ message: String) async throws -> ByteBuffer {
        do {
            return try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, code, message)
        }
    }

    /// A whole-number query parameter of a long-poll request, when given.
    private func count(_ request: Request, _ name: String, minimum: UInt64) throws -> UInt64? {
        guard let text = request.uri.queryParameters.get(name) else { return nil }
        guard let value = UInt64(text), value >= minimum else {
            throw APIError(.badRequest, "invalid_argument", "\(name) must be a whole number, \(minimum) or more")
        }
        return value
    }

    private func unknownSession(_ sid: String) -> APIError {
        APIError(.notFound, "unknown_session", "no long-poll session \(sid.prefix(64)); it closed or expired, open a new one")
    }

    private func knownMeeting(_ id: MeetingID) async throws -> Bool {
        do {
            return try await store.meeting(id) != nil
        } catch {
            throw APIError(.internalServerError, "internal_error", "the store failed: \(error)")
        }
    }

    private func authorize(_ request: Request) throws {
        guard let apiKey = configuration.apiKey else { return }
        guard request.headers[.authorization] == "Bearer \(apiKey)" else {
            throw APIError(.unauthorized, "unauthorized", "this server requires 'Authorization: Bearer <api key>'")
        }
    }

    private func decode<T: Decodable>(_ request: Request, _ context: ParleyRequestContext) async throws -> T {
        let body = try await request.body.collect(upTo: configuration.maxRequestBytes)
        do {
            return try JSONDecoder().decode(T.self, from: Data(body.readableBytesView))
        } catch let error as DecodingError {
            throw APIError(.badRequest, "malformed_request", "the body is not the expected JSON: \(Self.describe(error))")
        } catch {
            throw APIError(.badRequest, "malformed_request", "the body is not the expected JSON: \(error)")
        }
    }

    /// A decoding error in words, naming the field by its path ("settings.features.polls").
    static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey], _ last: (any CodingKey)? = nil) -> String {
            let names = (keys + (last.map { [$0] } ?? [])).map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
            return names.isEmpty ? "the body" : names.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
        }
        switch error {
        case .keyNotFound(let key, let context): return "\(path(context.codingPath, key)) is missing"
        case .typeMismatch(let type, let context): return "\(path(context.codingPath)) must be \(Self.typeName(type))"
        case .valueNotFound(let type, let context): return "\(path(context.codingPath)) must be \(Self.typeName(type)), not null"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "it is not valid JSON" : "\(path(context.codingPath)) is not valid: \(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is Bool.Type: "true or false"
        case is String.Type: "a string"
        case is Int.Type, is Int64.Type: "a whole number"
        default: "\(type)"
        }
    }

    /// Why this server cannot do its job now; empty when it can.
    func readinessProblems(_ probe: StoreProbe) async -> [String] {
        var problems: [String] = []
        if let problem = await probe.problem() { problems.append(problem) }
        problems += await configuration.readiness?() ?? []
        return problems
    }

    private func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let body = try JSONEncoder().encode(value)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}

extension MeetingRecord {
    /// A new meeting with a fresh id, or why its title or settings are refused.
    public static func new(title: String, settings: MeetingSettings, at now: Millis) throws(APIError) -> MeetingRecord {
        let title = title.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !title.isEmpty, title.count <= ModelLimits.titleLength else {
            throw APIError(.badRequest, "invalid_argument", "a title has 1 to \(ModelLimits.titleLength) characters")
        }
        guard settings.maxParticipants >= 0 else {
            throw APIError(.badRequest, "invalid_argument", "maxParticipants must be 0 (no limit) or more")
        }
        return MeetingRecord(id: MeetingID(randomID(prefix: "m")), title: title, settings: settings, createdAt: now)
    }
}

/// Lets pages from any origin read a response (CORS), for transports authorized by a token.
struct AnyOrigin: RouterMiddleware {
    func handle(_ request: Request, context: ParleyRequestContext,
                next: (Request, ParleyRequestContext) async throws -> Response) async throws -> Response {
        do {
            var response = try await next(request, context)
            response.headers[.accessControlAllowOrigin] = "*"
            return response
        } catch let error as APIError {
            var response = try error.response(from: request, context: context)
            response.headers[.accessControlAllowOrigin] = "*"
            return response
        }
    }
}

/// A random identifier such as `m-3kq9x0w2hc1z`; unguessable enough to serve as a link.
public func randomID(prefix: String) -> String {
    var generator = SystemRandomNumberGenerator()
    let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyz")
    return prefix + "-" + String((0..<16).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] })
}
