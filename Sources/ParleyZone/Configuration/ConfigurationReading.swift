import Configuration
import FoundationEssentials

extension ZoneConfiguration {
    /// The configuration its sources describe, highest precedence first: flags, `PARLEY_…`
    /// environment variables, the file, the standard values. Reads through swift-configuration.
    ///
    /// - Throws: ``ConfigurationProblems`` listing every mistake at once, each naming its key
    ///   as the operator wrote it: a file that is not JSON, a key nothing reads (with the
    ///   likely intended one), a value of the wrong type, a value out of range, settings that
    ///   contradict each other (a heartbeat timeout below its interval).
    public static func read(_ sources: ConfigurationSources, testFaultsEnabled: Bool = false)
        throws(ConfigurationProblems) -> ZoneConfiguration {
        let origin = sources.file.map { "in \($0.name)" } ?? "given"
        var layers: [SettingsSource] = []
        if !sources.flags.isEmpty {
            layers.append(SettingsSource(name: "command line", values: Dictionary(uniqueKeysWithValues: sources.flags.map {
                ($0.key.split(separator: ".").map(String.init), $0.value)
            })) { "\(Self.dotted($0)) (from the command line)" })
        }
        layers.append(SettingsSource(environment: sources.environment))
        var file: FlatDocument?
        if let (name, contents) = sources.file {
            let document: JSONValue
            do {
                document = try JSONDecoder().decode(JSONValue.self, from: contents)
            } catch {
                throw ConfigurationProblems(source: origin, problems: ["it is not JSON: \(Self.describe(error))"])
            }
            guard case .object = document else {
                throw ConfigurationProblems(source: origin, problems: ["it must be a JSON object ({ ... }) at the top"])
            }
            let flat = FlatDocument(document)
            file = flat
            layers.append(SettingsSource(name: name, values: flat.values) { "\(Self.dotted($0)) in \(name)" })
        }
        // The older PARLEY_API_KEY, which the client commands read too, under the file: a
        // key exported for them must not replace the one the zone's file sets.
        if let key = sources.environment[ConfigurationSources.legacyAPIKeyVariable], !key.isEmpty {
            layers.append(SettingsSource(name: ConfigurationSources.legacyAPIKeyVariable,
                                         values: [["clients", "apiKey"]: .string(key)]) { _ in ConfigurationSources.legacyAPIKeyVariable })
        }
        let standard = SettingsSource(name: "standard values", values: Self.standardValues) { Self.dotted($0) }
        layers.append(standard)

        let reading = SettingsReading()
        let decoder = SettingsDecoder(reading: reading, sources: layers, fallback: standard)
        let configuration = try? decoder.decode(ZoneConfiguration.self)
        var problems = reading.problems
        if let file {
            for (path, reason) in file.unreadable.sorted(by: { Self.dotted($0.key) < Self.dotted($1.key) }) {
                problems.append("\(Self.dotted(path)) in \(sources.file!.name): \(reason)")
            }
            // Only a reading that went to the end has asked about every key it knows.
            if configuration != nil {
                for path in file.keys.filter({ !reading.looked(at: $0) }).sorted(by: { Self.dotted($0) < Self.dotted($1) }) {
                    if reading.askedBeneath(path) {
                        // A section: null, {} or [] leave it unset; a plain value is a mistake.
                        if !file.nulls.contains(path) {
                            problems.append("\(Self.dotted(path)) in \(sources.file!.name): expected a section ({ ... }), found a value")
                        }
                        continue
                    }
                    problems.append(Self.unknown(Self.dotted(path), in: sources.file!.name, known: reading.asked))
                }
            }
        }
        if configuration != nil {
            let known = Set(reading.asked.map(ConfigurationSources.environmentVariable(for:)))
            for variable in sources.environment.keys.sorted() where variable.hasPrefix("PARLEY_")
                && !known.contains(variable) && !ConfigurationSources.isOther(variable) {
                problems.append("the environment variable \(variable) is not a setting (a zone setting such as "
                                + "heartbeat.intervalMs is PARLEY_HEARTBEAT_INTERVAL_MS)")
            }
        }
        guard let configuration, problems.isEmpty else { throw ConfigurationProblems(source: origin, problems: problems) }
        let rules = configuration.problems(testFaultsEnabled: testFaultsEnabled)
        guard rules.isEmpty else { throw ConfigurationProblems(source: origin, problems: rules) }
        return configuration
    }

    /// The standard configuration as flattened key paths: the lowest source of every reading.
    private static let standardValues: [[String]: ConfigContent] = {
        // Encoding a value type built in this module cannot fail.
        let data = try! JSONEncoder().encode(ZoneConfiguration.standard)
        return FlatDocument(try! JSONDecoder().decode(JSONValue.self, from: data)).values
    }()

    /// The resolved configuration a supervisor wrote for its processes (`DATA/zone/zone.json`),
    /// read alone: no environment or flags of the reader's replace what it chose.
    public static func resolved(_ contents: Data, name: String) throws(ConfigurationProblems) -> ZoneConfiguration {
        try read(ConfigurationSources(file: (name, contents)), testFaultsEnabled: true)
    }

    /// `processes.0.name` as `processes[0].name`.
    static func dotted(_ path: [String]) -> String {
        var text = ""
        for component in path {
            if !component.isEmpty, component.allSatisfy(\.isNumber) { text += "[\(component)]" }
            else { text += text.isEmpty ? component : ".\(component)" }
        }
        return text
    }

    /// An unknown key, with the known one it most likely meant: the same but for case, or a
    /// letter or two away, under the same parent.
    private static func unknown(_ key: String, in file: String, known: Set<[String]>) -> String {
        let candidates = known.map(dotted)
        let close = candidates.first { $0.lowercased() == key.lowercased() }
            ?? candidates.filter { distance($0, key) <= 2 }.min { distance($0, key) < distance($1, key) }
        return "\(key) in \(file) is not a setting" + (close.map { " (did you mean \($0)?)" } ?? "")
    }

    /// Levenshtein distance, for suggestions only.
    private static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var row = Array(0...b.count)
        for i in 1...max(1, a.count) where !a.isEmpty {
            var previous = row[0]
            row[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                let current = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                previous = current
            }
        }
        return row[b.count]
    }

    private static func describe(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        switch error {
        case .dataCorrupted(let context): return (context.underlyingError.map { "\($0)" }) ?? context.debugDescription
        default: return "\(error)"
        }
    }
}
