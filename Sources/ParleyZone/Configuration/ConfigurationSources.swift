import Configuration
import FoundationEssentials

/// Where a zone's settings come from, highest precedence first: command-line flags, then
/// `PARLEY_…` environment variables, then the configuration file, then the standard values.
/// ``ZoneConfiguration/read(_:testFaultsEnabled:)`` reads them through swift-configuration's
/// providers and reports every mistake at once, each naming its key as the operator wrote it.
public struct ConfigurationSources: Sendable {
    /// Values from command-line flags, by key path (`clients.maxFrameBytes`).
    public var flags: [String: ConfigContent]
    /// The process's environment; only `PARLEY_…` variables are read.
    public var environment: [String: String]
    /// The configuration file's name (for messages) and its bytes (JSON).
    public var file: (name: String, contents: Data)?

    public init(flags: [String: ConfigContent] = [:], environment: [String: String] = [:],
                file: (name: String, contents: Data)? = nil) {
        self.flags = flags
        self.environment = environment
        self.file = file
    }

    /// `PARLEY_…` variables that are not settings: read by other parts of Parley, or by its
    /// tests (whose zones inherit the test runner's environment), and `PARLEY_TEST_…`.
    static let otherVariables: Set<String> = [
        // The web pages from a folder instead of the binary's resources, for page development.
        "PARLEY_WEB_PUBLIC",
        // The commit a benchmark result names.
        "PARLEY_COMMIT",
        // The older name of PARLEY_CLIENTS_API_KEY, still honoured (the client commands use it too).
        legacyAPIKeyVariable,
        "PARLEY_BINARY", "PARLEY_UPDATE_TRACES",
    ]

    /// Whether `variable` may be set without being a setting.
    static func isOther(_ variable: String) -> Bool {
        otherVariables.contains(variable) || variable.hasPrefix("PARLEY_TEST_")
    }
    static let legacyAPIKeyVariable = "PARLEY_API_KEY"
    static let environmentPrefix = "parley"

    /// The environment variable that sets `path`: `heartbeat.intervalMs` is
    /// `PARLEY_HEARTBEAT_INTERVAL_MS`, as swift-configuration's environment provider spells it.
    public static func environmentVariable(for path: [String]) -> String {
        ([environmentPrefix] + path).map { component in
            var spelled = ""
            var previous: Character?
            for character in component {
                if let previous, previous.isLowercase, character.isUppercase { spelled.append("_") }
                spelled.append(character.isLetter || character.isNumber ? Character(character.uppercased()) : "_")
                previous = character
            }
            return spelled
        }.joined(separator: "_")
    }
}

/// Every problem with a configuration, worded for the operator who wrote it; the process
/// refuses to start with any.
public struct ConfigurationProblems: Error, CustomStringConvertible, Equatable {
    /// Where the configuration came from: "in zone.json", "given".
    public var source: String
    public var problems: [String]

    public init(source: String, problems: [String]) {
        self.source = source
        self.problems = problems
    }

    public var description: String {
        "the zone configuration \(source) cannot be used:\n" + problems.map { "  - \($0)" }.joined(separator: "\n")
    }
}

/// One place settings come from, as the reader sees it: a swift-configuration provider, plus
/// what the provider does not say (whether it has anything under a key, and how the operator
/// spelled a key there).
struct SettingsSource: Sendable {
    var provider: any ConfigProvider
    /// Whether this source sets `path` or anything beneath it.
    var has: @Sendable ([String]) -> Bool
    /// How the operator wrote `path` here, for messages.
    var spelling: @Sendable ([String]) -> String

    /// A source made of flattened values (a file, the flags, the standard values).
    init(name: String, values: [[String]: ConfigContent], spelling: @escaping @Sendable ([String]) -> String) {
        provider = InMemoryProvider(name: name, values: Dictionary(uniqueKeysWithValues: values.map {
            (AbsoluteConfigKey($0.key), ConfigValue($0.value, isSecret: false))
        }))
        let prefixes = Set(values.keys.flatMap { path in (1...path.count).map { Array(path.prefix($0)) } })
        has = { prefixes.contains($0) }
        self.spelling = spelling
    }

    /// The `PARLEY_…` environment variables.
    init(environment: [String: String]) {
        // An empty variable is unset (`-e PARLEY_STORE_URL=` in a container must not replace
        // the file's store with the default one).
        let variables = environment.filter { $0.key.hasPrefix("PARLEY_") && !$0.value.isEmpty }
        provider = KeyMappingProvider(upstream: EnvironmentVariablesProvider(
            environmentVariables: variables,
            secretsSpecifier: .specific([ConfigurationSources.environmentVariable(for: ["clients", "apiKey"]),
                                         ConfigurationSources.environmentVariable(for: ["store", "url"])]))) { key in
            key.prepending([ConfigurationSources.environmentPrefix])
        }
        let names = Set(variables.keys)
        has = { path in
            let name = ConfigurationSources.environmentVariable(for: path)
            return names.contains(name) || names.contains { $0.hasPrefix(name + "_") }
        }
        spelling = { ConfigurationSources.environmentVariable(for: $0) }
    }
}

/// A JSON document as the key paths of its values: nested objects become longer paths
/// (`heartbeat.intervalMs`), and a list of objects becomes numbered paths (`processes.0.name`)
/// with its length at `processes.#count`, since swift-configuration's values are scalars and
/// lists of scalars only.
struct FlatDocument {
    static let countComponent = "#count"

    var values: [[String]: ConfigContent] = [:]
    /// Paths whose value is JSON null, {} or []: present in the file (so checked for being
    /// known), but setting nothing beneath.
    var nulls: Set<[String]> = []
    /// Values that are not settings at all (a list of lists, a list mixing kinds), by path.
    var unreadable: [[String]: String] = [:]

    init(_ value: JSONValue) {
        add(value, at: [])
    }

    private mutating func add(_ value: JSONValue, at path: [String]) {
        switch value {
        case .null: nulls.insert(path)
        case .bool(let bool): values[path] = .bool(bool)
        case .number(let number):
            values[path] = number.rounded() == number && abs(number) < 9e15 ? .int(Int(number)) : .double(number)
        case .string(let string): values[path] = .string(string)
        case .object(let members):
            if members.isEmpty, !path.isEmpty { nulls.insert(path) }
            for (key, member) in members {
                // `#count` is how lists are kept here; a key of the operator's cannot be one.
                guard !key.contains("#") else {
                    unreadable[path + [key]] = "a key may not contain #"
                    continue
                }
                add(member, at: path + [key])
            }
        case .array(let elements):
            if elements.isEmpty {
                nulls.insert(path)
                values[path + [Self.countComponent]] = .int(0)
            } else if elements.allSatisfy({ if case .object = $0 { true } else { false } }) {
                values[path + [Self.countComponent]] = .int(elements.count)
                for (index, element) in elements.enumerated() { add(element, at: path + ["\(index)"]) }
            } else if case let strings = elements.compactMap({ if case .string(let s) = $0 { s } else { nil } }),
                      strings.count == elements.count {
                values[path] = .stringArray(strings)
            } else {
                unreadable[path] = "a list may hold strings or objects, not a mix or other kinds"
            }
        }
    }

    /// Every key the document sets, as dotted paths, for finding the ones nothing reads.
    var keys: Set<[String]> {
        Set(values.keys.filter { $0.last != Self.countComponent }).union(nulls)
    }
}
