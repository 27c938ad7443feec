import FoundationEssentials
import ParleyCore

/// One element of a long-poll batch, decoded on its own so that one bad frame does not
/// spoil the others.
private struct BatchElement: Decodable {
    var result: Result<ClientFrame, ProtocolError>

    init(from decoder: any Decoder) throws {
        do {
            result = .success(try ClientFrame(from: decoder))
        } catch let error as WireError {
            result = .failure(error.error)
        } catch {
            result = .failure(ProtocolError(.malformedFrame, "malformed frame in batch"))
        }
    }
}

extension ClientFrameDecoder {
    /// Decodes a JSON array of client frames (the long-poll send body). The array as a whole
    /// must parse; each element succeeds or fails on its own, in order.
    public func decodeBatch(_ bytes: some Collection<UInt8>, maxBytes: Int) throws(ProtocolError) -> [Result<ClientFrame, ProtocolError>] {
        guard bytes.count <= maxBytes else {
            throw ProtocolError(.frameTooLarge, "batch of \(bytes.count) bytes exceeds the limit of \(maxBytes)")
        }
        let elements: [BatchElement]
        do {
            elements = try JSONDecoder().decode([BatchElement].self, from: Data(bytes))
        } catch {
            throw ProtocolError(.malformedFrame, "the body must be a JSON array of frames")
        }
        // The per-frame limit holds on this transport too. The element's own bytes are not
        // kept by the decoder, so its canonical encoding is measured, which is never larger.
        let encoder = FrameEncoder()
        return elements.map { element in
            guard case .success(let frame) = element.result else { return element.result }
            let size = encoder.encode(frame).count
            guard size > maxFrameBytes else { return element.result }
            var id: OpID?
            if case .op(let opID, _) = frame { id = opID }
            return .failure(ProtocolError(.frameTooLarge, "frame of at least \(size) bytes exceeds the limit of \(maxFrameBytes)", opID: id))
        }
    }
}
