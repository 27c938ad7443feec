import FoundationEssentials
import ParleyZone
import Testing

/// The control socket's wire form is a contract between builds (an old supervisor, a new
/// `parley ctl`), so the exact lines are pinned here.
@Suite("Supervision control protocol: one JSON object per line")
struct SupervisionControlProtocolTests {
    static let lines: [(ControlMessage, String)] = [
        (.register(name: "collab-1", pid: 4242), #"{"name":"collab-1","pid":4242,"type":"register"}"#),
        (.heartbeat(load: nil), #"{"type":"heartbeat"}"#),
        (.heartbeat(load: .object(["meetings": .number(3), "queues": .array([.number(0), .null])])),
         #"{"load":{"meetings":3,"queues":[0,null]},"type":"heartbeat"}"#),
        (.request(id: 7, .spawn(role: .collab)), #"{"id":7,"spawn":{"role":"collab"},"type":"request"}"#),
        (.reply(ControlReply(id: 7, name: "collab-3")), #"{"id":7,"name":"collab-3","ok":true,"type":"reply"}"#),
        (.reply(.failure(id: 8, ControlError(code: "at_capacity", message: "full"))),
         #"{"error":{"code":"at_capacity","message":"full"},"id":8,"ok":false,"type":"reply"}"#),
        (.stop, #"{"type":"stop"}"#),
        (.refused(ControlError(code: "unknown_process", message: "no")),
         #"{"error":{"code":"unknown_process","message":"no"},"type":"refused"}"#),
        (.ctl(id: 1, .status), #"{"command":"status","id":1,"type":"ctl"}"#),
        (.ctl(id: 2, .restart("collab-1")), #"{"command":"restart","id":2,"name":"collab-1","type":"ctl"}"#),
        (.ctl(id: 3, .stop("web")), #"{"command":"stop","id":3,"name":"web","type":"ctl"}"#),
    ]

    @Test("every message has one exact line, and reads back as itself")
    func exactLines() throws {
        for (message, line) in Self.lines {
            #expect(try message.line() == Array((line + "\n").utf8))
            #expect(try ControlMessage(line: Array(line.utf8)) == message)
        }
    }

    @Test("a status reply carries every field ctl shows, and reads back as itself")
    func statusReply() throws {
        let status = [
            ProcessStatus(name: "collab-1", role: .collab, pid: 31, state: .running, uptimeMs: 1_500, restarts: 2,
                          lastExit: .signaled(9), load: .object(["connections": .number(12)])),
            ProcessStatus(name: "web", role: .web, state: .failed, restarts: 5, lastExit: .exited(code: 1),
                          detail: "web restarted 5 times in 60 s; giving up"),
            ProcessStatus(name: "services", role: .services, state: .waiting, lastExit: .spawnError("no such file")),
        ]
        let message = ControlMessage.reply(ControlReply(id: 1, status: status))
        #expect(try ControlMessage(line: try message.line().dropLast()) == message)
        let text = String(decoding: try message.line(), as: UTF8.self)
        #expect(text.contains(#""lastExit":{"signal":9}"#))
        #expect(text.contains(#""lastExit":{"code":1}"#))
        #expect(text.contains(#""state":"failed""#))
    }

    @Test("an unknown ctl command reads as unsupported, so the supervisor can say so; a missing name is refused")
    func unknownCommand() throws {
        #expect(try ControlMessage(line: Array(#"{"type":"ctl","id":4,"command":"drain","name":"collab-2"}"#.utf8))
            == .ctl(id: 4, .unsupported("drain")))
        #expect(throws: (any Error).self) { try ControlMessage(line: Array(#"{"type":"ctl","id":5,"command":"restart"}"#.utf8)) }
        #expect(throws: (any Error).self) { try ControlMessage(line: Array(#"{"type":"launch"}"#.utf8)) }
    }

    @Test("lines are reassembled across reads, and an endless line is cut off at the bound")
    func framing() throws {
        var framer = ControlLineFramer(maxLineBytes: 16)
        #expect(try framer.append(Array(#"{"type":"#.utf8)) == [])
        #expect(try framer.append(Array("\"stop\"}\n\n{\"ty".utf8)) == [Array(#"{"type":"stop"}"#.utf8)])
        #expect(try framer.append(Array("pe\":1}\n".utf8)) == [Array(#"{"type":1}"#.utf8)])
        #expect(throws: ControlLineFramer.LineTooLong.self) { try framer.append(Array(repeating: UInt8(ascii: "x"), count: 17)) }
    }
}
