// libFuzzer harness for the client frame decoder: the only code that reads bytes from the
// network before anything else has checked them.
//
// Built by scripts/fuzz.sh together with the sources of ParleyCore and ParleyProtocol as one
// module, so there is no `import ParleyProtocol` here.
//
// Properties checked on every input:
// 1. `ClientFrameDecoder.decode` returns a frame or throws a `ProtocolError`; it never traps.
// 2. A decoded frame survives a round trip: encoding it and decoding the result gives an equal
//    frame. A frame the server accepted but could not re-encode, or that changes meaning when
//    re-encoded, would be relayed wrongly or crash the encoder on the hot path.
// 3. The same bytes as a long-poll batch (`decodeBatch`, the body of POST /v1/poll/{sid}) give
//    a list of per-frame results or a `ProtocolError`, and every decoded frame round-trips too.

private let decoder = ClientFrameDecoder(maxFrameBytes: 65_536)
// Re-encoding may grow a frame (for example "/" is written as "\/"), so the round trip is
// decoded without a size limit.
private let unlimited = ClientFrameDecoder(maxFrameBytes: Int.max)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzClientFrameDecoder(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: count > 0 ? data : nil, count: count)
    if let frame = try? decoder.decode(bytes) {
        checkRoundTrip(frame)
    }
    if let batch = try? decoder.decodeBatch(bytes, maxBytes: 1 << 20) {
        for case .success(let frame) in batch { checkRoundTrip(frame) }
    }
    return 0
}

private func checkRoundTrip(_ frame: ClientFrame) {
    let encoded = FrameEncoder().encode(frame)
    do {
        let again = try unlimited.decode(encoded)
        precondition(again == frame, "round trip changed the frame: \(frame) became \(again)")
    } catch {
        preconditionFailure("a decoded frame failed to decode after re-encoding: \(error)")
    }
}
