import FoundationEssentials
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How a process writes its log lines: for people (`text`, swift-log's own format) or for
/// a log pipeline (`json`, one object per line).
public enum LogFormat: String, CaseIterable, Codable, Sendable {
    case text, json
}

/// One JSON object per line on standard error:
///
///     {"time":"2026-12-04T19:27:49.123Z","level":"notice","logger":"parley.node",
///      "source":"ParleyServer","message":"meeting unloaded","metadata":{"meeting":"m-…","node":"collab-1"}}
///
/// Metadata keys come out in snake_case whatever case the code used (`lockedUntil` is
/// `locked_until`), so a pipeline sees one convention. Each line is written with a single
/// `write(2)`, so lines from several threads never interleave.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    private let label: String
    private let now: @Sendable () -> Date

    public init(label: String, now: @escaping @Sendable () -> Date = { Date() }) {
        self.label = label
        self.now = now
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?, source: String,
                    file: String, function: String, line: UInt) {
        var line = format(level: level, message: message, metadata: explicit, source: source)
        line.append("\n")
        line.withUTF8 { bytes in
            var written = 0
            while written < bytes.count {
                let result = write(2, bytes.baseAddress! + written, bytes.count - written)
                if result < 0, errno == EINTR { continue }
                if result <= 0 { return }
                written += result
            }
        }
    }

    /// The line, without its newline.
    public func format(level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?, source: String) -> String {
        let merged = explicit.map { metadata.merging($0) { _, new in new } } ?? metadata
        var line = "{\"time\":" + Self.quoted(now().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true)
            .timeZone(separator: .omitted).dateTimeSeparator(.standard).timeSeparator(.colon)))
        line += ",\"level\":" + Self.quoted(level.rawValue)
        line += ",\"logger\":" + Self.quoted(label)
        line += ",\"source\":" + Self.quoted(source)
        line += ",\"message\":" + Self.quoted(message.description)
        if !merged.isEmpty {
            line += ",\"metadata\":" + Self.object(merged)
        }
        return line + "}"
    }

    static func object(_ metadata: Logger.Metadata) -> String {
        "{" + metadata.sorted { $0.key < $1.key }.map { quoted(snakeCase($0.key)) + ":" + value($0.value) }.joined(separator: ",") + "}"
    }

    static func value(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let text): quoted(text)
        case .stringConvertible(let convertible): quoted(convertible.description)
        case .array(let values): "[" + values.map(Self.value).joined(separator: ",") + "]"
        case .dictionary(let values): object(values)
        }
    }

    /// `lockedUntil` and `locked-until` become `locked_until`; `from_seq` stays.
    static func snakeCase(_ key: String) -> String {
        var result = ""
        for character in key {
            if character.isUppercase {
                if !result.isEmpty, result.last != "_" { result.append("_") }
                result += character.lowercased()
            } else if character == "-" || character == "." || character == " " {
                result.append("_")
            } else {
                result.append(character)
            }
        }
        return result
    }

    /// A JSON string literal.
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let control where control.value < 0x20:
                let hex = String(control.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
