import FoundationEssentials
import ParleyCore

// Wire shapes. Every frame is a flat JSON object with a `type`; field names are listed
// in docs/protocol.md, which is the contract. Changing a key here changes the protocol.

private struct DynamicKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// Thrown from inside `init(from:)`; JSONDecoder passes it through unchanged.
struct WireError: Error { var error: ProtocolError }

private enum FrameKey: String, CodingKey {
    case type, token, resume, id, op, signal, nonce, from, code, message, fatal
    case seq, epoch, at, issuer, opId, redacted
    case meeting, participant, mode, state, limits, reason
}

extension ClientFrame: Codable {
    /// Reads one frame. A frame that breaks the protocol throws an error wrapping its
    /// ``ProtocolError``; decode through ``ClientFrameDecoder``, which unwraps it.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: FrameKey.self)
        let type = try container.decode(String.self, forKey: .type)
        switch type {
        case "hello":
            self = .hello(token: try container.decode(String.self, forKey: .token),
                          resume: try container.decodeIfPresent(ResumePoint.self, forKey: .resume))
        case "op":
            let id = try container.decode(OpID.self, forKey: .id)
            // Past this point the id is known: a bad op is answered with an error naming it,
            // so the client can drop that op instead of resending it forever.
            do {
                try Self.checkKind(container, key: .op, known: MeetingOp.allKinds, code: .unknownOp, what: "op")
                self = .op(id: id, operation: try container.decode(MeetingOp.self, forKey: .op))
            } catch let error as WireError {
                var named = error.error
                named.opID = id
                throw WireError(error: named)
            } catch let error as DecodingError {
                throw WireError(error: ProtocolError(.malformedFrame, ClientFrameDecoder.describe(error), opID: id))
            }
        case "signal":
            try Self.checkKind(container, key: .signal, known: Signal.allKinds, code: .unknownSignal, what: "signal")
            self = .signal(try container.decode(Signal.self, forKey: .signal))
        case "ping":
            self = .ping(nonce: try container.decodeIfPresent(String.self, forKey: .nonce))
        case "leave":
            self = .leave
        default:
            throw WireError(error: ProtocolError(.unknownFrameType, "unknown frame type '\(type.prefix(64))'"))
        }
    }

    /// An op or signal object must have exactly one key, naming a known kind; telling
    /// "unknown kind" apart from "bad arguments" gives clients a precise error.
    private static func checkKind(_ container: KeyedDecodingContainer<FrameKey>, key: FrameKey, known: Set<String>,
                                  code: ProtocolErrorCode, what: String) throws {
        let nested = try container.nestedContainer(keyedBy: DynamicKey.self, forKey: key)
        guard nested.allKeys.count == 1, let kind = nested.allKeys.first?.stringValue else {
            throw WireError(error: ProtocolError(.malformedFrame, "'\(what)' must be an object with exactly one key, the \(what) kind"))
        }
        guard known.contains(kind) else {
            throw WireError(error: ProtocolError(code, "unknown \(what) kind '\(kind.prefix(64))'"))
        }
    }

    /// Writes the flat `{"type": …}` object of docs/protocol.md §4.1.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: FrameKey.self)
        switch self {
        case .hello(let token, let resume):
            try container.encode("hello", forKey: .type)
            try container.encode(token, forKey: .token)
            try container.encodeIfPresent(resume, forKey: .resume)
        case .op(let id, let operation):
            try container.encode("op", forKey: .type)
            try container.encode(id, forKey: .id)
            try container.encode(operation, forKey: .op)
        case .signal(let signal):
            try container.encode("signal", forKey: .type)
            try container.encode(signal, forKey: .signal)
        case .ping(let nonce):
            try container.encode("ping", forKey: .type)
            try container.encodeIfPresent(nonce, forKey: .nonce)
        case .leave:
            try container.encode("leave", forKey: .type)
        }
    }
}

extension ServerFrame: Codable {
    /// Reads one frame; decode through ``FrameEncoder/decodeServerFrame(_:)``, which turns an
    /// unknown frame type into a ``ProtocolError``.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: FrameKey.self)
        let type = try container.decode(String.self, forKey: .type)
        switch type {
        case "welcome":
            self = .welcome(try Welcome(from: decoder))
        case "event":
            let seq = try container.decode(Seq.self, forKey: .seq)
            let epoch = try container.decode(Epoch.self, forKey: .epoch)
            let at = try container.decode(Millis.self, forKey: .at)
            if try container.decodeIfPresent(Bool.self, forKey: .redacted) == true {
                self = .event(.redacted(seq: seq, epoch: epoch, at: at))
            } else {
                self = .event(.visible(LogEntry(
                    seq: seq, epoch: epoch, at: at,
                    issuer: try container.decode(Issuer.self, forKey: .issuer),
                    opID: try container.decodeIfPresent(OpID.self, forKey: .opId),
                    operation: try container.decode(MeetingOp.self, forKey: .op))))
            }
        case "ack":
            self = .ack(id: try container.decode(OpID.self, forKey: .id),
                        epoch: try container.decode(Epoch.self, forKey: .epoch),
                        seq: try container.decode(Seq.self, forKey: .seq))
        case "reject":
            self = .reject(id: try container.decode(OpID.self, forKey: .id),
                           Rejection(try container.decode(RejectionCode.self, forKey: .code),
                                     try container.decode(String.self, forKey: .message)))
        case "signal":
            self = .signal(from: try container.decode(ParticipantID.self, forKey: .from),
                           try container.decode(Signal.self, forKey: .signal))
        case "error":
            self = .error(ProtocolError(try container.decode(ProtocolErrorCode.self, forKey: .code),
                                        try container.decode(String.self, forKey: .message),
                                        fatal: try container.decode(Bool.self, forKey: .fatal),
                                        opID: try container.decodeIfPresent(OpID.self, forKey: .id),
                                        reason: try container.decodeIfPresent(String.self, forKey: .reason)))
        case "pong":
            self = .pong(nonce: try container.decodeIfPresent(String.self, forKey: .nonce))
        default:
            throw WireError(error: ProtocolError(.unknownFrameType, "unknown frame type '\(type.prefix(64))'"))
        }
    }

    /// Writes the flat `{"type": …}` object of docs/protocol.md §4.2. A redacted event carries
    /// only `seq`, `epoch`, `at` and `redacted: true`.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: FrameKey.self)
        switch self {
        case .welcome(let welcome):
            try container.encode("welcome", forKey: .type)
            try welcome.encode(to: encoder)
        case .event(.visible(let entry)):
            try container.encode("event", forKey: .type)
            try container.encode(entry.seq, forKey: .seq)
            try container.encode(entry.epoch, forKey: .epoch)
            try container.encode(entry.at, forKey: .at)
            try container.encode(entry.issuer, forKey: .issuer)
            try container.encodeIfPresent(entry.opID, forKey: .opId)
            try container.encode(entry.operation, forKey: .op)
        case .event(.redacted(let seq, let epoch, let at)):
            try container.encode("event", forKey: .type)
            try container.encode(seq, forKey: .seq)
            try container.encode(epoch, forKey: .epoch)
            try container.encode(at, forKey: .at)
            try container.encode(true, forKey: .redacted)
        case .ack(let id, let epoch, let seq):
            try container.encode("ack", forKey: .type)
            try container.encode(id, forKey: .id)
            try container.encode(epoch, forKey: .epoch)
            try container.encode(seq, forKey: .seq)
        case .reject(let id, let rejection):
            try container.encode("reject", forKey: .type)
            try container.encode(id, forKey: .id)
            try container.encode(rejection.code, forKey: .code)
            try container.encode(rejection.message, forKey: .message)
        case .signal(let from, let signal):
            try container.encode("signal", forKey: .type)
            try container.encode(from, forKey: .from)
            try container.encode(signal, forKey: .signal)
        case .error(let error):
            try container.encode("error", forKey: .type)
            try container.encode(error.code, forKey: .code)
            try container.encode(error.message, forKey: .message)
            try container.encode(error.fatal, forKey: .fatal)
            try container.encodeIfPresent(error.opID, forKey: .id)
            try container.encodeIfPresent(error.reason, forKey: .reason)
        case .pong(let nonce):
            try container.encode("pong", forKey: .type)
            try container.encodeIfPresent(nonce, forKey: .nonce)
        }
    }
}

/// Turns client bytes into frames, enforcing the frame-size limit first. Every failure is a
/// ``ProtocolError`` with a code; nothing in here traps on untrusted input.
public struct ClientFrameDecoder: Sendable {
    /// Frames longer than this many bytes are refused with `frame_too_large`, before parsing.
    public var maxFrameBytes: Int

    /// A decoder that refuses frames longer than `maxFrameBytes` bytes.
    public init(maxFrameBytes: Int) {
        self.maxFrameBytes = maxFrameBytes
    }

    /// One client frame from its bytes, or the ``ProtocolError`` to answer with
    /// (`frame_too_large`, `malformed_frame`, `unknown_op`…). An error about an op carries the
    /// op's id when the id could be read.
    public func decode(_ bytes: some Collection<UInt8>) throws(ProtocolError) -> ClientFrame {
        guard bytes.count <= maxFrameBytes else {
            throw ProtocolError(.frameTooLarge, "frame of \(bytes.count) bytes exceeds the limit of \(maxFrameBytes)")
        }
        do {
            return try JSONDecoder().decode(ClientFrame.self, from: Data(bytes))
        } catch let error as WireError {
            throw error.error
        } catch let error as DecodingError {
            throw ProtocolError(.malformedFrame, Self.describe(error))
        } catch {
            throw ProtocolError(.malformedFrame, "not a JSON frame")
        }
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }
            return keys.isEmpty ? "the frame" : "'" + keys.joined(separator: ".") + "'"
        }
        switch error {
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            return "not valid JSON"
        case .dataCorrupted(let context):
            return "invalid value at \(path(context))"
        case .keyNotFound(let key, let context):
            return "missing field '\(key.stringValue)' in \(path(context))"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return "wrong type at \(path(context))"
        @unknown default:
            return "malformed frame"
        }
    }
}

/// Encodes frames once; the same bytes go to every recipient.
public struct FrameEncoder: Sendable {
    /// It holds no state: one can be shared.
    public init() {}

    /// The JSON bytes of a server frame. Traps only on a programming error: Parley's own types
    /// always encode.
    public func encode(_ frame: ServerFrame) -> [UInt8] {
        // Our own types always encode; a failure here is a programming error.
        do { return Array(try JSONEncoder().encode(frame)) } catch {
            preconditionFailure("server frame failed to encode: \(error)")
        }
    }

    /// The JSON bytes of a client frame. Traps only on a programming error, like the server's.
    public func encode(_ frame: ClientFrame) -> [UInt8] {
        do { return Array(try JSONEncoder().encode(frame)) } catch {
            preconditionFailure("client frame failed to encode: \(error)")
        }
    }

    /// One server frame from its bytes, on a client. Throws a ``ProtocolError`` for an unknown
    /// frame type, and the decoder's own error for anything else it cannot read.
    public func decodeServerFrame(_ bytes: some Collection<UInt8>) throws -> ServerFrame {
        do {
            return try JSONDecoder().decode(ServerFrame.self, from: Data(bytes))
        } catch let error as WireError {
            throw error.error
        }
    }
}

/// WebSocket messages that carry several frames, one per line: what a server sends to a
/// client that connected to `/v1/ws?frames=lines`. JSON text never holds a raw newline, so
/// a newline always separates frames.
public enum FrameLines {
    /// The query that asks for it.
    public static let query = "frames=lines"

    /// The frames of one message, in order; empty lines are skipped.
    public static func split<Bytes: Collection<UInt8>>(_ message: Bytes) -> [Bytes.SubSequence] {
        message.split(separator: UInt8(ascii: "\n"))
    }
}

extension FrameEncoder {
    /// Every frame of a message of one frame per line (or of a single frame).
    public func decodeServerFrames(_ message: some Collection<UInt8>) throws -> [ServerFrame] {
        try FrameLines.split(message).map { try decodeServerFrame($0) }
    }
}
