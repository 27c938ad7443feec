import Foundation
import ParleyClient
import Testing

// The pure session's answers to what issue 14 found: per-outage transport fallback and the
// WebSocket probe, withdrawing ops (cancelled or past their deadline), token renewal, and
// options that are checked rather than trapped on.

private let meetingID: MeetingID = "m1"
private let ann: ParticipantID = "p-ann"

private func session(_ transport: TransportPreference = .automatic, canRenewToken: Bool = false,
                     probe: Duration = .seconds(15)) -> ClientSession {
    ClientSession(configuration: .init(
        token: "tok-1", opIDPrefix: "pfx",
        policy: ConnectionPolicy(transport: transport, webSocketProbeInterval: probe, maxAttemptsBeforeFirstWelcome: 100),
        jitterSeed: 7, canRenewToken: canRenewToken))
}

private func welcome(seq: Seq = 1) -> ServerFrame {
    var meeting = Meeting(id: meetingID, title: "Standup")
    try! meeting.apply(.join(participant: ann, name: "Ann", role: .host), by: .system, at: 1, seq: 1)
    return .welcome(Welcome(meeting: meetingID, participant: ann, epoch: Epoch(1), mode: .snapshot, seq: seq,
                            state: meeting, limits: ConnectionLimits()))
}

/// The connect action among `actions`, if any.
private func connect(in actions: [ClientSession.Action]) -> (ConnectionID, Transport)? {
    for action in actions { if case .connect(let id, let transport) = action { return (id, transport) } }
    return nil
}

/// Fails `count` attempts in a row, returning the last connect action's transport.
private func fail(_ session: inout ClientSession, _ count: Int) -> Transport? {
    var transport: Transport?
    for _ in 0..<count {
        guard let current = session.currentConnection else { break }
        _ = session.disconnected(current)
        transport = connect(in: session.backoffElapsed())?.1
    }
    return transport
}

/// A tick on a connection that has just heard from the server (a pong), so the heartbeat
/// timeout stays out of the way.
private func tickHeard(_ session: inout ClientSession, _ nowMs: Int64) -> [ClientSession.Action] {
    if let id = session.currentConnection { _ = session.received(.pong(nonce: nil), on: id) }
    return session.tick(nowMs: nowMs)
}

/// Brings the session live on its current connection.
private func welcomeNow(_ session: inout ClientSession) {
    let id = session.currentConnection!
    _ = session.connected(id)
    _ = session.received(welcome(), on: id)
}

@Suite("ClientSession lifecycle")
struct ClientSessionLifecycleTests {
    @Test("a session live on long-polling probes WebSocket after the probe interval and moves back when it works")
    func probeMovesBackToWebSocket() {
        var s = session(probe: .seconds(10))
        _ = s.start()
        #expect(fail(&s, 3) == .longPolling)
        welcomeNow(&s)
        let live = s.currentConnection!
        #expect(tickHeard(&s, 0) == [], "the first tick schedules the probe")
        #expect(tickHeard(&s, 9_999).contains(.probeWebSocket) == false)
        let due = tickHeard(&s, 10_000)
        #expect(due.contains(.probeWebSocket))
        #expect(!tickHeard(&s, 10_100).contains(.probeWebSocket), "one probe at a time")
        let moved = s.webSocketProbed(succeeded: true)
        let next = ConnectionID(live.rawValue + 1)
        #expect(moved == [.disconnect(live, .upgrading), .emit(.connection(.reconnecting)), .connect(next, .webSocket)])
        #expect(s.transport == .webSocket)
        // The resume over WebSocket goes as any other: queued ops wait for the welcome.
        welcomeNow(&s)
        #expect(s.phase == .live(next))
        #expect(!tickHeard(&s, 50_000).contains(.probeWebSocket), "no probes once on WebSocket")
    }

    @Test("a failed probe leaves the long-polling connection alone and the next probe waits twice as long")
    func failedProbeBacksOff() {
        var s = session(probe: .seconds(10))
        _ = s.start()
        _ = fail(&s, 3)
        welcomeNow(&s)
        let live = s.currentConnection!
        _ = tickHeard(&s, 0)
        #expect(tickHeard(&s, 10_000).contains(.probeWebSocket))
        #expect(s.webSocketProbed(succeeded: false) == [])
        #expect(s.phase == .live(live))
        _ = tickHeard(&s, 10_100)  // schedules the next probe, 20 s out
        #expect(!tickHeard(&s, 30_099).contains(.probeWebSocket))
        #expect(tickHeard(&s, 30_100).contains(.probeWebSocket))
    }

    @Test("fixed long-polling never probes")
    func fixedLongPollingNeverProbes() {
        var s = session(.longPolling, probe: .milliseconds(10))
        _ = s.start()
        welcomeNow(&s)
        for now in stride(from: Int64(0), through: 1_000, by: 100) {
            #expect(!tickHeard(&s, now).contains(.probeWebSocket))
        }
    }

    @Test("a withdrawn op that was never sent is certainly not committed, and is not sent after the welcome")
    func withdrawUnsent() throws {
        var s = session(.webSocket)
        _ = s.start()
        let (id, actions) = try s.send(.chat(text: "queued"))
        #expect(actions == [])
        #expect(s.withdraw(id, .cancelled)
            == [.complete(id, .withdrawn(OpWithdrawal(opID: id, reason: .cancelled, mayHaveCommitted: false)))])
        let c1 = s.currentConnection!
        _ = s.connected(c1)
        let welcomed = s.received(welcome(), on: c1)
        #expect(!welcomed.contains { if case .send(.op, _) = $0 { true } else { false } })
        #expect(s.withdraw(id, .cancelled) == [], "completed once only")
    }

    @Test("a withdrawn op that was sent may have committed; its late ack is ignored")
    func withdrawSent() throws {
        var s = session(.webSocket)
        _ = s.start()
        welcomeNow(&s)
        let c1 = s.currentConnection!
        let (id, actions) = try s.send(.chat(text: "sent"))
        #expect(actions == [.send(.op(id: id, operation: .chat(text: "sent")), on: c1)])
        #expect(s.withdraw(id, .cancelled)
            == [.complete(id, .withdrawn(OpWithdrawal(opID: id, reason: .cancelled, mayHaveCommitted: true)))])
        #expect(s.received(.ack(id: id, epoch: Epoch(1), seq: 2), on: c1) == [])
    }

    @Test("an op's deadline passes on a tick even while there is no connection")
    func deadlineWhileDisconnected() throws {
        var s = session(.webSocket)
        _ = s.start()
        welcomeNow(&s)
        _ = s.disconnected(s.currentConnection!)
        let (id, _) = try s.send(.chat(text: "late"), deadlineMs: 1_000)
        let (other, _) = try s.send(.chat(text: "no deadline"))
        #expect(s.tick(nowMs: 999) == [])
        #expect(s.tick(nowMs: 1_000)
            == [.complete(id, .withdrawn(OpWithdrawal(opID: id, reason: .timedOut, mayHaveCommitted: false)))])
        #expect(s.unacked.map(\.id) == [other])
    }

    @Test("a refused token is renewed and retried when the shell can renew it; the new token goes in the next hello")
    func tokenRenewal() {
        var s = session(.webSocket, canRenewToken: true)
        _ = s.start()
        welcomeNow(&s)
        let c1 = s.currentConnection!
        _ = s.disconnected(c1)
        let c2 = connect(in: s.backoffElapsed())!.0
        _ = s.connected(c2)
        let expired = ProtocolError(.tokenExpired, "expired", fatal: true)
        let refused = s.received(.error(expired), on: c2)
        #expect(refused.contains(.emit(.error(expired))))
        #expect(!refused.contains { if case .finished = $0 { true } else { false } })
        let c3 = ConnectionID(c2.rawValue + 1)
        #expect(s.backoffElapsed() == [.renewToken(for: c3)])
        #expect(s.phase == .renewingToken(c3))
        #expect(s.tokenRenewed("tok-2") == [.connect(c3, .webSocket)])
        #expect(s.connected(c3).first == .send(.hello(token: "tok-2", resume: ResumePoint(meeting: meetingID, seq: 1)), on: c3))
    }

    @Test("a provider that keeps handing out refused tokens ends the session after three refusals in a row")
    func tokenRefusedForGood() {
        var s = session(.webSocket, canRenewToken: true)
        _ = s.start()
        welcomeNow(&s)
        _ = s.disconnected(s.currentConnection!)
        let expired = ProtocolError(.tokenExpired, "expired", fatal: true)
        var last: [ClientSession.Action] = []
        for round in 1...ClientSession.maxTokenRefusalsInARow + 1 {
            let actions = s.backoffElapsed()
            var id = s.currentConnection!
            if case .renewToken(let renewing) = actions.first {
                id = renewing
                _ = s.tokenRenewed("tok-\(round)")
            }
            _ = s.connected(id)
            last = s.received(.error(expired), on: id)
        }
        #expect(last.contains(.finished(.refused(expired))))
        #expect(s.phase == .closed(.refused(expired)))
    }

    @Test("without a provider an expired token ends the session")
    func tokenRefusedWithoutProvider() {
        var s = session(.webSocket)
        _ = s.start()
        let c1 = s.currentConnection!
        _ = s.connected(c1)
        let expired = ProtocolError(.tokenExpired, "expired", fatal: true)
        #expect(s.received(.error(expired), on: c1).contains(.finished(.refused(expired))))
    }

    @Test("a provider that fails counts as a failed attempt and is asked again next time")
    func tokenProviderFails() {
        var s = session(.webSocket, canRenewToken: true)
        _ = s.start()
        let c1 = s.currentConnection!
        _ = s.connected(c1)
        _ = s.received(.error(ProtocolError(.invalidToken, "bad", fatal: true)), on: c1)
        guard case .renewToken(let c2) = s.backoffElapsed().first else { Issue.record("no renewal asked"); return }
        let failed = s.tokenRenewalFailed(for: c2)
        #expect(!failed.contains { if case .disconnect = $0 { true } else { false } }, "nothing was opened")
        #expect(failed.contains { if case .scheduleReconnect = $0 { true } else { false } })
        guard case .renewToken = s.backoffElapsed().first else { Issue.record("not asked again"); return }
    }

    @Test("options out of range are a thrown error that names the option")
    func invalidOptions() {
        #expect(throws: ParleyError.invalidOptions("heartbeatTimeout (1.0 seconds) must be longer than heartbeatInterval (2.0 seconds)")) {
            try ConnectionPolicy(heartbeatInterval: .seconds(2), heartbeatTimeout: .seconds(1)).validate()
        }
        #expect(throws: ParleyError.invalidOptions("maxPendingOps must be 1 or more (it is 0)")) {
            try ConnectionPolicy(maxPendingOps: 0).validate()
        }
        #expect(throws: ParleyError.invalidOptions("eventBufferLimit must be 1 or more (it is 0)")) {
            _ = try MeetingClient(server: InMemoryAddress.url, token: "t", options: .init(eventBufferLimit: 0))
        }
        #expect(throws: ParleyError.invalidServerURL("ftp://example.com")) {
            _ = try MeetingClient(server: URL(string: "ftp://example.com")!, token: "t")
        }
    }

    @Test("events and states print as sentences")
    func printable() {
        #expect("\(ConnectionState.reconnecting)" == "reconnecting")
        #expect("\(ConnectionState.closed(.left))" == "closed: left the meeting")
        #expect("\(ClientEvent.connection(.resumed))" == "connection resumed")
        #expect("\(ClientEvent.dropped(count: 3))" == "3 events dropped: the subscriber fell behind")
        #expect("\(ClientEvent.welcome(.replay))" == "welcome (replay)")
    }

    @Test("HTTP error codes are an enum that keeps codes it does not know")
    func apiErrorCodes() {
        #expect(APIErrorCode(rawValue: "token_expired") == .tokenExpired)
        #expect(APIErrorCode(rawValue: "token_expired").rawValue == "token_expired")
        #expect(APIErrorCode(rawValue: "brand_new_code") == .other("brand_new_code"))
        #expect(APIErrorCode(rawValue: "brand_new_code").rawValue == "brand_new_code")
    }
}

enum InMemoryAddress {
    static let url = URL(string: "http://127.0.0.1:9")!
}
