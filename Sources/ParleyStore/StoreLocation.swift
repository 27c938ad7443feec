import FoundationEssentials

/// Where a zone keeps its meetings: the embedded SQLite file in the data directory, or a
/// PostgreSQL database shared by several machines.
///
/// Written as a URL (`store.url`, `--store`, `PARLEY_STORE_URL`):
/// - `sqlite:` (the data directory's `parley.sqlite`) or `sqlite:///absolute/directory`;
/// - `postgres://user:password@host[:port][,host2[:port]...]/database[?options]`, options being
///   `sslmode` (`disable`, `prefer`, `require`; default `prefer`), `target_session_attrs`
///   (`read-write`, the default, or `any`), `connect_timeout` (seconds, default 5),
///   `pool_size` (connections per host, default 10) and `statement_timeout` (seconds a store
///   call may take before it fails, default 5).
public enum StoreLocation: Equatable, Sendable, CustomStringConvertible {
    /// `parley.sqlite` in this directory (nil: the data directory).
    case sqlite(directory: String?)
    case postgres(PostgresURL)

    /// - Throws: ``StoreError/misconfigured(_:)`` naming what is wrong with the URL.
    public init(url: String) throws(StoreError) {
        let trimmed = url.trimmingCharacters(in: .whitespaces)
        if trimmed == "sqlite:" || trimmed == "sqlite://" || trimmed == "sqlite" {
            self = .sqlite(directory: nil)
        } else if trimmed.hasPrefix("sqlite://") {
            let path = String(trimmed.dropFirst("sqlite://".count))
            guard path.hasPrefix("/") else {
                throw .misconfigured("store URL \(url): an SQLite URL names an absolute directory, as sqlite:///var/lib/parley")
            }
            self = .sqlite(directory: path)
        } else if trimmed.hasPrefix("postgres://") || trimmed.hasPrefix("postgresql://") {
            self = .postgres(try PostgresURL(trimmed))
        } else {
            throw .misconfigured("store URL \(url): expected sqlite:, sqlite:///directory or postgres://user:password@host:port/database")
        }
    }

    /// The URL with any password hidden, for logs.
    public var description: String {
        switch self {
        case .sqlite(let directory): directory.map { "sqlite://\($0)" } ?? "sqlite: (the data directory)"
        case .postgres(let url): url.description
        }
    }
}

/// A PostgreSQL connection URL, libpq style, with several hosts allowed for a primary and its
/// replicas: the store uses the first one that accepts writes.
public struct PostgresURL: Equatable, Sendable, CustomStringConvertible {
    public struct Host: Equatable, Sendable {
        public var name: String
        public var port: Int
    }

    public enum TLSMode: String, Equatable, Sendable {
        case disable, prefer, require
    }

    public var user: String
    public var password: String?
    public var hosts: [Host]
    public var database: String
    public var tls: TLSMode = .prefer
    /// Only a host that accepts writes will do (`read-write`); else the first that answers.
    public var requiresWritable = true
    public var connectTimeoutSeconds = 5
    public var poolSize = 10
    public var statementTimeoutSeconds = 5

    public init(_ url: String) throws(StoreError) {
        func bad(_ problem: String) -> StoreError { .misconfigured("store URL \(Self.redacted(url)): \(problem)") }
        guard let schemeEnd = url.range(of: "://") else { throw bad("no scheme") }
        var rest = Substring(url[schemeEnd.upperBound...])
        var query = ""
        if let mark = rest.firstIndex(of: "?") {
            query = String(rest[rest.index(after: mark)...])
            rest = rest[..<mark]
        }
        guard let slash = rest.firstIndex(of: "/") else { throw bad("no database name (…/database)") }
        let database = rest[rest.index(after: slash)...]
        guard !database.isEmpty, !database.contains("/") else { throw bad("no database name (…/database)") }
        self.database = try Self.decoded(database, bad)
        var authority = rest[..<slash]
        if let at = authority.lastIndex(of: "@") {
            let credentials = authority[..<at]
            authority = authority[authority.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                user = try Self.decoded(credentials[..<colon], bad)
                password = try Self.decoded(credentials[credentials.index(after: colon)...], bad)
            } else {
                user = try Self.decoded(credentials, bad)
            }
        } else {
            user = "postgres"
        }
        guard !user.isEmpty else { throw bad("empty user name") }
        hosts = []
        for part in authority.split(separator: ",", omittingEmptySubsequences: false) {
            var name = part
            var port = 5432
            if let colon = part.lastIndex(of: ":") {
                guard let parsed = Int(part[part.index(after: colon)...]), (1...65535).contains(parsed) else {
                    throw bad("bad port in \(part)")
                }
                name = part[..<colon]
                port = parsed
            }
            guard !name.isEmpty else { throw bad("a host is empty") }
            hosts.append(Host(name: String(name), port: port))
        }
        guard !hosts.isEmpty else { throw bad("no host") }
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw bad("option \(pair) has no value") }
            let (key, value) = (parts[0], parts[1])
            switch key {
            case "sslmode":
                guard let mode = TLSMode(rawValue: value) else { throw bad("sslmode must be disable, prefer or require") }
                tls = mode
            case "target_session_attrs":
                guard value == "read-write" || value == "any" else { throw bad("target_session_attrs must be read-write or any") }
                requiresWritable = value == "read-write"
            case "connect_timeout", "pool_size", "statement_timeout":
                guard let number = Int(value), number > 0 else { throw bad("\(key) must be a positive whole number") }
                switch key {
                case "connect_timeout": connectTimeoutSeconds = number
                case "pool_size": poolSize = number
                default: statementTimeoutSeconds = number
                }
            case "application_name":
                break
            default:
                throw bad("unknown option \(key) (known: sslmode, target_session_attrs, connect_timeout, pool_size, statement_timeout)")
            }
        }
    }

    public var description: String {
        let credentials = password == nil ? user : "\(user):***"
        let hostList = hosts.map { "\($0.name):\($0.port)" }.joined(separator: ",")
        return "postgres://\(credentials)@\(hostList)/\(database)"
    }

    private static func decoded(_ part: Substring, _ bad: (String) -> StoreError) throws(StoreError) -> String {
        guard let value = String(part).removingPercentEncoding else { throw bad("bad percent-encoding in \(part)") }
        return value
    }

    /// `url` with the password replaced, for error messages.
    static func redacted(_ url: String) -> String {
        guard let schemeEnd = url.range(of: "://"), let at = url[schemeEnd.upperBound...].lastIndex(of: "@") else { return url }
        let credentials = url[schemeEnd.upperBound..<at]
        guard let colon = credentials.firstIndex(of: ":") else { return url }
        return String(url[..<colon]) + ":***" + String(url[at...])
    }
}
