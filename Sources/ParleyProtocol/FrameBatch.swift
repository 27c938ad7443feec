import FoundationEssentials

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
        do {
            return try JSONDecoder().decode([BatchElement].self, from: Data(bytes)).map(\.result)
        } catch {
            throw ProtocolError(.malformedFrame, "the body must be a JSON array of frames")
        }
    }
}
