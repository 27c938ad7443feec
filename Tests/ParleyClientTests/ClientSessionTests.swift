import ParleyClient
import ParleyCore
import ParleyProtocol
import Testing

// Every test drives the pure `ClientSession` directly and asserts the exact actions it asks
// the shell to perform. Backoff delays are random by design, so `split` takes them out of
// the action list and they are checked against their bounds instead.

private let c1 = ConnectionID(1)
private let c2 = ConnectionID(2)
private let c3 = ConnectionID(3)
private let c4 = ConnectionID(4)
private let meetingID: MeetingID = "m1"
private let ann: ParticipantID = "p-ann"
private let bob: ParticipantID = "p-bob"
private let cat: ParticipantID = "p-cat"
private let e1 = Epoch(1)

private func makeSession(transport: TransportPreference = .webSocket, maxAttempts: Int = 100,
                         seed: UInt64 = 42) -> ClientSession {
    ClientSession(configuration: .init(token: "tok", opIDPrefix: "pfx",
                                       policy: ConnectionPolicy(transport: transport, maxAttemptsBeforeFirstWelcome: maxAttempts),
                                       jitterSeed: seed))
}

private func entry(_ seq: Seq, _ operation: MeetingOp, by issuer: Issuer = .participant(ann), opID: OpID? = nil) -> LogEntry {
    LogEntry(seq: seq, epoch: e1, at: 1_700_000_000_000 + Millis(seq), issuer: issuer, opID: opID, operation: operation)
}

/// The meeting after seq 2: Ann (host) and Bob (attendee) have joined.
private func twoPeople() -> Meeting {
    var meeting = Meeting(id: meetingID, title: "Standup")
    try! meeting.apply(.join(participant: ann, name: "Ann", role: .host), by: .system, at: 1, seq: 1)
    try! meeting.apply(.join(participant: bob, name: "Bob", role: .attendee), by: .system, at: 2, seq: 2)
    return meeting
}

private func welcome(_ mode: ResumeMode, seq: Seq, state: Meeting? = nil, meeting: MeetingID = meetingID) -> ServerFrame {
    .welcome(Welcome(meeting: meeting, participant: ann, epoch: e1, mode: mode, seq: seq, state: state,
                     limits: ConnectionLimits()))
}

private func chat(_ seq: Seq, _ text: String, from: ParticipantID = bob) -> ServerFrame {
    .event(.visible(entry(seq, .chat(text: text), by: .participant(from))))
}

/// Replaces every backoff delay with 0 and returns the delays on their own.
private func split(_ actions: [ClientSession.Action]) -> ([ClientSession.Action], [Int]) {
    var delays: [Int] = []
    let rest = actions.map { action -> ClientSession.Action in
        if case .scheduleReconnect(let ms) = action {
            delays.append(ms)
            return .scheduleReconnect(afterMs: 0)
        }
        return action
    }
    return (rest, delays)
}

/// Drops `from` and opens `to` at once (backoff elapsed), up to the hello.
private func reconnect(_ session: inout ClientSession, from: ConnectionID, to: ConnectionID) {
    _ = session.disconnected(from)
    _ = session.backoffElapsed()
    _ = session.connected(to)
}

/// A session welcomed on c1 with a snapshot at seq 2.
private func liveSession(transport: TransportPreference = .webSocket) -> ClientSession {
    var session = makeSession(transport: transport)
    _ = session.start()
    _ = session.connected(c1)
    _ = session.received(welcome(.snapshot, seq: 2, state: twoPeople()), on: c1)
    return session
}

@Suite("ClientSession")
struct ClientSessionTests {
    @Test("the first hello carries the token and no resume point")
    func firstHello() {
        var session = makeSession()
        #expect(session.start() == [.emit(.connection(.connecting)), .connect(c1, .webSocket)])
        #expect(session.connected(c1) == [.send(.hello(token: "tok", resume: nil), on: c1)])
        #expect(session.phase == .awaitingWelcome(c1))
    }

    @Test("the first welcome makes the session live with the snapshot as its state")
    func firstWelcome() {
        var session = makeSession()
        _ = session.start()
        _ = session.connected(c1)
        let actions = session.received(welcome(.snapshot, seq: 2, state: twoPeople()), on: c1)
        #expect(actions == [.emit(.connection(.connected)), .emit(.welcome(.snapshot))])
        #expect(session.phase == .live(c1))
        #expect(session.meeting == twoPeople())
        #expect(session.lastSeq == 2)
        #expect(session.meetingID == meetingID)
        #expect(session.participantID == ann)
    }

    @Test("after the first welcome, hello carries the resume point of the last seq seen")
    func helloCarriesResumePoint() {
        var session = liveSession()
        #expect(session.received(chat(3, "hi"), on: c1).count == 1)
        let (dropped, delays) = split(session.disconnected(c1))
        #expect(dropped == [.disconnect(c1, .transportClosed), .emit(.connection(.reconnecting)), .scheduleReconnect(afterMs: 0)])
        #expect((50...100).contains(delays[0]), "a drop after being live waits the initial backoff, jittered")
        #expect(session.backoffElapsed() == [.connect(c2, .webSocket)])
        #expect(session.connected(c2) == [.send(.hello(token: "tok", resume: ResumePoint(meeting: meetingID, seq: 3)), on: c2)])
    }

    @Test("op ids are the session's prefix and a counter")
    func opIDs() throws {
        var session = liveSession()
        let (first, _) = try session.send(.chat(text: "a"))
        let (second, _) = try session.send(.chat(text: "b"))
        #expect(first == "pfx-1")
        #expect(second == "pfx-2")
    }

    @Test("an op is sent at once when live and only queued when not")
    func sendWhenLiveOrNot() throws {
        var session = liveSession()
        let (id, actions) = try session.send(.chat(text: "now"))
        #expect(actions == [.send(.op(id: id, operation: .chat(text: "now")), on: c1)])
        _ = session.disconnected(c1)
        let (later, queued) = try session.send(.chat(text: "later"))
        #expect(queued == [])
        #expect(session.unacked.map(\.id) == [id, later])
    }

    @Test("after a reconnect, unacked ops are resent in order under their original ids")
    func resendAfterReconnect() throws {
        var session = liveSession()
        let (a, _) = try session.send(.chat(text: "a"))
        let (b, _) = try session.send(.chat(text: "b"))
        _ = session.received(.ack(id: a, epoch: e1, seq: 3), on: c1)
        _ = session.received(chat(3, "a", from: ann), on: c1)
        _ = session.disconnected(c1)
        let (c, _) = try session.send(.chat(text: "c"))
        _ = session.backoffElapsed()
        _ = session.connected(c2)
        let actions = session.received(welcome(.replay, seq: 3), on: c2)
        #expect(actions == [
            .emit(.connection(.resumed)), .emit(.welcome(.replay)),
            .send(.op(id: b, operation: .chat(text: "b")), on: c2),
            .send(.op(id: c, operation: .chat(text: "c")), on: c2),
        ])
    }

    @Test("after a resume answered with a snapshot, ops already sent are withdrawn, not resent (the server may have forgotten them); ops never sent are sent")
    func snapshotResumeWithdrawsSentOps() throws {
        var session = liveSession()
        let (a, _) = try session.send(.chat(text: "a"))
        _ = session.disconnected(c1)
        let (b, _) = try session.send(.chat(text: "b"))
        _ = session.backoffElapsed()
        _ = session.connected(c2)
        let actions = session.received(welcome(.snapshot, seq: 90, state: twoPeople()), on: c2)
        #expect(actions == [
            .emit(.connection(.resumed)), .emit(.welcome(.snapshot)),
            .complete(a, .withdrawn(OpWithdrawal(opID: a, reason: .outsideResumeWindow, mayHaveCommitted: true))),
            .send(.op(id: b, operation: .chat(text: "b")), on: c2),
        ])
        #expect(session.unacked.map(\.id) == [b])
        // A later resume by replay resends what is left, as always.
        reconnect(&session, from: c2, to: c3)
        #expect(session.received(welcome(.replay, seq: 90), on: c3)
                == [.emit(.connection(.resumed)), .emit(.welcome(.replay)), .send(.op(id: b, operation: .chat(text: "b")), on: c3)])
    }

    @Test("the event of our own op settles it as its ack would, so it is not resent after a resume from beyond it; the ack that follows is dropped")
    func ownEventSettlesTheOp() throws {
        var session = liveSession()
        let (a, _) = try session.send(.chat(text: "a"))
        let (b, _) = try session.send(.chat(text: "b"))
        let event = entry(3, .chat(text: "a"), by: .participant(ann), opID: a)
        #expect(session.received(.event(.visible(event)), on: c1)
                == [.emit(.entry(event)), .complete(a, .acked(Ack(id: a, epoch: e1, seq: 3)))])
        #expect(session.received(.ack(id: a, epoch: e1, seq: 3), on: c1) == [])
        // Bob's event with an op id like ours is not ours.
        _ = session.received(.event(.visible(entry(4, .chat(text: "b"), by: .participant(bob), opID: b))), on: c1)
        #expect(session.unacked.map(\.id) == [b])
        reconnect(&session, from: c1, to: c2)
        #expect(session.received(welcome(.replay, seq: 4), on: c2)
                == [.emit(.connection(.resumed)), .emit(.welcome(.replay)), .send(.op(id: b, operation: .chat(text: "b")), on: c2)])
    }

    @Test("an ack completes exactly that op, once")
    func ackCompletesThatOp() throws {
        var session = liveSession()
        let (a, _) = try session.send(.chat(text: "a"))
        let (b, _) = try session.send(.chat(text: "b"))
        #expect(session.received(.ack(id: b, epoch: e1, seq: 7), on: c1) == [.complete(b, .acked(Ack(id: b, epoch: e1, seq: 7)))])
        #expect(session.unacked.map(\.id) == [a])
        #expect(session.received(.ack(id: b, epoch: e1, seq: 7), on: c1) == [], "a second answer to a retried op is dropped")
    }

    @Test("a reject completes the op with the server's reason and it is never resent")
    func rejectCompletes() throws {
        var session = liveSession()
        let (a, _) = try session.send(.lock)
        let refusal = Rejection(.notHost, "only the host can lock or unlock the meeting")
        #expect(session.received(.reject(id: a, refusal), on: c1) == [.complete(a, .rejected(refusal))])
        _ = session.disconnected(c1)
        _ = session.backoffElapsed()
        _ = session.connected(c2)
        #expect(session.received(welcome(.replay, seq: 2), on: c2) == [.emit(.connection(.resumed)), .emit(.welcome(.replay))])
    }

    @Test("an error naming an op completes that op as invalid; it is never resent")
    func invalidOpCompletes() throws {
        var session = liveSession()
        let (a, _) = try session.send(.chat(text: "bad on the wire"))
        let (b, _) = try session.send(.lock)
        let error = ProtocolError(.frameTooLarge, "too big", opID: a)
        #expect(session.received(.error(error), on: c1) == [.complete(a, .invalid(error)), .emit(.error(error))])
        #expect(session.unacked.map(\.id) == [b])
        #expect(session.phase == .live(c1))
    }

    @Test("a visible event is applied to the local copy and emitted")
    func eventApplied() {
        var session = liveSession()
        #expect(session.received(chat(3, "hello"), on: c1) == [.emit(.entry(entry(3, .chat(text: "hello"), by: .participant(bob))))])
        #expect(session.meeting?.chat.map(\.text) == ["hello"])
        #expect(session.lastSeq == 3)
    }

    @Test("a duplicate event is dropped without touching the state")
    func duplicateDropped() {
        var session = liveSession()
        _ = session.received(chat(3, "once"), on: c1)
        #expect(session.received(chat(3, "once"), on: c1) == [])
        #expect(session.received(chat(2, "old"), on: c1) == [])
        #expect(session.meeting?.chat.map(\.text) == ["once"])
        #expect(session.lastSeq == 3)
        #expect(session.phase == .live(c1))
    }

    @Test("a gap drops the connection and resumes from the last seq applied, then replays the missing events")
    func gapResumes() {
        var session = liveSession()
        let (actions, _) = split(session.received(chat(5, "too far"), on: c1))
        #expect(actions == [
            .disconnect(c1, .protocolFault(.gap(expected: 3, received: 5))),
            .emit(.connection(.reconnecting)), .scheduleReconnect(afterMs: 0),
        ])
        #expect(session.lastSeq == 2)
        _ = session.backoffElapsed()
        #expect(session.connected(c2) == [.send(.hello(token: "tok", resume: ResumePoint(meeting: meetingID, seq: 2)), on: c2)])
        _ = session.received(welcome(.replay, seq: 2), on: c2)
        for seq: Seq in 3...5 { #expect(session.received(chat(seq, "m\(seq)"), on: c2).count == 1) }
        #expect(session.meeting?.chat.map(\.text) == ["m3", "m4", "m5"])
    }

    @Test("frames from a connection already dropped are ignored")
    func staleConnectionIgnored() {
        var session = liveSession()
        _ = session.received(chat(5, "gap"), on: c1)
        #expect(session.received(chat(3, "late"), on: c1) == [])
        #expect(session.disconnected(c1) == [])
        _ = session.backoffElapsed()
        #expect(session.connected(c1) == [], "c1 is not the connection being opened")
        #expect(session.phase == .connecting(c2))
    }

    @Test("snapshot mode replaces the local state and the seq")
    func snapshotReplaces() {
        var session = liveSession()
        _ = session.received(chat(3, "before"), on: c1)
        _ = session.disconnected(c1)
        _ = session.backoffElapsed()
        _ = session.connected(c2)
        var fresh = twoPeople()
        try! fresh.apply(.join(participant: cat, name: "Cat", role: .attendee), by: .system, at: 3, seq: 3)
        #expect(session.received(welcome(.snapshot, seq: 40, state: fresh), on: c2)
                == [.emit(.connection(.resumed)), .emit(.welcome(.snapshot))])
        #expect(session.meeting == fresh)
        #expect(session.lastSeq == 40)
        #expect(session.received(chat(41, "after"), on: c2).count == 1)
        #expect(session.meeting?.chat.map(\.text) == ["after"])
    }

    @Test("a redacted event advances the seq and leaves the state alone")
    func redactedAdvancesSeq() {
        var session = liveSession()
        let before = session.meeting
        #expect(session.received(.event(.redacted(seq: 3, epoch: e1, at: 9)), on: c1) == [])
        #expect(session.lastSeq == 3)
        #expect(session.meeting == before)
        #expect(session.received(chat(4, "next"), on: c1).count == 1)
    }

    @Test("an event that does not apply locally asks for a snapshot on the next connection")
    func inapplicableAsksForSnapshot() {
        var session = liveSession()
        let bad = entry(3, .lock, by: .participant(bob))  // Bob is not the host
        let (actions, _) = split(session.received(.event(.visible(bad)), on: c1))
        #expect(actions.first == .disconnect(c1, .protocolFault(.inapplicable(
            seq: 3, Rejection(.notHost, "only the host can lock or unlock the meeting")))))
        _ = session.backoffElapsed()
        #expect(session.connected(c2) == [.send(.hello(token: "tok", resume: nil), on: c2)])
    }

    @Test("backoff doubles after each failed attempt, with jitter, up to the cap")
    func backoffGrowsAndIsCapped() {
        var session = makeSession()
        _ = session.start()
        var delays: [Int] = []
        for attempt in 1...12 {
            let (_, delay) = split(session.disconnected(ConnectionID(UInt64(attempt))))
            delays += delay
            _ = session.backoffElapsed()
        }
        let config = session.configuration
        for (index, delay) in delays.enumerated() {
            let base = ClientSession.backoffBaseMs(failures: index + 1, configuration: config)
            #expect((base / 2...base).contains(delay), "attempt \(index + 1): \(delay) ms not in [\(base / 2), \(base)]")
        }
        #expect(ClientSession.backoffBaseMs(failures: 1, configuration: config) == 200)
        #expect(ClientSession.backoffBaseMs(failures: 5, configuration: config) == 3_200)
        #expect(ClientSession.backoffBaseMs(failures: 6, configuration: config) == 5_000)
        #expect(ClientSession.backoffBaseMs(failures: 1_000, configuration: config) == 5_000)
        #expect(delays.suffix(6).allSatisfy { (2_500...5_000).contains($0) })
    }

    @Test("a welcome resets the backoff")
    func welcomeResetsBackoff() {
        var session = makeSession()
        _ = session.start()
        for attempt: UInt64 in 1...5 {
            _ = session.disconnected(ConnectionID(attempt))
            _ = session.backoffElapsed()
        }
        _ = session.connected(ConnectionID(6))
        _ = session.received(welcome(.snapshot, seq: 2, state: twoPeople()), on: ConnectionID(6))
        let (_, delays) = split(session.disconnected(ConnectionID(6)))
        #expect((50...100).contains(delays[0]))
    }

    @Test("the same seed gives the same delays")
    func jitterIsSeeded() {
        func delays(seed: UInt64) -> [Int] {
            var session = makeSession(seed: seed)
            _ = session.start()
            var result: [Int] = []
            for attempt: UInt64 in 1...8 {
                result += split(session.disconnected(ConnectionID(attempt))).1
                _ = session.backoffElapsed()
            }
            return result
        }
        #expect(delays(seed: 7) == delays(seed: 7))
        #expect(delays(seed: 7) != delays(seed: 8))
    }

    @Test("a fatal error that retrying cannot cure gives up and fails every pending op",
          arguments: [ProtocolErrorCode.invalidToken, .tokenExpired, .unknownMeeting, .joinRefused, .meetingEnded, .replaced])
    func fatalGivesUp(code: ProtocolErrorCode) throws {
        var session = makeSession()
        _ = session.start()
        _ = session.connected(c1)
        let (id, _) = try session.send(.chat(text: "queued"))
        let error = ProtocolError(code, "no", fatal: true)
        #expect(session.received(.error(error), on: c1) == [
            .disconnect(c1, .serverError(error)),
            .complete(id, .failed(.refused(error))),
            .emit(.connection(.closed(.refused(error)))),
            .finished(.refused(error)),
        ])
        #expect(session.phase == .closed(.refused(error)))
        #expect(throws: ParleyError.closed(.refused(error))) { try session.send(.chat(text: "after")) }
        #expect(session.tick(nowMs: 100_000) == [])
        #expect(session.backoffElapsed() == [])
    }

    @Test("a fatal error that a new connection may cure reconnects and keeps the ops")
    func retryableFatalReconnects() throws {
        var session = liveSession()
        let (id, _) = try session.send(.chat(text: "keep"))
        let error = ProtocolError(.slowConsumer, "too slow", fatal: true)
        let (actions, _) = split(session.received(.error(error), on: c1))
        #expect(actions == [.emit(.error(error)), .disconnect(c1, .serverError(error)),
                            .emit(.connection(.reconnecting)), .scheduleReconnect(afterMs: 0)])
        #expect(session.unacked.map(\.id) == [id])
    }

    @Test("a non-fatal error is reported and the connection stays")
    func nonFatalError() {
        var session = liveSession()
        let error = ProtocolError(.signalRefused, "only the holder of the control token may send input")
        #expect(session.received(.error(error), on: c1) == [.emit(.error(error))])
        #expect(session.phase == .live(c1))
    }

    @Test("seq_from_future makes the next hello ask for a snapshot")
    func seqFromFutureStartsOver() {
        var session = liveSession()
        _ = session.disconnected(c1)
        _ = session.backoffElapsed()
        _ = session.connected(c2)
        _ = session.received(.error(ProtocolError(.seqFromFuture, "ahead", fatal: true)), on: c2)
        _ = session.backoffElapsed()
        #expect(session.connected(c3) == [.send(.hello(token: "tok", resume: nil), on: c3)])
    }

    @Test("a welcome into another meeting gives up")
    func meetingMismatchGivesUp() {
        var session = liveSession()
        _ = session.disconnected(c1)
        _ = session.backoffElapsed()
        _ = session.connected(c2)
        let actions = session.received(welcome(.snapshot, seq: 1, state: Meeting(id: "m2", title: "x"), meeting: "m2"), on: c2)
        #expect(actions.last.map { if case .finished(.refused(let error)) = $0 { error.code == .meetingMismatch } else { false } } == true)
    }

    @Test("a quiet live connection is pinged, and a silent one is dropped after the heartbeat timeout")
    func heartbeat() {
        var session = liveSession()
        let ping = ClientSession.Action.send(.ping(nonce: nil), on: c1)
        #expect(session.tick(nowMs: 0) == [])
        #expect(session.tick(nowMs: 499) == [])
        #expect(session.tick(nowMs: 500) == [ping])
        #expect(session.tick(nowMs: 600) == [], "at most one ping per interval")
        _ = session.received(.pong(nonce: nil), on: c1)
        #expect(session.tick(nowMs: 700) == [])
        #expect(session.tick(nowMs: 1_200) == [ping])
        #expect(session.tick(nowMs: 1_700) == [ping])
        #expect(session.tick(nowMs: 2_199) == [])
        let (actions, _) = split(session.tick(nowMs: 2_200))
        #expect(actions == [.disconnect(c1, .timedOut), .emit(.connection(.reconnecting)), .scheduleReconnect(afterMs: 0)])
    }

    @Test("a live connection that answers pings but no op for the op-answer timeout is dropped and resumed (a hung host)")
    func opAnswerTimeout() throws {
        var session = liveSession()
        let ping = ClientSession.Action.send(.ping(nonce: nil), on: c1)
        let (first, _) = try session.send(.chat(text: "one"))
        let (second, _) = try session.send(.chat(text: "two"))
        #expect(session.tick(nowMs: 0) == [])
        // The gateway keeps answering pings: the connection is not silent.
        for now in stride(from: Int64(500), through: 9_500, by: 500) {
            let actions = session.tick(nowMs: now)
            #expect(actions == [] || actions == [ping], "at \(now): \(actions)")
            _ = session.received(.pong(nonce: nil), on: c1)
        }
        // An answer is progress: the clock starts again for the op still waiting.
        _ = session.received(.ack(id: first, epoch: Epoch(1), seq: 5), on: c1)
        #expect(session.tick(nowMs: 9_600) == [])
        _ = session.received(.pong(nonce: nil), on: c1)
        #expect(session.tick(nowMs: 19_599).filter { if case .disconnect = $0 { true } else { false } } == [],
                "10 s after the last answer, not after the first op's send")
        _ = session.received(.pong(nonce: nil), on: c1)
        let (actions, _) = split(session.tick(nowMs: 19_600))
        #expect(actions == [.disconnect(c1, .timedOut), .emit(.connection(.reconnecting)), .scheduleReconnect(afterMs: 0)])
        #expect(session.unacked.map(\.id) == [second], "the waiting op is kept and resent after the next welcome")
    }

    @Test("a connection that is not welcomed within the connect timeout is dropped")
    func connectTimeout() {
        var session = makeSession()
        _ = session.start()
        #expect(session.tick(nowMs: 0) == [])
        _ = session.connected(c1)
        #expect(session.tick(nowMs: 2_999) == [])
        let (actions, _) = split(session.tick(nowMs: 5_999))
        #expect(actions == [.disconnect(c1, .timedOut), .scheduleReconnect(afterMs: 0)])
    }

    @Test("automatic mode falls back to long-polling after three failed WebSocket attempts, and tries WebSocket first again after the next drop")
    func automaticFallback() {
        var session = makeSession(transport: .automatic)
        #expect(session.start().last == .connect(c1, .webSocket))
        _ = session.disconnected(c1)
        #expect(session.backoffElapsed() == [.connect(c2, .webSocket)])
        _ = session.disconnected(c2)
        #expect(session.backoffElapsed() == [.connect(c3, .webSocket)])
        _ = session.disconnected(c3)
        #expect(session.backoffElapsed() == [.connect(c4, .longPolling)])
        _ = session.connected(c4)
        _ = session.received(welcome(.snapshot, seq: 2, state: twoPeople()), on: c4)
        // Fallback is per outage: a restart must not leave the client on long-polling for good.
        _ = session.disconnected(c4)
        #expect(session.backoffElapsed() == [.connect(ConnectionID(5), .webSocket)])
    }

    @Test("a fixed transport is never changed")
    func fixedTransport() {
        var session = makeSession(transport: .longPolling)
        #expect(session.start().last == .connect(c1, .longPolling))
        for attempt: UInt64 in 1...6 {
            _ = session.disconnected(ConnectionID(attempt))
            #expect(session.backoffElapsed() == [.connect(ConnectionID(attempt + 1), .longPolling)])
        }
    }

    @Test("connect gives up when no attempt is welcomed")
    func unreachable() {
        var session = makeSession(maxAttempts: 2)
        _ = session.start()
        _ = session.disconnected(c1)
        _ = session.backoffElapsed()
        #expect(session.disconnected(c2) == [
            .disconnect(c2, .transportClosed),
            .emit(.connection(.closed(.unreachable(attempts: 2)))),
            .finished(.unreachable(attempts: 2)),
        ])
    }

    @Test("leave sends a leave frame, closes gracefully and fails the ops still pending")
    func leave() throws {
        var session = liveSession()
        let (id, _) = try session.send(.chat(text: "last words"))
        #expect(session.leave() == [
            .send(.leave, on: c1),
            .disconnect(c1, .leaving),
            .complete(id, .failed(.left)),
            .emit(.connection(.closed(.left))),
            .finished(.left),
        ])
        #expect(session.leave() == [])
        #expect(session.close() == [])
    }

    @Test("signals go out only while live and are not queued")
    func signals() {
        var session = makeSession()
        _ = session.start()
        #expect(session.signal(.typing(active: true)) == [])
        _ = session.connected(c1)
        _ = session.received(welcome(.snapshot, seq: 2, state: twoPeople()), on: c1)
        #expect(session.signal(.typing(active: true)) == [.send(.signal(.typing(active: true)), on: c1)])
        #expect(session.received(.signal(from: bob, .typing(active: false)), on: c1)
                == [.emit(.signal(from: bob, .typing(active: false)))])
    }

    @Test("pending ops are bounded")
    func pendingBound() throws {
        var session = ClientSession(configuration: .init(token: "t", opIDPrefix: "p", policy: ConnectionPolicy(maxPendingOps: 2)))
        _ = try session.send(.lock)
        _ = try session.send(.unlock)
        #expect(throws: ParleyError.tooManyPendingOps(limit: 2)) { try session.send(.end) }
    }

    @Test("an event before the welcome is a protocol fault")
    func eventBeforeWelcome() {
        var session = makeSession()
        _ = session.start()
        _ = session.connected(c1)
        let (actions, _) = split(session.received(chat(1, "early"), on: c1))
        #expect(actions == [.disconnect(c1, .protocolFault(.eventBeforeWelcome(seq: 1))), .scheduleReconnect(afterMs: 0)])
    }
}
