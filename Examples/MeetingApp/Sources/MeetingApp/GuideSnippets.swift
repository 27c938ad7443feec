import Foundation
import ParleyClient

// The code of the SDK's guide (parley-sdk/Sources/ParleyClient/ParleyClient.docc), compiled
// here so that it keeps compiling as the SDK changes: DocSnippetTests checks that every
// Swift block of the guide appears, line for line, in this app or in the SDK's tests.
// Nothing calls these functions; Scenario.swift runs the same calls against a real server.

// MARK: - Getting started

func gettingStartedSnippet() async throws {
    let server = URL(string: "http://127.0.0.1:8080")!
    let created = try await ParleyHTTP.createMeeting(server: server, title: "Design review")
    let invitation = try await ParleyHTTP.issueToken(server: server, meeting: created.meeting.id, name: "Bob")
    print("Bob joins with \(invitation.token)")

    let client = try MeetingClient(server: server, token: created.hostToken)
    let reading = Task {
        for await event in client.events {
            if case .entry(let entry) = event {
                print("seq \(entry.seq): \(entry.operation.kind) by \(entry.issuer)")
            }
        }
    }
    try await client.connect()

    let ack = try await client.send(.chat(text: "Shall we start?"))
    print("committed at seq \(ack.seq)")
    if let meeting = await client.meeting {
        print("\(meeting.participants.count) here, \(meeting.chat.count) messages")
    }

    await client.leave()
    await reading.value
}

// MARK: - Connections

func connectionPolicySnippet(server: URL, token: String) throws -> MeetingClient {
    let policy = ConnectionPolicy(
        transport: .automatic,
        attemptsBeforeFallback: 3,
        heartbeatInterval: .milliseconds(500),
        heartbeatTimeout: .milliseconds(1_500),
        opAnswerTimeout: .seconds(10),
        webSocketProbeInterval: .seconds(15))
    let client = try MeetingClient(server: server, token: token, options: .init(policy: policy))
    return client
}

func connectionBannerSnippet(client: MeetingClient) async {
    for await state in await client.connectionStates() {
        switch state {
        case .connecting: showStatus("Connecting…")
        case .reconnecting: showStatus("Reconnecting…")
        case .connected, .resumed: showStatus(nil)
        case .closed(let reason): showStatus("Disconnected: \(reason)")
        }
    }
}

func connectWithDeadlineSnippet(client: MeetingClient) async throws {
    let connecting = Task { try await client.connect() }
    let deadline = Task {
        try await Task.sleep(for: .seconds(10))
        connecting.cancel()   // connect() throws .cancelled, and the client is closed
    }
    defer { deadline.cancel() }
    try await connecting.value
}

func voteSnippet(client: MeetingClient) async throws {
    do {
        try await client.send(.vote(poll: "lunch", option: 0), timeout: .seconds(5))
    } catch .withdrawn(let withdrawal) where withdrawal.mayHaveCommitted {
        print("no answer in time; the vote may still count (\(withdrawal.opID))")
    } catch .withdrawn {
        print("no answer in time; the vote was never sent")
    } catch {
        throw error
    }
}

func auditLogSnippet(client: MeetingClient) {
    let audit = client.subscribe(bufferLimit: 1_000)
    Task {
        for await event in audit {
            if case .dropped(let count) = event {
                print("the audit log missed \(count) events; client.meeting is still complete")
            } else {
                print(event)
            }
        }
    }
}

/// Stands in for an app's own status banner.
private func showStatus(_ text: String?) {
    if let text { print(text) }
}

// MARK: - Errors

func chatStatusSnippet(_ text: String, client: MeetingClient) async -> String {
    do {
        let ack = try await client.send(.chat(text: text))
        return "Sent (seq \(ack.seq))."
    } catch {
        switch error {
        case .rejected(let rejection) where rejection.code == .featureDisabled:
            return "Chat is turned off in this meeting."
        case .rejected(let rejection):
            return "Not sent: \(rejection.message)"
        case .invalidOp(let problem):
            return "This message cannot be sent: \(problem.message)"
        case .withdrawn(let withdrawal):
            return withdrawal.mayHaveCommitted ? "Maybe sent." : "Not sent."
        case .closed(let reason):
            return "Not in the meeting any more: \(reason)"
        case .tooManyPendingOps:
            return "Too much at once; try again in a moment."
        case .cancelled, .http, .network, .invalidServerURL, .invalidOptions:
            return "Not sent: \(error)"
        }
    }
}

func endMeetingSnippet(client: MeetingClient) async throws {
    do {
        try await client.send(.end)
    } catch .rejected(let rejection) {
        print("the meeting goes on: \(rejection.code.rawValue)")
    } catch {
        // Needed with Swift 6.3.1, which crashes without it (see above); rethrows the rest.
        throw error
    }
    await client.leave()
}

func createMeetingSnippet(server: URL, apiKey: String) async throws -> CreatedMeeting? {
    do {
        return try await ParleyHTTP.createMeeting(server: server, title: "Retro", apiKey: apiKey)
    } catch .http(let failure) where failure.code == .unauthorized {
        print("the server wants its API key: \(failure.message)")
        return nil
    } catch .http(let failure) {
        switch failure.code {
        case .serverBusy, .unavailable: print("busy; try again in a moment")
        case .other(let code): print("the server said \(code) (HTTP \(failure.status))")
        default: print(failure)
        }
        return nil
    } catch {
        throw error
    }
}

// MARK: - Tokens

func tokenProviderSnippet(server: URL, token: String) throws -> MeetingClient {
    let options = MeetingClient.Options(tokenProvider: { refused in
        try await ParleyHTTP.renewToken(server: server, token: refused).token
    })
    let client = try MeetingClient(server: server, token: token, options: options)
    return client
}

func renewSavedTokenSnippet(server: URL, saved: String) async throws -> String? {
    do {
        return try await ParleyHTTP.renewToken(server: server, token: saved).token
    } catch .http(let failure) where failure.code == .tokenExpired {
        return nil   // expired too long ago: the user needs a new invitation
    } catch {
        throw error
    }
}
