import Foundation
import ParleyClient

// The README's "Using the SDK" code, compiled here; a test checks that every Swift block
// of the README and of the SDK's guide appears in this app's sources.

func readmeQuickStart() async throws {
    let server = URL(string: "http://127.0.0.1:8080")!
    let created = try await ParleyHTTP.createMeeting(server: server, title: "Review")
    let client = try MeetingClient(server: server, token: created.hostToken)
    let listening = Task {
        for await event in client.events { print(event) }
    }
    try await client.connect()
    let ack = try await client.send(.chat(text: "hello"))   // returns once committed
    print("committed at seq \(ack.seq)")
    await client.leave()
    await listening.value   // the stream ends with the session: every event was seen
}
