import FoundationEssentials
import ParleyCore
import ParleyProtocol
import Testing

/// Any JSON value, compared structurally (object key order does not matter), so tests can
/// pin the exact wire shape of a frame.
indirect enum JSONValue: Codable, Equatable, Sendable, CustomStringConvertible {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    var description: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? String(decoding: encoder.encode(self), as: UTF8.self)) ?? "?"
    }

    static func parse(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> JSONValue {
        do {
            return try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        } catch {
            Issue.record("not JSON: \(text): \(error)", sourceLocation: sourceLocation)
            return .null
        }
    }

    static func parse(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> JSONValue {
        parse(String(decoding: bytes, as: UTF8.self), sourceLocation: sourceLocation)
    }
}

let encoder = FrameEncoder()
let decoder = ClientFrameDecoder(maxFrameBytes: 65_536)

/// Decodes `text` and expects it to fail with exactly `code`.
func expectDecodeError(_ bytes: [UInt8], _ code: ProtocolErrorCode, _ why: String,
                       using decoder: ClientFrameDecoder = decoder, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        let frame = try decoder.decode(bytes)
        Issue.record("\(why): decoded \(frame); expected \(code.rawValue)", sourceLocation: sourceLocation)
    } catch {
        #expect(error.code == code, "\(why): \(error.message)", sourceLocation: sourceLocation)
        #expect(!error.fatal, "decoder errors are not fatal by themselves", sourceLocation: sourceLocation)
    }
}

func expectDecodeError(_ text: String, _ code: ProtocolErrorCode, _ why: String,
                       using decoder: ClientFrameDecoder = decoder, sourceLocation: SourceLocation = #_sourceLocation) {
    expectDecodeError(Array(text.utf8), code, why, using: decoder, sourceLocation: sourceLocation)
}

/// A meeting with something in every part of its state, for welcome-with-snapshot frames.
func busyMeeting() throws -> Meeting {
    var meeting = Meeting(id: "m-1", title: "Weekly \"sync\" / ünïcode ✓",
                          settings: MeetingSettings(maxParticipants: 50, features: Features(polls: true, applicationSharing: true)))
    let steps: [(MeetingOp, Issuer)] = [
        (.join(participant: "hana", name: "Hana", role: .host), .system),
        (.join(participant: "ari", name: "Ari", role: .attendee), .system),
        (.join(participant: "ben", name: "Ben", role: .attendee), .system),
        (.chat(text: "hello\nworld 👋"), .participant("ari")),
        (.privateMessage(to: "ben", text: "psst"), .participant("ari")),
        (.addDocument(id: "deck", title: "Deck", pages: ["p1", "p2"]), .participant("hana")),
        (.addWhiteboard(id: "wb", title: "Board"), .participant("hana")),
        (.turnPage(to: "p2"), .participant("hana")),
        (.draw(page: "p2", stroke: "s1", tool: .text, color: "#123abc", width: 1.25,
               points: [Point(x: 0.1, y: -3e-5), Point(x: 1e6, y: 2)], text: "label"), .participant("ben")),
        (.createPoll(id: "q1", question: "Lunch?", options: ["yes", "no"]), .participant("hana")),
        (.vote(poll: "q1", option: 1), .participant("ari")),
        (.startShare(kind: .application, title: "Editor"), .participant("hana")),
        (.requestControl, .participant("ben")),
        (.grantControl(to: "ari"), .participant("hana")),
        (.presence(participant: "ben", presence: .reconnecting), .system),
        (.lock, .participant("hana")),
    ]
    for (index, (operation, issuer)) in steps.enumerated() {
        try meeting.apply(operation, by: issuer, at: 1_700_000_000_000 + Millis(index), seq: Seq(index + 1))
    }
    return meeting
}
