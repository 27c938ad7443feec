import NIOCore
@testable import ParleyBench
import ParleyCore
import ParleyProtocol
import Testing

@Suite("The load generator reads frames without decoding them")
struct FrameScanTests {
    let encoder = FrameEncoder()

    func scan(_ frame: ServerFrame) -> ScannedFrame {
        ScannedFrame.scan(ByteBuffer(bytes: encoder.encode(frame)))
    }

    func entry(_ operation: MeetingOp, seq: Seq = 7) -> LogEntry {
        LogEntry(seq: seq, epoch: Epoch(1), at: 1_000, issuer: .participant(ParticipantID("p-1")), opID: OpID("b0000000042"),
                 operation: operation)
    }

    @Test("the op frame for a message carries its number in the op id and in the text, at the requested size")
    func messageTemplate() throws {
        let message = BenchMessage(textBytes: 128)
        let frame = message.frame(1_234_567)
        let decoded = try ClientFrameDecoder(maxFrameBytes: 1 << 16).decode(frame.readableBytesView)
        guard case .op(let id, .chat(let text)) = decoded else {
            Issue.record("not a chat op: \(decoded)")
            return
        }
        #expect(id == OpID("b0001234567"))
        #expect(text.utf8.count == 128)
        #expect(text.hasPrefix("#pb0001234567"))
        // Each frame is a fresh copy: numbering one does not change another.
        #expect(message.frame(5) != message.frame(6))
    }

    @Test("an event carrying one of our chat messages gives its number; other events do not")
    func events() {
        let text = "#pb0000000042" + String(repeating: ".", count: 100)
        #expect(scan(.event(.visible(entry(.chat(text: text))))) == .benchEvent(message: 42))
        #expect(scan(.event(.visible(entry(.chat(text: "hello"))))) == .otherEvent)
        #expect(scan(.event(.visible(entry(.join(participant: ParticipantID("p-2"), name: "Ann", role: .attendee))))) == .otherEvent)
        // A marker with too few digits is not ours.
        #expect(scan(.event(.visible(entry(.chat(text: "#pb12"))))) == .otherEvent)
    }

    @Test("acks name our message, rejects and errors give their codes, welcomes are recognised")
    func answers() {
        #expect(scan(.ack(id: OpID("b0000000042"), epoch: Epoch(2), seq: 9)) == .ack(message: 42))
        #expect(scan(.ack(id: OpID("a-1"), epoch: Epoch(2), seq: 9)) == .ack(message: nil))
        #expect(scan(.reject(id: OpID("b0000000001"), Rejection(.rateLimited, "slow down"))) == .reject(code: "rate_limited"))
        #expect(scan(.error(ProtocolError(.slowConsumer, "you fell behind", fatal: true))) == .error(code: "slow_consumer"))
        let welcome = Welcome(meeting: MeetingID("m-1"), participant: ParticipantID("p-1"), epoch: Epoch(1), mode: .replay,
                              seq: 0, state: nil, limits: ConnectionLimits())
        #expect(scan(.welcome(welcome)) == .welcome)
        #expect(scan(.pong(nonce: "n")) == .other)
    }

    @Test("/proc readings: CPU ticks from a stat line whose command has spaces and parentheses, RSS in bytes")
    func procParsing() {
        let stat = "4242 (parley (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 100 1000000 500"
        #expect(ProcessMeter.cpuTicks(statLine: stat) == 325)
        #expect(ProcessMeter.cpuTicks(statLine: "garbage") == nil)
        let status = "Name:\tparley\nVmPeak:\t  900 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n"
        #expect(ProcessMeter.residentBytes(status: status) == 20_480 * 1024)
        #expect(ProcessMeter.residentBytes(status: "Name:\tparley\n") == nil)
    }

    @Test("the ledger times a message to its last recipient and counts deliveries per step")
    func ledger() {
        let ledger = DeliveryLedger()
        let step = ledger.beginStep()
        let first = ledger.publish(step: step, recipients: 3, at: 1_000_000)
        let second = ledger.publish(step: step, recipients: 3, at: 2_000_000)
        ledger.delivered(first, at: 1_500_000)
        ledger.delivered(first, at: 3_000_000)
        ledger.delivered(second, at: 2_100_000)
        #expect(ledger.tally(step).completed == 0)
        ledger.delivered(first, at: 9_000_000)  // the last recipient: 8 ms after publication
        ledger.delivered(first, at: 9_500_000)  // a fourth delivery of a 3-recipient message is ignored
        ledger.closeWindow()
        ledger.delivered(second, at: 4_000_000)
        ledger.acked(second)
        ledger.problem(code: "rate_limited")
        let tally = ledger.tally(step)
        #expect(tally.published == 2)
        #expect(tally.completed == 1)
        #expect(tally.deliveries == 5)
        #expect(tally.deliveriesInWindow == 4)
        #expect(tally.acked == 1)
        #expect(tally.problems == ["rate_limited": 1])
        #expect(tally.latency.totalCount == 1)
        #expect(tally.latency.valuesAreEquivalent(tally.latency.max, 8_000))
    }
}
