import Foundation
import ParleyClient

/// A Parley server in memory, for an app's own tests: hand its ``connector`` to
/// ``MeetingClient`` and the client talks to it exactly as to a real server, with no
/// network, no processes and no clock.
///
/// It keeps one meeting and applies ops with the same rules as the real server (the
/// meeting model in `ParleyCore` is shared), so a rejected op is rejected for the same
/// reason. It commits in order, deduplicates ops by id, replays on resume, and hides other
/// people's private messages. What it leaves out: tokens are not signed (any string from
/// ``token(name:role:)`` works), there is no persistence, no rate limiting and no failover.
///
/// ```swift
/// let parley = InMemoryParley(title: "Review")
/// let client = try MeetingClient(server: InMemoryParley.address, token: await parley.token(name: "Ada", role: .host),
///                                options: .init(connector: parley.connector))
/// try await client.connect()
/// await parley.dropConnections()      // the client resumes by itself
/// ```
public actor InMemoryParley {
    /// A placeholder server address for ``MeetingClient``; the connector ignores it.
    public static let address = URL(string: "http://parley.invalid")!

    /// The meeting as the server holds it, private messages included.
    public private(set) var meeting: Meeting
    /// Every committed entry, in seq order.
    public private(set) var log: [LogEntry] = []
    /// The epoch of every entry. It never changes: this fake never restarts or fails over.
    public let epoch: Epoch
    /// Connection attempts, successful or not.
    public private(set) var connectionAttempts = 0

    private struct Holder {
        var participant: ParticipantID
        var name: String
        var role: Role
        var expired = false
    }
    private var tokens: [String: Holder] = [:]
    private var nextParticipant = 1
    private var connections: [Int: (participant: ParticipantID, frames: AsyncStream<ServerFrame>.Continuation)] = [:]
    private var nextConnection = 0
    private var committed: [OpKey: Seq] = [:]
    private var refusing = false
    private var webSocketBlocked = false
    /// Commit times: a counter, not a clock, so a test's history is the same on every run.
    private var nextMillis: Millis = 1_700_000_000_000

    private struct OpKey: Hashable {
        var participant: ParticipantID
        var opID: OpID
    }

    /// One empty meeting, `meetingID`. Nobody is in it until a client connects with a
    /// ``token(name:role:)``.
    public init(title: String = "Test meeting", settings: MeetingSettings = MeetingSettings(),
                meetingID: MeetingID = "m-test", epoch: Epoch = Epoch(1)) {
        meeting = Meeting(id: meetingID, title: title, settings: settings)
        self.epoch = epoch
    }

    // MARK: - What a test controls

    /// A join token for a new participant. It is not a JWT: only this fake accepts it.
    public func token(name: String, role: Role = .attendee) -> String {
        let participant = ParticipantID("p-\(nextParticipant)")
        nextParticipant += 1
        let token = "in-memory.\(meeting.id.rawValue).\(participant.rawValue)"
        tokens[token] = Holder(participant: participant, name: name, role: role)
        return token
    }

    /// A fresh token for the same participant as `token`, as an app's backend would mint
    /// one for a ``MeetingClient/Options/tokenProvider``.
    public func renew(_ token: String) -> String? {
        guard let holder = tokens[token] else { return nil }
        let fresh = "\(token).r\(tokens.count)"
        tokens[fresh] = Holder(participant: holder.participant, name: holder.name, role: holder.role)
        return fresh
    }

    /// Every token issued so far is refused from now on as `token_expired`, and the
    /// connections are dropped (a real server checks tokens at `hello`).
    public func expireTokens() {
        for key in tokens.keys { tokens[key]?.expired = true }
        dropConnections()
    }

    /// Ends every connection, as a server that dies does; the meeting is kept, so clients
    /// resume where they were.
    public func dropConnections() {
        for id in Array(connections.keys) { forget(id) }
    }

    /// While true, connection attempts fail at once, as to a server that is down.
    public func refuseConnections(_ refusing: Bool) {
        self.refusing = refusing
        if refusing { dropConnections() }
    }

    /// While true, WebSocket attempts fail (long-polling still works), as behind a proxy
    /// that blocks WebSockets.
    public func blockWebSocket(_ blocked: Bool) { webSocketBlocked = blocked }

    /// Connections open now.
    public var openConnections: Int { connections.count }

    /// Commits an op as if `participant` had sent it from another client.
    @discardableResult
    public func commit(_ operation: MeetingOp, by participant: ParticipantID) throws(Rejection) -> LogEntry {
        try commit(operation, issuer: .participant(participant), opID: nil)
    }

    // MARK: - The connector

    /// Give this to ``MeetingClient/Options/connector``.
    public nonisolated var connector: Connector {
        Connector(
            open: { [self] transport, link in try await serve(transport, link) },
            probeWebSocket: { [self] in await !isBlocked(.webSocket) })
    }

    private func isBlocked(_ transport: Transport) -> Bool {
        refusing || (transport == .webSocket && webSocketBlocked)
    }

    private func attempt(_ transport: Transport) throws {
        connectionAttempts += 1
        if isBlocked(transport) { throw InMemoryParleyError.unreachable(transport) }
    }

    private func serve(_ transport: Transport, _ link: ConnectionLink) async throws {
        try attempt(transport)
        let id = nextConnection
        nextConnection += 1
        let (frames, sink) = AsyncStream.makeStream(of: ServerFrame.self)
        defer { forget(id) }
        await link.onConnected()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await frame in frames { await link.onFrame(frame) }
                throw InMemoryParleyError.connectionDropped
            }
            group.addTask { [self] in
                for await frame in link.outbound {
                    guard await receive(frame, on: id, sink: sink) else { break }
                }
                sink.finish()
            }
            // Either side ending ends the connection.
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    /// Ends a connection. Like the server, a participant left with no connection who did not
    /// leave is shown as reconnecting.
    private func forget(_ id: Int) {
        guard let connection = connections.removeValue(forKey: id) else { return }
        connection.frames.finish()
        let participant = connection.participant
        guard meeting.participant(participant)?.presence == .connected,
              !connections.values.contains(where: { $0.participant == participant }) else { return }
        _ = try? commit(.presence(participant: participant, presence: .reconnecting), issuer: .system, opID: nil)
    }

    /// False when the connection is over.
    private func receive(_ frame: ClientFrame, on id: Int, sink: AsyncStream<ServerFrame>.Continuation) -> Bool {
        guard let participant = connections[id]?.participant else {
            guard case .hello(let token, let resume) = frame else {
                sink.yield(.error(ProtocolError(.notJoined, "say hello first", fatal: true)))
                return false
            }
            return hello(token: token, resume: resume, on: id, sink: sink)
        }
        switch frame {
        case .hello:
            sink.yield(.error(ProtocolError(.alreadyJoined, "this connection has said hello already", fatal: true)))
            return false
        case .op(let opID, let operation):
            if let seq = committed[OpKey(participant: participant, opID: opID)] {
                sink.yield(.ack(id: opID, epoch: epoch, seq: seq))  // a resend: answered, not applied again
                return true
            }
            do throws(Rejection) {
                let entry = try commit(operation, issuer: .participant(participant), opID: opID)
                sink.yield(.ack(id: opID, epoch: epoch, seq: entry.seq))
            } catch {
                sink.yield(.reject(id: opID, error))
            }
        case .signal(let signal):
            for (other, connection) in connections where other != id {
                connection.frames.yield(.signal(from: participant, signal))
            }
        case .ping(let nonce):
            sink.yield(.pong(nonce: nonce))
        case .leave:
            _ = try? commit(.leave(participant: participant), issuer: .system, opID: nil)
            return false
        }
        return true
    }

    private func hello(token: String, resume: ResumePoint?, on id: Int,
                       sink: AsyncStream<ServerFrame>.Continuation) -> Bool {
        guard let holder = tokens[token] else {
            sink.yield(.error(ProtocolError(.invalidToken, "this token was not issued by this server", fatal: true)))
            return false
        }
        guard !holder.expired else {
            sink.yield(.error(ProtocolError(.tokenExpired, "the token has expired; get a fresh one", fatal: true)))
            return false
        }
        let participant = holder.participant
        // As on the server: the welcome comes first, then the arrival is committed (a join,
        // or back to connected), so the participant sees its own arrival as an event.
        let arrival: MeetingOp? = switch meeting.participant(participant)?.presence {
        case nil, .left?: .join(participant: participant, name: holder.name, role: holder.role)
        case .reconnecting?: .presence(participant: participant, presence: .connected)
        case .connected?: nil
        }
        if let arrival {
            var probe = meeting
            do throws(Rejection) {
                try probe.apply(arrival, by: .system, at: nextMillis, seq: (log.last?.seq ?? 0) + 1)
            } catch {
                sink.yield(.error(ProtocolError(error.code == .meetingEnded ? .meetingEnded : .joinRefused, error.message,
                                                fatal: true)))
                return false
            }
        }
        let lastSeq = log.last?.seq ?? 0
        let welcome: Welcome
        var replay: [LogEntry] = []
        if let resume, resume.meeting == meeting.id, resume.seq <= lastSeq {
            welcome = Welcome(meeting: meeting.id, participant: participant, epoch: epoch, mode: .replay,
                              seq: resume.seq, state: nil, limits: ConnectionLimits())
            replay = log.filter { $0.seq > resume.seq }
        } else {
            welcome = Welcome(meeting: meeting.id, participant: participant, epoch: epoch, mode: .snapshot,
                              seq: lastSeq, state: meeting.visible(to: participant), limits: ConnectionLimits())
        }
        sink.yield(.welcome(welcome))
        for entry in replay { sink.yield(.event(DeliveredEntry(entry, for: participant))) }
        connections[id] = (participant, sink)
        if let arrival { _ = try? commit(arrival, issuer: .system, opID: nil) }
        return true
    }

    @discardableResult
    private func commit(_ operation: MeetingOp, issuer: Issuer, opID: OpID?) throws(Rejection) -> LogEntry {
        let seq = (log.last?.seq ?? 0) + 1
        let at = nextMillis
        try meeting.apply(operation, by: issuer, at: at, seq: seq)
        nextMillis += 1
        let entry = LogEntry(seq: seq, epoch: epoch, at: at, issuer: issuer, opID: opID, operation: operation)
        log.append(entry)
        if let opID, case .participant(let participant) = issuer {
            committed[OpKey(participant: participant, opID: opID)] = seq
        }
        for connection in connections.values {
            connection.frames.yield(.event(DeliveredEntry(entry, for: connection.participant)))
        }
        return entry
    }
}

/// Why a connection to an ``InMemoryParley`` ended; the client treats it as the network.
public enum InMemoryParleyError: Error, Equatable, Sendable {
    /// Refused by ``InMemoryParley/refuseConnections(_:)`` or ``InMemoryParley/blockWebSocket(_:)``.
    case unreachable(Transport)
    /// Ended by ``InMemoryParley/dropConnections()`` or ``InMemoryParley/expireTokens()``.
    case connectionDropped
}
