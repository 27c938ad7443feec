import FoundationEssentials
import ParleyCore
import ParleyZone
import Testing

@Suite("Zone messages")
struct ZoneMessageTests {
    @Test("every message survives JSON encoding unchanged")
    func roundTrip() throws {
        let address = ServerAddress(client: "http://127.0.0.1:4001", zone: "http://127.0.0.1:4001")
        let entry = LogEntry(seq: 7, epoch: Epoch(2), at: 1_700_000_000_000, issuer: .participant("p-ann"),
                             opID: "a-1", operation: .chat(text: "hi"))
        let messages: [ZoneMessage] = [
            .register(name: "collab-1", role: .collab, address: address,
                      holding: [HeldMeeting(meeting: "m-1", role: .host, epoch: Epoch(3))]),
            .register(name: "web", role: .web, address: nil, holding: []),
            .load(ServerLoad(connections: 3, meetings: 1, queueDepth: 0, cpuPercent: 12.5)),
            .hosting(meeting: "m-1", epoch: Epoch(4)),
            .failedToHost(meeting: "m-1", reason: "store unavailable"),
            .locate(request: 9, meeting: "m-1"),
            .open(meeting: "m-1", standby: "collab-2", term: 2),
            .promote(meeting: "m-1", standby: nil, term: 2),
            .follow(meeting: "m-1", host: "collab-1", hostAddress: address, term: 2),
            .release(meeting: "m-1", term: 2),
            .located(request: 9, answer: LocateResult(.at("collab-1", address))),
            .located(request: 10, answer: .unavailable("no host yet")),
            .subscribe(meeting: "m-1", after: 6, subscription: 3),
            .subscribed(meeting: "m-1", subscription: 3),
            .unsubscribe(meeting: "m-1", subscription: 3),
            .credit(meeting: "m-1", 1),
            .findHost(request: 11, meeting: "m-1"),
            .hostOutvoted(meeting: "m-1", seq: 20, hostDigest: "aa", copyDigest: "bb"),
            .digest(meeting: "m-1", seq: 20, digest: "aa"),
            .copyRequest(meeting: "m-1", .op(participant: "p-1", id: "o-1", .chat(text: "hi"))),
            .copyNotice(meeting: "m-1", .acked(participant: "p-1", id: "o-1", epoch: Epoch(2), seq: 7)),
            .entries(meeting: "m-1", [entry]),
            .reload(meeting: "m-1"),
        ]
        for message in messages {
            let data = try JSONEncoder().encode(message)
            #expect(try JSONDecoder().decode(ZoneMessage.self, from: data) == message)
        }
    }
}
