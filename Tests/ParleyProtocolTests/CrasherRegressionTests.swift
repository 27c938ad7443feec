import Foundation
import ParleyCore
import ParleyProtocol
import Testing

/// Every input in `Crashers/` once crashed the decoder or is a seed for scripts/fuzz.sh.
/// scripts/fuzz.sh copies each new crashing input there; this test keeps them fixed.
@Suite("Protocol: past fuzzer crashers stay fixed")
struct CrasherRegressionTests {
    static func inputs() throws -> [URL] {
        let folder = try #require(Bundle.module.url(forResource: "Crashers", withExtension: nil),
                                  "the Crashers resource folder is missing from the test bundle")
        return try FileManager.default.contentsOfDirectory(at: folder, includingPropertiesForKeys: nil)
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    @Test("every file in Crashers decodes to a frame or fails with a decoder error code")
    func crashersStayFixed() throws {
        let inputs = try Self.inputs()
        #expect(inputs.contains { $0.lastPathComponent == ".keep" }, "the folder must never be empty")
        #expect(inputs.count >= 10, "the seeds are bundled")
        let decoderCodes: Set<ProtocolErrorCode> = [.malformedFrame, .unknownFrameType, .unknownOp, .unknownSignal, .frameTooLarge]
        for url in inputs {
            let bytes = try [UInt8](Data(contentsOf: url))
            do {
                let frame = try decoder.decode(bytes)
                // A frame that decodes must survive a round trip, as the fuzzer checks.
                #expect(try ClientFrameDecoder(maxFrameBytes: .max).decode(encoder.encode(frame)) == frame, "\(url.lastPathComponent)")
            } catch {
                #expect(decoderCodes.contains(error.code), "\(url.lastPathComponent): \(error)")
            }
            // The same bytes as a long-poll body: a list of per-frame results, or one error.
            do {
                for case .failure(let error) in try decoder.decodeBatch(bytes, maxBytes: 1 << 20) {
                    #expect(decoderCodes.contains(error.code), "\(url.lastPathComponent) as a batch element: \(error)")
                }
            } catch {
                #expect(decoderCodes.contains(error.code), "\(url.lastPathComponent) as a batch: \(error)")
            }
        }
    }

    @Test("a long-poll batch decodes each frame on its own, in order, and must be a JSON array")
    func batch() throws {
        let body = #"[{"type":"ping","nonce":"1"},{"type":"op","id":"o-1","op":{"teleport":{}}},{"type":"nope"},42,{"type":"leave"}]"#
        let results = try decoder.decodeBatch(Array(body.utf8), maxBytes: 1 << 20)
        #expect(results.count == 5)
        #expect(try results[0].get() == .ping(nonce: "1"))
        #expect(try results[4].get() == .leave)
        let codes = results.map { result -> ProtocolErrorCode? in
            if case .failure(let error) = result { return error.code }
            return nil
        }
        #expect(codes == [nil, .unknownOp, .unknownFrameType, .malformedFrame, nil])
        #expect(throws: ProtocolError.self) { try decoder.decodeBatch(Array(#"{"type":"ping"}"#.utf8), maxBytes: 1 << 20) }
        do {
            _ = try decoder.decodeBatch(Array("[]   ".utf8), maxBytes: 4)
            Issue.record("a batch over its byte limit decoded")
        } catch {
            #expect(error.code == .frameTooLarge)
        }
        #expect(try decoder.decodeBatch(Array("[]".utf8), maxBytes: 4).isEmpty)
    }

    @Test("the per-frame size limit holds inside a long-poll batch, naming the op it refuses")
    func batchFrameLimit() throws {
        let limited = ClientFrameDecoder(maxFrameBytes: 200)
        let big = String(repeating: "x", count: 300)
        let body = #"[{"type":"op","id":"big","op":{"chat":{"text":""# + big + #""}}},{"type":"ping","nonce":""# + big + #""},{"type":"op","id":"ok","op":{"lock":{}}}]"#
        let results = try limited.decodeBatch(Array(body.utf8), maxBytes: 1 << 20)
        #expect(results.count == 3)
        guard case .failure(let first) = results[0], case .failure(let second) = results[1] else {
            Issue.record("oversized frames decoded: \(results)")
            return
        }
        #expect(first.code == .frameTooLarge && first.opID == OpID("big"))
        #expect(second.code == .frameTooLarge && second.opID == nil)
        #expect(try results[2].get() == .op(id: OpID("ok"), operation: .lock))
    }

    @Test("the seeds decode as their names say")
    func seeds() throws {
        let byName = Dictionary(uniqueKeysWithValues: try Self.inputs().map { ($0.lastPathComponent, $0) })
        func decode(_ name: String) throws -> Result<ClientFrame, ProtocolError> {
            let url = try #require(byName[name], "seed \(name) is missing")
            let bytes = try [UInt8](Data(contentsOf: url))
            do { return .success(try decoder.decode(bytes)) } catch { return .failure(error) }
        }
        #expect(try decode("seed-leave.json") == .success(.leave))
        #expect(try decode("seed-op-lock.json") == .success(.op(id: "o-4", operation: .lock)))
        #expect(try decode("seed-hello-resume.json")
                == .success(.hello(token: "eyJhbGciOiJFZERTQSJ9.e30.sig", resume: ResumePoint(meeting: "m-1", seq: 41))))
        for name in ["seed-non-utf8.bin", "seed-deep-nesting.json"] {
            guard case .failure(let error) = try decode(name) else {
                Issue.record("\(name) decoded")
                continue
            }
            #expect(error.code == .malformedFrame, "\(name)")
        }
    }
}
