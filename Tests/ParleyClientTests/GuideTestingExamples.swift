import Foundation
import ParleyClient
import ParleyTesting
import Testing

// The examples of the SDK guide's "Testing" article (ParleyClient.docc/Testing.md), run as
// tests so that the article shows code known to work. A few more pin down what the other
// articles promise: token refusals, transport fallback, the model SwiftUI views read.

/// Quick reconnects keep tests fast; the defaults suit a real network.
private let quick = ConnectionPolicy(backoffInitial: .milliseconds(5), backoffMax: .milliseconds(50))

private struct NoSuchToken: Error {}

private actor Calls {
    private(set) var count = 0
    func add() { count += 1 }
}

@Suite("Guide: testing an app against InMemoryParley", .timeLimit(.minutes(1)))
struct GuideTestingExamples {
    @Test("a message sent while the server is down is committed once, after the client resumes")
    func messageSurvivesAnOutage() async throws {
        let parley = InMemoryParley(title: "Standup")
        let token = await parley.token(name: "Ada", role: .host)
        let client = try MeetingClient(server: InMemoryParley.address, token: token,
                                       options: .init(policy: quick, connector: parley.connector))
        try await client.connect()

        await parley.refuseConnections(true)    // the server goes away…
        let sending = Task { try await client.send(.chat(text: "still there?")) }
        try await Task.sleep(for: .milliseconds(50))
        await parley.refuseConnections(false)   // …and comes back
        let ack = try await sending.value

        #expect(await parley.meeting.chat.map(\.text) == ["still there?"])
        #expect(await parley.log.filter { $0.opID == ack.id }.count == 1)
        await client.close()
    }

    @Test("the fake applies the real rules: an attendee may not end the meeting")
    func attendeeMayNotEnd() async throws {
        let parley = InMemoryParley()
        let client = try MeetingClient(server: InMemoryParley.address, token: await parley.token(name: "Bob"),
                                       options: .init(policy: quick, connector: parley.connector))
        try await client.connect()
        do {
            try await client.send(.end)
            Issue.record("an attendee ended the meeting")
        } catch .rejected(let rejection) {
            #expect(rejection.code == .notHost)
        } catch {
            throw error
        }
        #expect(await parley.meeting.ended == false)
        await client.close()
    }

    @Test("what the test commits for another participant reaches the client as an entry")
    func othersOpsArrive() async throws {
        let parley = InMemoryParley()
        let ada = try MeetingClient(server: InMemoryParley.address, token: await parley.token(name: "Ada", role: .host),
                                    options: .init(policy: quick, connector: parley.connector))
        let bob = try MeetingClient(server: InMemoryParley.address, token: await parley.token(name: "Bob"),
                                    options: .init(policy: quick, connector: parley.connector))
        try await ada.connect()
        try await bob.connect()
        let bobID = try #require(await bob.participantID)

        try await parley.commit(.chat(text: "hi from Bob"), by: bobID)
        for await event in ada.events {
            if case .entry(let entry) = event, case .chat(let text) = entry.operation {
                #expect(text == "hi from Bob")
                #expect(entry.issuer == .participant(bobID))
                break
            }
        }
        await ada.close()
        await bob.close()
    }

    @Test("after the server drops every connection, the client resumes by itself and misses nothing")
    func resumesAfterADrop() async throws {
        let parley = InMemoryParley()
        let client = try MeetingClient(server: InMemoryParley.address, token: await parley.token(name: "Ada"),
                                       options: .init(policy: quick, connector: parley.connector))
        try await client.connect()
        let states = await client.connectionStates()
        await parley.dropConnections()
        for await state in states where state == .resumed { break }
        try await client.send(.chat(text: "after the drop"))
        #expect(await client.lastSeq == parley.log.last?.seq)
        await client.close()
    }

    @Test("an expired token is renewed through the token provider, and queued ops go out after")
    func expiredTokenIsRenewed() async throws {
        let parley = InMemoryParley()
        let options = MeetingClient.Options(
            policy: quick,
            tokenProvider: { refused in
                // An app asks its backend, or ParleyHTTP.renewToken; the fake renews it itself.
                guard let fresh = await parley.renew(refused) else { throw NoSuchToken() }
                return fresh
            },
            connector: parley.connector)
        let client = try MeetingClient(server: InMemoryParley.address, token: await parley.token(name: "Ada"),
                                       options: options)
        try await client.connect()
        await parley.expireTokens()   // refused from now on, and every connection drops
        try await client.send(.chat(text: "still me"))
        #expect(await client.connectionState == .resumed)
        await client.close()
    }

    @Test("a provider whose fresh tokens are refused too is called three times, then the session ends as refused")
    func refusedRenewalsEndTheSession() async throws {
        let parley = InMemoryParley()
        let calls = Calls()
        let options = MeetingClient.Options(
            policy: quick,
            tokenProvider: { _ in
                await calls.add()
                return "not a token this server issued"
            },
            connector: parley.connector)
        let client = try MeetingClient(server: InMemoryParley.address, token: await parley.token(name: "Ada"),
                                       options: options)
        try await client.connect()
        let states = await client.connectionStates()
        await parley.expireTokens()
        var last: ConnectionState?
        for await state in states { last = state }
        #expect(await calls.count == ClientSession.maxTokenRefusalsInARow)
        guard case .closed(.refused(let error)) = last else {
            Issue.record("the session ended as \(String(describing: last))")
            return
        }
        #expect(error.code == .invalidToken)
    }

    @Test("behind a proxy that blocks WebSockets the client uses long-polling, and moves back once it can")
    func fallsBackToLongPolling() async throws {
        let parley = InMemoryParley()
        await parley.blockWebSocket(true)
        var policy = quick
        policy.webSocketProbeInterval = .milliseconds(100)
        let client = try MeetingClient(server: InMemoryParley.address, token: await parley.token(name: "Ada"),
                                       options: .init(policy: policy, connector: parley.connector))
        try await client.connect()
        #expect(await client.transport == .longPolling)

        await parley.blockWebSocket(false)
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            let transport = await client.transport
            let state = await client.connectionState
            if transport == .webSocket, state.isLive { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(await client.transport == .webSocket)
        try await client.send(.chat(text: "back on WebSocket"))
        await client.close()
    }

    @Test("a MeetingModel follows its client: what a SwiftUI view reads")
    @MainActor
    func modelFollowsTheClient() async throws {
        let parley = InMemoryParley()
        let client = try MeetingClient(server: InMemoryParley.address, token: await parley.token(name: "Ada", role: .host),
                                       options: .init(policy: quick, connector: parley.connector))
        let model = MeetingModel(client: client)
        let following = Task { await model.run() }
        try await client.connect()
        try await model.send(.chat(text: "hello"))
        while model.meeting?.chat.count != 1 {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(model.me?.name == "Ada")
        await client.leave()
        await following.value
        #expect(model.connectionState == .closed(.left))
    }
}
