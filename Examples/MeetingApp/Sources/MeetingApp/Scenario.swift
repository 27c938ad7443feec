import Foundation
import ParleyClient

/// The sample's story; see ``MeetingApp``.
struct Scenario {
    let arguments: Arguments

    init(_ arguments: Arguments) { self.arguments = arguments }

    func run() async throws {
        let server = arguments.server
        // Meetings and tokens come from the HTTP API (or from the app's own backend).
        let issued = ContinuousClock.now
        let created = try await ParleyHTTP.createMeeting(server: server, title: "Sample review", apiKey: arguments.apiKey)
        let bobToken = try await ParleyHTTP.issueToken(server: server, meeting: created.meeting.id, name: "Bob",
                                                       apiKey: arguments.apiKey)
        say("meeting \(created.meeting.id)")

        // Options are Durations. A token provider keeps a session alive past its token:
        // Parley renews a token for whoever holds it.
        let renewals = Renewals()
        let renew: TokenProvider = { refused in
            let fresh = try await ParleyHTTP.renewToken(server: server, token: refused)
            await renewals.count(fresh.participant)
            return fresh.token
        }
        var logger = Logger(label: "meeting-app") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = arguments.verbose ? .debug : .notice
        let ada = try MeetingClient(server: server, token: created.hostToken, options: .init(
            policy: ConnectionPolicy(transport: .automatic, backoffMax: .seconds(1), webSocketProbeInterval: .seconds(1)),
            logger: logger, tokenProvider: renew))
        let bob = try MeetingClient(server: server, token: bobToken.token, options: .init(
            policy: ConnectionPolicy(transport: .longPolling, backoffMax: .seconds(1)),
            longPollWait: .seconds(5), logger: logger, tokenProvider: renew))

        let adaSaw = History(name: "ada")
        let bobSaw = History(name: "bob")
        let adaModel = await MeetingModel(client: ada)
        var acked: [Ack] = []
        try await withThrowingTaskGroup(of: Void.self) { group in
            // Every consumer has its own stream; `events` has everything from the start.
            group.addTask { await adaSaw.record(ada.events) }
            group.addTask { await bobSaw.record(bob.events) }
            group.addTask { await adaModel.run() }
            let adaStates = await ada.connectionStates()
            group.addTask { for await state in adaStates { say("ada is \(state)") } }

            try await ada.connect()
            try await bob.connect()
            say("connected: ada on \(await ada.transport), bob on \(await bob.transport)")
            let bobID = await bob.participantID!

            for round in 0...arguments.restarts {
                acked += try await talk(round: round, ada: ada, bob: bob)
                if round == 0 { acked += try await features(ada: ada, bob: bob, bobID: bobID) }
                guard round < arguments.restarts else { break }
                acked += try await restart(round + 1, ada: ada, bob: bob, tokensIssued: issued)
            }
            if arguments.restarts > 0 {
                // Fallback is per outage: Ada is back on WebSocket even if the restart
                // pushed her onto long-polling.
                try await waitUntil("ada is back on WebSocket", within: .seconds(15)) {
                    let transport = await ada.transport
                    let state = await ada.connectionState
                    return transport == .webSocket && state.isLive
                }
                say("ada back on \(await ada.transport)")
                acked.append(try await ada.send(.chat(text: "ada-final")))
            }
            // Events reach each participant in their own time: wait until both have seen
            // the last ack's seq before leaving.
            let last = acked.map(\.seq).max() ?? 0
            try await waitUntil("both have seen seq \(last)", within: .seconds(15)) {
                let seen = (await ada.lastSeq, await bob.lastSeq)
                return seen.0 >= last && seen.1 >= last
            }
            await bob.leave()
            await ada.leave()
            try await group.waitForAll()  // every stream ends with its session
        }
        let adaChats = await MainActor.run { adaModel.meeting?.chat.count ?? 0 }
        say("renewed tokens: \(await renewals.total)")
        try await check(acked: acked, ada: adaSaw, bob: bobSaw, modelChats: adaChats)
    }

    /// Three chat messages each, waiting for every ack.
    private func talk(round: Int, ada: MeetingClient, bob: MeetingClient) async throws -> [Ack] {
        var acks: [Ack] = []
        for index in 1...3 {
            acks.append(try await ada.send(.chat(text: "ada-\(round)-\(index)")))
            acks.append(try await bob.send(.chat(text: "bob-\(round)-\(index)")))
        }
        say("round \(round): 6 messages acked")
        return acks
    }

    /// A private message, a poll, a document paged through, and a refusal, typed.
    private func features(ada: MeetingClient, bob: MeetingClient, bobID: ParticipantID) async throws -> [Ack] {
        var acks: [Ack] = []
        acks.append(try await ada.send(.privateMessage(to: bobID, text: "just between us")))
        acks.append(try await ada.send(.createPoll(id: "lunch", question: "Lunch?", options: ["yes", "no"])))
        acks.append(try await bob.send(.vote(poll: "lunch", option: 0)))
        acks.append(try await ada.send(.addWhiteboard(id: "board", title: "Plan")))
        acks.append(try await ada.send(.turnPage(to: Meeting.firstWhiteboardPage(of: "board"))))
        do {
            try await bob.send(.end)
            say("bob ended the meeting?!")
        } catch .rejected(let rejection) {
            say("bob may not end the meeting: \(rejection.code.rawValue)")
        } catch {
            // Needed with Swift 6.3: a typed catch that is not exhaustive, followed by
            // another await, crashes the compiler (see the guide, "Errors").
            throw error
        }
        let meeting = await bob.meeting
        say("poll votes: \(meeting?.polls.first?.votes.count ?? 0), page: \(meeting?.currentPage?.rawValue ?? "none")")
        return acks
    }

    /// Asks for a restart, then keeps working through it: ops sent while the server is
    /// down wait and go out after the resume; one with a short timeout is withdrawn.
    private func restart(_ number: Int, ada: MeetingClient, bob: MeetingClient,
                         tokensIssued: ContinuousClock.Instant) async throws -> [Ack] {
        if number == arguments.restarts, let lifetime = arguments.tokenLifetime {
            // Past their expiry, but well within the time after it in which Parley renews them.
            say("waiting for the tokens to expire")
            try await Task.sleep(until: tokensIssued + lifetime + .seconds(1))
        }
        say("restart \(number) now")
        // The server must really be gone, not only Ada's connection: on a busy machine a
        // connection can drop (a late heartbeat) while the server still runs, and an op sent
        // then would be acknowledged.
        let server = arguments.server
        try await waitUntil("the server goes away", within: .seconds(60)) {
            guard await ada.connectionState == .reconnecting else { return false }
            do {
                _ = try await ParleyHTTP.ping(server: server)
                return false
            } catch {
                return true
            }
        }
        do {
            try await ada.send(.chat(text: "impatient-\(number)"), timeout: .milliseconds(100))
            say("impatient-\(number) was acked while the server was down?!")
        } catch .withdrawn(let withdrawal) {
            say("impatient-\(number) withdrawn; may have committed: \(withdrawal.mayHaveCommitted)")
        } catch {
            throw error
        }
        async let fromAda = ada.send(.chat(text: "ada-during-\(number)"))
        async let fromBob = bob.send(.chat(text: "bob-during-\(number)"))
        say("waiting for the server")
        let acks = try await [fromAda, fromBob]
        try await waitUntil("both resume", within: .seconds(60)) {
            let states = (await ada.connectionState, await bob.connectionState)
            return states == (.resumed, .resumed)
        }
        say("resumed \(number): ada on \(await ada.transport), bob on \(await bob.transport)")
        return acks
    }

    /// Every acked op is in both histories exactly once, at its seq; the private message
    /// only in Bob's and Ada's; the model agrees with the history.
    private func check(acked: [Ack], ada: History, bob: History, modelChats: Int) async throws {
        var problems: [String] = []
        for history in [ada, bob] {
            let seen = await history.entries
            let seqs = seen.map(\.seq)
            if seqs != seqs.sorted() || Set(seqs).count != seqs.count { problems.append("\(history.name): out of order or repeated") }
            let ids = Dictionary(seen.compactMap { entry in entry.opID.map { ($0, entry.seq) } }, uniquingKeysWith: { a, _ in a })
            for ack in acked where ids[ack.id] != ack.seq {
                problems.append("\(history.name): \(ack.id) acked at \(ack.seq) but seen at \(ids[ack.id].map(String.init) ?? "nowhere")")
            }
            if await history.dropped > 0 { problems.append("\(history.name): events dropped") }
        }
        let adaChats = await ada.entries.count { if case .chat = $0.operation { true } else { false } }
        if modelChats != adaChats { problems.append("model has \(modelChats) chats, history \(adaChats)") }
        let resumes = (await ada.resumes, await bob.resumes)
        if problems.isEmpty {
            say("summary: ok; \(acked.count) acked ops, each seen once in order by both; resumes ada=\(resumes.0) bob=\(resumes.1); chats=\(adaChats)")
        } else {
            say("summary: FAILED\n" + problems.joined(separator: "\n"))
            throw UsageError("the histories do not match the acks")
        }
    }

    private func waitUntil(_ what: String, within: Duration, _ condition: () async -> Bool) async throws {
        let deadline = ContinuousClock.now + within
        while !(await condition()) {
            guard ContinuousClock.now < deadline else { throw UsageError("gave up waiting until \(what)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

/// What one participant saw.
actor History {
    let name: String
    private(set) var entries: [LogEntry] = []
    private(set) var resumes = 0
    private(set) var dropped = 0

    init(name: String) { self.name = name }

    func record(_ events: EventStream) async {
        for await event in events {
            switch event {
            case .entry(let entry): entries.append(entry)
            case .connection(.resumed): resumes += 1
            case .dropped(let count): dropped += count
            default: break
            }
        }
    }
}

actor Renewals {
    private(set) var total = 0
    func count(_ participant: ParticipantID) { total += 1 }
}
