import FoundationEssentials
import ParleyCore
import ParleyProtocol
import Testing

@Suite("Protocol: bad client input gets an exact error code, never a crash")
struct DecoderErrorTests {
    @Test("input that is not a JSON object is malformed_frame")
    func notJSON() {
        expectDecodeError("", .malformedFrame, "empty input")
        expectDecodeError("{", .malformedFrame, "truncated object")
        expectDecodeError("hello", .malformedFrame, "bare word")
        expectDecodeError("{\"type\":\"ping\"} trailing", .malformedFrame, "trailing garbage")
        expectDecodeError("[]", .malformedFrame, "an array")
        expectDecodeError("\"hello\"", .malformedFrame, "a string")
        expectDecodeError("null", .malformedFrame, "null")
        expectDecodeError("{'type':'ping'}", .malformedFrame, "single quotes")
    }

    @Test("a missing or non-string type is malformed_frame; an unknown one is unknown_frame_type")
    func frameType() {
        expectDecodeError("{}", .malformedFrame, "no type")
        expectDecodeError(#"{"type":5}"#, .malformedFrame, "numeric type")
        expectDecodeError(#"{"type":null}"#, .malformedFrame, "null type")
        expectDecodeError(#"{"type":"teleport"}"#, .unknownFrameType, "unknown type")
        expectDecodeError(#"{"type":"Ping"}"#, .unknownFrameType, "types are case-sensitive")
        expectDecodeError(#"{"type":"welcome","meeting":"m"}"#, .unknownFrameType, "a server frame sent by a client")
        expectDecodeError(#"{"type":"ack","id":"o","epoch":1,"seq":1}"#, .unknownFrameType, "a server frame sent by a client")
    }

    @Test("an unknown frame type is quoted in the message, cut to 64 characters")
    func unknownTypeMessage() {
        let long = String(repeating: "x", count: 500)
        do {
            _ = try decoder.decode(Array("{\"type\":\"\(long)\"}".utf8))
            Issue.record("decoded a frame with an unknown type")
        } catch {
            #expect(error.code == .unknownFrameType)
            #expect(error.message == "unknown frame type '\(String(repeating: "x", count: 64))'")
        }
    }

    @Test("an op of unknown kind is unknown_op; an op with bad arguments is malformed_frame")
    func ops() {
        expectDecodeError(#"{"type":"op","id":"o-1","op":{"teleport":{}}}"#, .unknownOp, "unknown kind")
        expectDecodeError(#"{"type":"op","id":"o-1","op":{"Chat":{"text":"hi"}}}"#, .unknownOp, "kinds are case-sensitive")
        expectDecodeError(#"{"type":"op","id":"o-1","op":{"chat":{"text":5}}}"#, .malformedFrame, "number for a string")
        expectDecodeError(#"{"type":"op","id":"o-1","op":{"chat":{}}}"#, .malformedFrame, "missing argument")
        expectDecodeError(#"{"type":"op","id":"o-1","op":{"chat":"hi"}}"#, .malformedFrame, "arguments not an object")
        expectDecodeError(#"{"type":"op","id":"o-1","op":{"vote":{"poll":"q","option":1.5}}}"#, .malformedFrame, "fraction for an integer")
        expectDecodeError(#"{"type":"op","id":"o-1","op":{"vote":{"poll":"q","option":1e30}}}"#, .malformedFrame, "integer overflow")
        expectDecodeError(#"{"type":"op","id":"o-1","op":{"vote":{"poll":"q","option":"1"}}}"#, .malformedFrame, "string for an integer")
        expectDecodeError(#"{"type":"op","id":"o-1","op":{"startShare":{"kind":"hologram","title":"t"}}}"#, .malformedFrame, "unknown enum value")
        expectDecodeError(##"{"type":"op","id":"o-1","op":{"draw":{"page":"p","stroke":"s","tool":"pen","color":"#000000","width":1,"points":[{"x":1}]}}}"##,
                          .malformedFrame, "point without y")
        expectDecodeError(#"{"type":"op","id":"o-1","op":{"chat":{"text":"a"},"lock":{}}}"#, .malformedFrame, "two kinds in one op")
        expectDecodeError(#"{"type":"op","id":"o-1","op":{}}"#, .malformedFrame, "no kind")
        expectDecodeError(#"{"type":"op","id":"o-1","op":"lock"}"#, .malformedFrame, "op not an object")
        expectDecodeError(#"{"type":"op","id":"o-1"}"#, .malformedFrame, "no op")
        expectDecodeError(#"{"type":"op","op":{"lock":{}}}"#, .malformedFrame, "no id")
        expectDecodeError(#"{"type":"op","id":7,"op":{"lock":{}}}"#, .malformedFrame, "numeric id")
        expectDecodeError(#"{"type":"op","id":"o-1","op":{"lock":null}}"#, .malformedFrame, "null arguments")
    }

    @Test("once an op's id is readable, its error names that id so the client drops the op instead of resending it")
    func opErrorsCarryTheID() {
        let named = [
            #"{"type":"op","id":"o-7","op":{"teleport":{}}}"#,
            #"{"type":"op","id":"o-7","op":{"chat":{}}}"#,
            #"{"type":"op","id":"o-7","op":{"chat":{"text":"a"},"lock":{}}}"#,
            #"{"type":"op","id":"o-7"}"#,
        ]
        for text in named {
            do {
                _ = try decoder.decode(Array(text.utf8))
                Issue.record("decoded \(text)")
            } catch {
                #expect(error.opID == OpID("o-7"), "\(text)")
            }
        }
        for text in [#"{"type":"op","op":{"lock":{}}}"#, #"{"type":"op","id":7,"op":{"lock":{}}}"#, #"{"type":"ping","nonce":5}"#] {
            do {
                _ = try decoder.decode(Array(text.utf8))
                Issue.record("decoded \(text)")
            } catch {
                #expect(error.opID == nil, "no readable id in \(text)")
            }
        }
    }

    @Test("a well-formed op names the kind that failed and where")
    func opErrorMessages() {
        do {
            _ = try decoder.decode(Array(#"{"type":"op","id":"o-1","op":{"chat":{"text":5}}}"#.utf8))
            Issue.record("decoded a chat with a numeric text")
        } catch {
            #expect(error.message == "wrong type at 'op.chat.text'")
        }
        do {
            _ = try decoder.decode(Array(#"{"type":"op","id":"o-1","op":{"teleport":{}}}"#.utf8))
            Issue.record("decoded an unknown op")
        } catch {
            #expect(error.message == "unknown op kind 'teleport'")
        }
    }

    @Test("system kinds decode, so the meeting can refuse them with 'forbidden'")
    func systemKindsDecode() throws {
        let frame = try decoder.decode(Array(#"{"type":"op","id":"o-1","op":{"leave":{"participant":"hana"}}}"#.utf8))
        #expect(frame == .op(id: "o-1", operation: .leave(participant: "hana")))
    }

    @Test("unknown extra fields are ignored, at the frame and in arguments")
    func extraFields() throws {
        let frame = try decoder.decode(Array(#"{"type":"op","id":"o-1","v":2,"op":{"chat":{"text":"hi","font":"serif"}}}"#.utf8))
        #expect(frame == .op(id: "o-1", operation: .chat(text: "hi")))
        #expect(try decoder.decode(Array(#"{"type":"leave","reason":"bye"}"#.utf8)) == .leave)
    }

    @Test("a signal of unknown kind is unknown_signal; bad arguments are malformed_frame")
    func signals() {
        expectDecodeError(#"{"type":"signal","signal":{"wave":{}}}"#, .unknownSignal, "unknown kind")
        expectDecodeError(#"{"type":"signal","signal":{"cursor":{"x":"1","y":2}}}"#, .malformedFrame, "string for a number")
        expectDecodeError(#"{"type":"signal","signal":{"typing":{}}}"#, .malformedFrame, "missing argument")
        expectDecodeError(#"{"type":"signal","signal":{"typing":{"active":true},"wave":{}}}"#, .malformedFrame, "two kinds")
        expectDecodeError(#"{"type":"signal"}"#, .malformedFrame, "no signal")
        expectDecodeError(#"{"type":"signal","signal":[]}"#, .malformedFrame, "signal not an object")
    }

    @Test("a hello needs a string token; its resume point needs a meeting and a seq")
    func hello() {
        expectDecodeError(#"{"type":"hello"}"#, .malformedFrame, "no token")
        expectDecodeError(#"{"type":"hello","token":42}"#, .malformedFrame, "numeric token")
        expectDecodeError(#"{"type":"hello","token":"t","resume":{"meeting":"m"}}"#, .malformedFrame, "resume without seq")
        expectDecodeError(#"{"type":"hello","token":"t","resume":{"meeting":"m","seq":-1}}"#, .malformedFrame, "negative seq")
        expectDecodeError(#"{"type":"hello","token":"t","resume":{"meeting":"m","seq":18446744073709551616}}"#, .malformedFrame, "seq past UInt64")
    }

    @Test("numbers outside Double's range are refused rather than turned into infinities")
    func numbers() {
        expectDecodeError(#"{"type":"signal","signal":{"cursor":{"x":1e400,"y":0}}}"#, .malformedFrame, "overflow to infinity")
        expectDecodeError(#"{"type":"signal","signal":{"cursor":{"x":NaN,"y":0}}}"#, .malformedFrame, "NaN literal")
        expectDecodeError(#"{"type":"signal","signal":{"cursor":{"x":Infinity,"y":0}}}"#, .malformedFrame, "Infinity literal")
    }

    @Test("a frame over the limit is frame_too_large without being parsed; one at the limit is parsed")
    func frameTooLarge() throws {
        let small = ClientFrameDecoder(maxFrameBytes: 16)
        let atLimit = Array(#"{"type":"leave"}"#.utf8)
        #expect(atLimit.count == 16)
        #expect(try small.decode(atLimit) == .leave)
        // 17 bytes that are not JSON: the size check comes first, so the code is about size.
        expectDecodeError(Array(repeating: UInt8(ascii: "{"), count: 17), .frameTooLarge, "garbage over the limit", using: small)
        expectDecodeError(Array(#"{"type":"leave"} "#.utf8), .frameTooLarge, "valid JSON over the limit", using: small)
        let huge = Array(repeating: UInt8(ascii: " "), count: 65_537)
        expectDecodeError(huge, .frameTooLarge, "one byte past 64 KiB")
        do {
            _ = try decoder.decode(huge)
        } catch {
            #expect(error.message == "frame of 65537 bytes exceeds the limit of 65536")
        }
    }

    @Test("deeply nested JSON is malformed_frame, not a stack overflow")
    func deepNesting() {
        for depth in [600, 10_000, 32_000] {
            let nested = "{\"type\":\"ping\",\"nonce\":" + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + "}"
            expectDecodeError(nested, .malformedFrame, "arrays nested \(depth) deep")
            let objects = String(repeating: "{\"a\":", count: depth / 5) + "1" + String(repeating: "}", count: depth / 5)
            expectDecodeError(objects, .malformedFrame, "objects nested \(depth / 5) deep")
        }
        // Unclosed nesting up to the frame limit.
        expectDecodeError(String(repeating: "[", count: 65_536), .malformedFrame, "65,536 unclosed brackets")
    }

    @Test("bytes that are not UTF-8 are malformed_frame")
    func notUTF8() {
        let prefix = Array(#"{"type":"ping","nonce":""#.utf8)
        let suffix = Array(#""}"#.utf8)
        for bad: [UInt8] in [[0xFF], [0xFE, 0xFF], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82]] {
            expectDecodeError(prefix + bad + suffix, .malformedFrame, "bytes \(bad)")
        }
        expectDecodeError([0xFF, 0xFE, 0x7B, 0x7D], .malformedFrame, "a UTF-16 byte-order mark")
    }

    @Test("escaped text decodes exactly, including escaped unicode")
    func escapes() throws {
        let frame = try decoder.decode(Array(#"{"type":"ping","nonce":"a\"b\\c\/d\u00e9\ud83d\ude00\n"}"#.utf8))
        #expect(frame == .ping(nonce: "a\"b\\c/dé😀\n"))
    }
}
