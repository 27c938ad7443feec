import NIOCore
import ParleyCore
import ParleyProtocol
@testable import ParleyServer
import Testing
import ParleyTestSupport

@Suite("WebSocket framing: several frames per message, one per line, when the client asks", MachineLoad.server, .timeLimit(.minutes(1)))
struct FrameLinesTests {
    @Test("the client WebSocket path picks the framing; other paths are not the client WebSocket")
    func framingFromPath() {
        #expect(WebSocketFraming(path: "/v1/ws") == .single)
        #expect(WebSocketFraming(path: "/v1/ws?frames=lines") == .lines)
        #expect(WebSocketFraming(path: "/v1/ws?x=1&frames=lines") == .lines)
        #expect(WebSocketFraming(path: "/v1/ws?frames=other") == .single)
        #expect(WebSocketFraming(path: "/v1/wss") == nil)
        #expect(WebSocketFraming(path: "/zone/link") == nil)
    }

    @Test("frames are joined in order under the size limit; a larger frame goes alone; split gives them back")
    func joinAndSplit() throws {
        let frames = ["{\"a\":1}", "{\"b\":22}", String(repeating: "x", count: 40), "{\"c\":3}"].map { ByteBuffer(string: $0) }
        let messages = FrameLines.join(frames, maxBytes: 20)
        #expect(messages.map { String(buffer: $0) } == ["{\"a\":1}\n{\"b\":22}", String(repeating: "x", count: 40), "{\"c\":3}"])
        let back = messages.flatMap { FrameLines.split($0.readableBytesView).map { String(decoding: $0, as: UTF8.self) } }
        #expect(back == frames.map { String(buffer: $0) })
        #expect(FrameLines.join([frames[0]], maxBytes: 1) == [frames[0]])
        #expect(FrameLines.split(Array("\n{}\n\n{}\n".utf8)).count == 2)
    }

    @Test("with ?frames=lines, a burst of ops comes back in fewer messages than frames, every frame intact and in order")
    func burstOverLines() async throws {
        try await withServer { endpoint in
            let meeting = try await endpoint.createMeeting()
            let (messages, frames) = try await withRawSocket(endpoint, query: FrameLines.query) { socket in
                _ = try await socket.join(token: meeting.hostToken)
                for index in 1...60 { try await socket.send(.op(id: OpID("l-\(index)"), operation: .chat(text: "line \(index)"))) }
                var messages = 0
                var frames: [ServerFrame] = []
                while frames.filter({ if case .ack = $0 { true } else { false } }).count < 60 {
                    guard let batch = try await socket.receiveMessage() else { throw TestFailure("closed after \(frames)") }
                    messages += 1
                    frames += batch
                }
                return (messages, frames)
            }
            let chats = frames.compactMap(\.entry).filter { if case .chat = $0.operation { true } else { false } }
            #expect(chats.map(\.opID) == (1...60).map { OpID("l-\($0)") })
            #expect(zip(chats, chats.dropFirst()).allSatisfy { $0.seq + 1 == $1.seq })
            // 60 events and 60 acks (plus the join): the server wrote several per message.
            #expect(messages < frames.count)
        }
    }
}
