import NIOCore
import ParleyCore
import ParleyProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What the load generator needs to know about a server frame, found without decoding it.
///
/// Server frames are compact JSON (no spaces), so `"type":"event"` appears verbatim whatever
/// the key order. Chat messages the generator sends carry a marker (``BenchMessage``) that
/// names the message; nothing else the server sends contains it.
enum ScannedFrame: Equatable, Sendable {
    /// An event carrying one of our chat messages, with its number.
    case benchEvent(message: Int)
    /// Any other event (joins, presence).
    case otherEvent
    /// An op acknowledged; the message number if it was one of ours.
    case ack(message: Int?)
    /// An op refused, with its code (`rate_limited`, `server_busy`, …).
    case reject(code: String)
    case welcome
    /// An error frame, with its code (`slow_consumer`, `join_refused`, …).
    case error(code: String)
    case other

    static func scan(_ buffer: ByteBuffer) -> ScannedFrame {
        buffer.withUnsafeReadableBytes { bytes in scan(bytes) }
    }

    static func scan(_ bytes: UnsafeRawBufferPointer) -> ScannedFrame {
        if let message = BenchMessage.number(in: bytes) {
            return contains(bytes, #""type":"event""#) ? .benchEvent(message: message) : .other
        }
        if contains(bytes, #""type":"event""#) { return .otherEvent }
        if contains(bytes, #""type":"ack""#) {
            let id = stringValue(of: "id", in: bytes)
            return .ack(message: id.flatMap { $0.first == "b" ? Int($0.dropFirst()) : nil })
        }
        if contains(bytes, #""type":"welcome""#) { return .welcome }
        if contains(bytes, #""type":"reject""#) { return .reject(code: stringValue(of: "code", in: bytes) ?? "?") }
        if contains(bytes, #""type":"error""#) { return .error(code: stringValue(of: "code", in: bytes) ?? "?") }
        return .other
    }

    static func contains(_ bytes: UnsafeRawBufferPointer, _ needle: StaticString) -> Bool {
        find(needle.utf8Start, needle.utf8CodeUnitCount, in: bytes) != nil
    }

    /// The offset of `needle` in `bytes`, or nil.
    static func find(_ needle: UnsafePointer<UInt8>, _ length: Int, in bytes: UnsafeRawBufferPointer) -> Int? {
        guard let base = bytes.baseAddress, length > 0, bytes.count >= length else { return nil }
        // memchr for the first byte, memcmp for the rest (Glibc hides memmem).
        var offset = 0
        let last = bytes.count - length
        while offset <= last {
            guard let hit = memchr(base + offset, Int32(needle[0]), last - offset + 1) else { return nil }
            let at = base.distance(to: UnsafeRawPointer(hit))
            if memcmp(hit, needle, length) == 0 { return at }
            offset = at + 1
        }
        return nil
    }

    /// The string value of `"key":"…"`, for the codes of rejects and errors (ASCII, unescaped).
    static func stringValue(of key: String, in bytes: UnsafeRawBufferPointer) -> String? {
        let pattern = Array("\"\(key)\":\"".utf8)
        guard let start = pattern.withUnsafeBufferPointer({ find($0.baseAddress!, $0.count, in: bytes) }) else { return nil }
        let valueStart = start + pattern.count
        guard let end = bytes[valueStart...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
        return String(decoding: bytes[valueStart..<end], as: UTF8.self)
    }
}

/// The chat messages the generator sends: `#pb` and a ten-digit message number, padded with
/// `.` to the requested size. The op id is `b` and the same number, so retries never collide.
struct BenchMessage: Sendable {
    static let marker: StaticString = "#pb"
    static let digits = 10

    /// The encoded op frame with message number 0; copies get their digits overwritten.
    private let template: [UInt8]
    /// Where the digits sit in the template: in the op id and in the text.
    private let digitOffsets: [Int]

    /// - Parameter textBytes: the size of the chat text (at least 13, the marker and digits).
    init(textBytes: Int) {
        let zeros = String(repeating: "0", count: Self.digits)
        let text = "#pb" + zeros + String(repeating: ".", count: max(0, textBytes - 3 - Self.digits))
        let frame = ClientFrame.op(id: OpID("b" + zeros), operation: .chat(text: text))
        template = FrameEncoder().encode(frame)
        var offsets: [Int] = []
        for prefix in [Array("\"b".utf8), Array("#pb".utf8)] {
            let needle = prefix + Array(zeros.utf8)
            if let start = template.firstRange(of: needle)?.lowerBound { offsets.append(start + prefix.count) }
        }
        precondition(offsets.count == 2, "the op frame template must show the op id and the text verbatim")
        digitOffsets = offsets
    }

    /// The op frame for message `number`.
    func frame(_ number: Int) -> ByteBuffer {
        precondition(number >= 0 && number < 10_000_000_000)
        var bytes = template
        for offset in digitOffsets {
            var value = number
            for index in stride(from: offset + Self.digits - 1, through: offset, by: -1) {
                bytes[index] = UInt8(ascii: "0") + UInt8(value % 10)
                value /= 10
            }
        }
        return ByteBuffer(bytes: bytes)
    }

    /// The message number in a frame that carries our marker.
    static func number(in bytes: UnsafeRawBufferPointer) -> Int? {
        guard let at = ScannedFrame.find(marker.utf8Start, marker.utf8CodeUnitCount, in: bytes) else { return nil }
        let start = at + marker.utf8CodeUnitCount
        guard start + digits <= bytes.count else { return nil }
        var value = 0
        for index in start..<(start + digits) {
            let byte = bytes[index]
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value
    }
}
