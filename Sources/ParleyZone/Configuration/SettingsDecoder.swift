import Configuration
import FoundationEssentials

/// What one reading of a configuration finds out besides the values: every key it asked
/// about (so that a key nobody asks about is reported as unknown) and every problem.
final class SettingsReading {
    var asked: Set<[String]> = []
    var problems: [String] = []
    /// Paths read from the standard values after a problem beneath them: whatever else the
    /// file has beneath them was not looked at, so it is not reported as unknown.
    var replaced: [[String]] = []

    /// Whether the reading looked at `path`: asked for it, or read what holds it from the
    /// standard values.
    func looked(at path: [String]) -> Bool {
        asked.contains(path) || replaced.contains { path.starts(with: $0) }
    }

    /// Whether the reading asked for something beneath `path`: `path` is a section.
    func askedBeneath(_ path: [String]) -> Bool {
        asked.contains { $0.count > path.count && $0.starts(with: path) }
    }
}

/// Thrown through the decoders once a problem that leaves no value to go on with (an enum
/// value that is not one of its cases) is recorded; the reading stops there.
struct SettingsReadingStopped: Error {}

/// A `Decoder` over swift-configuration's reader: any `Decodable` settings type reads itself
/// from the sources, highest precedence first, without a line of per-key code. A missing key
/// is taken from a lower source (ultimately the standard values); a value of the wrong type is
/// recorded as a problem and the standard value used, so that one reading finds every mistake.
///
/// Lists are read whole from the highest source that has them: a file's `processes` replaces
/// the standard ones rather than merging element by element. A list nobody sets is empty.
struct SettingsDecoder: Decoder {
    let reading: SettingsReading
    /// The sources this part of the document is read from: all of them, or, within a list
    /// of objects, the one source the list came from.
    let sources: [SettingsSource]
    let reader: ConfigReader
    /// Where to fall back to after a problem: the standard values; nil within a list.
    let fallback: SettingsSource?
    let path: [String]
    /// Set for an element of a list of strings: its value.
    var literal: String?

    /// Longer lists are not configurations (a count from the environment, say).
    static let maxListLength = 10_000

    var codingPath: [any CodingKey] { path.map(PathKey.init) }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(reading: SettingsReading, sources: [SettingsSource], fallback: SettingsSource?, path: [String] = []) {
        self.reading = reading
        self.sources = sources
        self.reader = ConfigReader(providers: sources.map(\.provider))
        self.fallback = fallback
        self.path = path
    }

    func child(_ component: String) -> SettingsDecoder { SettingsDecoder(copying: self, path: path + [component]) }

    private init(copying other: SettingsDecoder, path: [String]) {
        reading = other.reading
        sources = other.sources
        reader = other.reader
        fallback = other.fallback
        self.path = path
    }

    func has(_ path: [String]) -> Bool { sources.contains { $0.has(path) } }

    /// `path` as the operator wrote it in the source that sets it (or sets what holds it).
    func spelling(_ path: [String]) -> String {
        (sources.first { $0.has(path) } ?? sources.first { $0.has(Array(path.dropLast())) } ?? sources[sources.count - 1])
            .spelling(path)
    }

    /// One scalar: from the sources, else a recorded problem and the standard value.
    func read<Value>(_ type: ConfigType, zero: Value,
                     _ get: (ConfigReader, ConfigKey) throws -> Value) -> Value {
        if let literal {
            if let value = convert(literal, to: type) as? Value { return value }
            reading.problems.append("\(spelling(path)): '\(literal)' is not \(Self.describe(type))")
            return zero
        }
        reading.asked.insert(path)
        do {
            return try get(reader, ConfigKey(path))
        } catch {
            reading.problems.append(has(path) ? "\(spelling(path)): expected \(Self.describe(type))"
                                              : "\(spelling(path)) is required")
            return fallback.flatMap { try? get(ConfigReader(provider: $0.provider), ConfigKey(path)) } ?? zero
        }
    }

    /// A number: JSON's `1` is an integer to swift-configuration, and is as good as `1.0` here.
    func number() -> Double {
        read(.double, zero: 0) { reader, key in
            do {
                return try reader.requiredDouble(forKey: key)
            } catch {
                guard let whole = try? reader.requiredInt(forKey: key) else { throw error }
                return Double(whole)
            }
        }
    }

    private func convert(_ text: String, to type: ConfigType) -> Any? {
        switch type {
        case .string: text
        case .int: Int(text)
        case .bool: Bool(text)
        case .double: Double(text)
        default: nil
        }
    }

    static func describe(_ type: ConfigType) -> String {
        switch type {
        case .string: "a string"
        case .int: "an integer"
        case .bool: "true or false"
        case .double: "a number"
        case .stringArray: "a list of strings"
        default: "a \(type)"
        }
    }

    /// Decodes `Value` here, recording a failure that leaves nothing to go on with. Where
    /// there are standard values to go on with, the reading carries on from them, to find
    /// the other mistakes.
    func decode<Value: Decodable>(_ type: Value.Type) throws -> Value {
        do {
            return try decodeOrStop(type)
        } catch {
            guard let fallback else { throw error }
            reading.replaced.append(path)
            return try Value(from: SettingsDecoder(reading: SettingsReading(), sources: [fallback], fallback: nil, path: path))
        }
    }

    private func decodeOrStop<Value: Decodable>(_ type: Value.Type) throws -> Value {
        do {
            return try Value(from: self)
        } catch let error as DecodingError {
            let detail = switch error {
            case .dataCorrupted(let context), .typeMismatch(_, let context), .valueNotFound(_, let context),
                 .keyNotFound(_, let context): context.debugDescription
            @unknown default: "\(error)"
            }
            reading.problems.append("\(spelling(path)): \(detail)")
            throw SettingsReadingStopped()
        }
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        if let literal {
            reading.problems.append("\(spelling(path)): expected an object, found '\(literal)'")
            throw SettingsReadingStopped()
        }
        return KeyedDecodingContainer(Keyed(decoder: self))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        reading.asked.insert(path)
        return try List(decoder: self)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { Single(decoder: self) }

    // MARK: - Containers

    struct PathKey: CodingKey {
        var stringValue: String
        var intValue: Int? { Int(stringValue) }
        init(_ stringValue: String) { self.stringValue = stringValue }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { stringValue = "\(intValue)" }
    }

    struct Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let decoder: SettingsDecoder
        var codingPath: [any CodingKey] { decoder.codingPath }
        var allKeys: [Key] { [] }

        func contains(_ key: Key) -> Bool {
            let path = decoder.path + [key.stringValue]
            decoder.reading.asked.insert(path)
            return decoder.has(path)
        }
        func decodeNil(forKey key: Key) throws -> Bool { !contains(key) }
        func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool {
            decoder.child(key.stringValue).read(.bool, zero: false) { try $0.requiredBool(forKey: $1) }
        }
        func decode(_ type: String.Type, forKey key: Key) throws -> String {
            decoder.child(key.stringValue).read(.string, zero: "") { try $0.requiredString(forKey: $1) }
        }
        func decode(_ type: Int.Type, forKey key: Key) throws -> Int {
            decoder.child(key.stringValue).read(.int, zero: 0) { try $0.requiredInt(forKey: $1) }
        }
        func decode(_ type: Double.Type, forKey key: Key) throws -> Double {
            decoder.child(key.stringValue).number()
        }
        func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { Int8(clamping: try decode(Int.self, forKey: key)) }
        func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { Int16(clamping: try decode(Int.self, forKey: key)) }
        func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { Int32(clamping: try decode(Int.self, forKey: key)) }
        func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { Int64(clamping: try decode(Int.self, forKey: key)) }
        func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { UInt(clamping: try decode(Int.self, forKey: key)) }
        func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { UInt8(clamping: try decode(Int.self, forKey: key)) }
        func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { UInt16(clamping: try decode(Int.self, forKey: key)) }
        func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { UInt32(clamping: try decode(Int.self, forKey: key)) }
        func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { UInt64(clamping: try decode(Int.self, forKey: key)) }
        func decode(_ type: Float.Type, forKey key: Key) throws -> Float { Float(try decode(Double.self, forKey: key)) }
        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
            try decoder.child(key.stringValue).decode(type)
        }
        func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws
            -> KeyedDecodingContainer<NestedKey> {
            try decoder.child(key.stringValue).container(keyedBy: type)
        }
        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
            try decoder.child(key.stringValue).unkeyedContainer()
        }
        func superDecoder() throws -> any Decoder { decoder }
        func superDecoder(forKey key: Key) throws -> any Decoder { decoder.child(key.stringValue) }
    }

    /// A list, read whole from the highest source that has it: a list of objects element by
    /// element from that source alone, a list of strings as one value.
    struct List: UnkeyedDecodingContainer {
        let decoder: SettingsDecoder
        /// One decoder per element.
        let elements: [SettingsDecoder]
        var currentIndex = 0
        var codingPath: [any CodingKey] { decoder.codingPath }
        var count: Int? { elements.count }
        var isAtEnd: Bool { currentIndex >= elements.count }

        init(decoder: SettingsDecoder) throws {
            self.decoder = decoder
            let path = decoder.path
            guard let source = decoder.sources.first(where: { $0.has(path) }) else {
                elements = []
                return
            }
            let countPath = path + [FlatDocument.countComponent]
            if source.has(countPath) {
                // Objects: each read from this source only, so a shorter list in a file is not
                // filled up with the standard list's later elements.
                let alone = SettingsDecoder(reading: decoder.reading, sources: [source], fallback: nil, path: path)
                var count = alone.child(FlatDocument.countComponent).read(.int, zero: 0) { try $0.requiredInt(forKey: $1) }
                if !(0...SettingsDecoder.maxListLength).contains(count) {
                    decoder.reading.problems.append("\(decoder.spelling(path)): a list of \(count) entries is not a setting")
                    count = 0
                }
                elements = (0..<count).map { alone.child("\($0)") }
            } else {
                let alone = SettingsDecoder(reading: decoder.reading, sources: [source], fallback: nil, path: path)
                let strings = alone.read(.stringArray, zero: [String]()) { try $0.requiredStringArray(forKey: $1) }
                elements = strings.enumerated().map { index, string in
                    var element = alone.child("\(index)")
                    element.literal = string
                    return element
                }
            }
        }

        private mutating func next() -> SettingsDecoder {
            defer { currentIndex += 1 }
            return elements[currentIndex]
        }
        mutating func decodeNil() throws -> Bool { false }
        mutating func decode(_ type: String.Type) throws -> String {
            next().read(.string, zero: "") { try $0.requiredString(forKey: $1) }
        }
        mutating func decode(_ type: Int.Type) throws -> Int {
            next().read(.int, zero: 0) { try $0.requiredInt(forKey: $1) }
        }
        mutating func decode(_ type: Bool.Type) throws -> Bool {
            next().read(.bool, zero: false) { try $0.requiredBool(forKey: $1) }
        }
        mutating func decode(_ type: Int8.Type) throws -> Int8 { Int8(clamping: try decode(Int.self)) }
        mutating func decode(_ type: Int16.Type) throws -> Int16 { Int16(clamping: try decode(Int.self)) }
        mutating func decode(_ type: Int32.Type) throws -> Int32 { Int32(clamping: try decode(Int.self)) }
        mutating func decode(_ type: Int64.Type) throws -> Int64 { Int64(clamping: try decode(Int.self)) }
        mutating func decode(_ type: UInt.Type) throws -> UInt { UInt(clamping: try decode(Int.self)) }
        mutating func decode(_ type: UInt8.Type) throws -> UInt8 { UInt8(clamping: try decode(Int.self)) }
        mutating func decode(_ type: UInt16.Type) throws -> UInt16 { UInt16(clamping: try decode(Int.self)) }
        mutating func decode(_ type: UInt32.Type) throws -> UInt32 { UInt32(clamping: try decode(Int.self)) }
        mutating func decode(_ type: UInt64.Type) throws -> UInt64 { UInt64(clamping: try decode(Int.self)) }
        mutating func decode(_ type: Double.Type) throws -> Double {
            next().read(.double, zero: 0) { try $0.requiredDouble(forKey: $1) }
        }
        mutating func decode(_ type: Float.Type) throws -> Float { Float(try decode(Double.self)) }
        mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try next().decode(type) }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws
            -> KeyedDecodingContainer<NestedKey> {
            try next().container(keyedBy: type)
        }
        mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer { try next().unkeyedContainer() }
        mutating func superDecoder() throws -> any Decoder { next() }
    }

    struct Single: SingleValueDecodingContainer {
        let decoder: SettingsDecoder
        var codingPath: [any CodingKey] { decoder.codingPath }
        func decodeNil() -> Bool { decoder.literal == nil && !decoder.has(decoder.path) }
        func decode(_ type: Bool.Type) throws -> Bool { decoder.read(.bool, zero: false) { try $0.requiredBool(forKey: $1) } }
        func decode(_ type: String.Type) throws -> String {
            decoder.read(.string, zero: "") { try $0.requiredString(forKey: $1) }
        }
        func decode(_ type: Int.Type) throws -> Int { decoder.read(.int, zero: 0) { try $0.requiredInt(forKey: $1) } }
        func decode(_ type: Double.Type) throws -> Double { decoder.number() }
        func decode(_ type: Int8.Type) throws -> Int8 { Int8(clamping: try decode(Int.self)) }
        func decode(_ type: Int16.Type) throws -> Int16 { Int16(clamping: try decode(Int.self)) }
        func decode(_ type: Int32.Type) throws -> Int32 { Int32(clamping: try decode(Int.self)) }
        func decode(_ type: Int64.Type) throws -> Int64 { Int64(clamping: try decode(Int.self)) }
        func decode(_ type: UInt.Type) throws -> UInt { UInt(clamping: try decode(Int.self)) }
        func decode(_ type: UInt8.Type) throws -> UInt8 { UInt8(clamping: try decode(Int.self)) }
        func decode(_ type: UInt16.Type) throws -> UInt16 { UInt16(clamping: try decode(Int.self)) }
        func decode(_ type: UInt32.Type) throws -> UInt32 { UInt32(clamping: try decode(Int.self)) }
        func decode(_ type: UInt64.Type) throws -> UInt64 { UInt64(clamping: try decode(Int.self)) }
        func decode(_ type: Float.Type) throws -> Float { Float(try decode(Double.self)) }
        func decode<T: Decodable>(_ type: T.Type) throws -> T { try T(from: decoder) }
    }
}
