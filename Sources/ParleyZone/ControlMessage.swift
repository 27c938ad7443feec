import FoundationEssentials

/// One message on the supervisor's control socket (``ZonePaths/controlSocket``): one JSON
/// object per line, UTF-8, each with a `"type"`. The socket is the supervisor's only door, and
/// only the zone's user can open it (directory 0700, socket 0600), so it carries no credentials.
///
/// A zone process, after connecting:
/// ```
/// → {"type":"register","name":"collab-1","pid":4242}      first, once per connection
/// → {"type":"heartbeat","load":{"meetings":3}}              every heartbeat.intervalMs; load optional
/// → {"type":"request","id":7,"spawn":{"role":"collab"}}     the manager wants one more collab server
/// ← {"type":"reply","id":7,"ok":true,"name":"collab-3"}
/// ← {"type":"stop"}                                         shut down gracefully (SIGTERM follows too)
/// ← {"type":"refused","error":{"code":"unknown_process","message":"…"}}   registration refused; closes
/// ```
/// `parley ctl`, on a connection of its own:
/// ```
/// → {"type":"ctl","id":1,"command":"status"}
/// ← {"type":"reply","id":1,"ok":true,"status":[{"name":"collab-1","role":"collab","pid":4242,…}]}
/// → {"type":"ctl","id":2,"command":"restart","name":"collab-1"}     also "stop"
/// ← {"type":"reply","id":2,"ok":false,"error":{"code":"unknown_process","message":"…"}}
/// ```
/// Unknown `"type"`s are a protocol error (the connection closes); an unknown ctl command is
/// answered with error code `unknown_command`, so an older supervisor tells a newer `parley ctl`
/// what it cannot do.
public enum ControlMessage: Equatable, Sendable {
    case register(name: NodeName, pid: Int)
    case heartbeat(load: JSONValue?)
    case request(id: Int, ControlRequest)
    case ctl(id: Int, ControlCommand)
    case reply(ControlReply)
    case stop
    case refused(ControlError)
}

/// What a zone process may ask the supervisor for.
public enum ControlRequest: Equatable, Sendable {
    /// Start one more process of this role (only `collab` scales); the reply names it.
    case spawn(role: NodeRole)
}

/// An operator command from `parley ctl`.
///
/// Extension point: `drain NAME` belongs here as `case drain(NodeName)` with wire name
/// `"drain"` (add it to ``wireName``, ``name`` and ``init(wireName:name:)``). The supervisor
/// answers it in `Supervisor.perform(_:)`: it asks the primary manager, over the manager's
/// control link, to relocate NAME's meetings, then stops NAME with
/// ``Supervision/stopRequested(_:nowMs:)`` once the manager reports it empty.
public enum ControlCommand: Equatable, Sendable {
    case status
    case restart(NodeName)
    case stop(NodeName)
    /// A command this build does not know; answered with `unknown_command`.
    case unsupported(String)

    public var wireName: String {
        switch self {
        case .status: "status"
        case .restart: "restart"
        case .stop: "stop"
        case .unsupported(let name): name
        }
    }

    public var name: NodeName? {
        switch self {
        case .restart(let name), .stop(let name): name
        case .status, .unsupported: nil
        }
    }

    public init(wireName: String, name: NodeName?) throws(ControlError) {
        switch (wireName, name) {
        case ("status", _): self = .status
        case ("restart", let name?): self = .restart(name)
        case ("stop", let name?): self = .stop(name)
        case ("restart", nil), ("stop", nil): throw ControlError(code: "bad_request", message: "'\(wireName)' needs a process name")
        default: self = .unsupported(wireName)
        }
    }
}

/// The answer to a ``ControlMessage/request(id:_:)`` or ``ControlMessage/ctl(id:_:)`` with the same id.
public struct ControlReply: Codable, Equatable, Sendable {
    public var id: Int
    public var ok: Bool
    /// For `spawn`: the new process's name.
    public var name: NodeName?
    /// For `status`: every process of the zone, in start order.
    public var status: [ProcessStatus]?
    public var error: ControlError?

    public init(id: Int, ok: Bool = true, name: NodeName? = nil, status: [ProcessStatus]? = nil, error: ControlError? = nil) {
        self.id = id
        self.ok = ok
        self.name = name
        self.status = status
        self.error = error
    }

    public static func failure(id: Int, _ error: ControlError) -> ControlReply { ControlReply(id: id, ok: false, error: error) }
}

/// A refusal with a stable `code` and a `message` for people.
public struct ControlError: Error, Codable, Equatable, Sendable, CustomStringConvertible {
    public var code: String
    public var message: String
    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }
    public init(_ refusal: SupervisionRefusal) { self.init(code: refusal.code, message: refusal.description) }
    public var description: String { message }
}

/// Where a supervised process is in its life, as `parley ctl status` shows it.
public enum ProcessState: String, Codable, Sendable {
    /// Spawned, not registered yet.
    case starting
    case running
    /// Ended unplanned; waiting out its restart backoff.
    case waiting
    /// Asked to stop (or killed); not reaped yet.
    case stopping
    /// Stopped by the operator or with the zone.
    case stopped
    /// Restarted too often; the supervisor gave up on it.
    case failed
}

/// One row of `parley ctl status`.
public struct ProcessStatus: Codable, Equatable, Sendable {
    public var name: NodeName
    public var role: NodeRole
    public var pid: Int?
    public var state: ProcessState
    /// Since the current OS process was spawned.
    public var uptimeMs: Int?
    /// Times it has been spawned again, for any reason.
    public var restarts: Int
    public var lastExit: ProcessExit?
    /// What the operator should know: "restarting in 180 ms", or why it was given up on.
    public var detail: String?
    /// The process's last self-reported load, as it chose to shape it.
    public var load: JSONValue?
    /// In a cluster, the machine that runs it.
    public var machine: String?

    public init(name: NodeName, role: NodeRole, pid: Int? = nil, state: ProcessState, uptimeMs: Int? = nil,
                restarts: Int = 0, lastExit: ProcessExit? = nil, detail: String? = nil, load: JSONValue? = nil,
                machine: String? = nil) {
        self.name = name
        self.role = role
        self.pid = pid
        self.state = state
        self.uptimeMs = uptimeMs
        self.restarts = restarts
        self.lastExit = lastExit
        self.detail = detail
        self.load = load
        self.machine = machine
    }
}

/// Any JSON value: the free-form load a process reports with its heartbeats.
public enum JSONValue: Codable, Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Double.self) { self = .number(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: any Encoder) throws {
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
}

// MARK: - Wire form

extension ControlMessage: Codable {
    private enum CodingKeys: String, CodingKey { case type, name, pid, load, id, spawn, command, error }
    private struct Spawn: Codable { var role: NodeRole }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let type = try container.decode(String.self, forKey: .type)
        switch type {
        case "register":
            self = .register(name: try container.decode(NodeName.self, forKey: .name),
                             pid: try container.decode(Int.self, forKey: .pid))
        case "heartbeat":
            self = .heartbeat(load: try container.decodeIfPresent(JSONValue.self, forKey: .load))
        case "request":
            let spawn = try container.decode(Spawn.self, forKey: .spawn)
            self = .request(id: try container.decode(Int.self, forKey: .id), .spawn(role: spawn.role))
        case "ctl":
            let command = try ControlCommand(wireName: try container.decode(String.self, forKey: .command),
                                             name: try container.decodeIfPresent(NodeName.self, forKey: .name))
            self = .ctl(id: try container.decode(Int.self, forKey: .id), command)
        case "reply":
            self = .reply(try ControlReply(from: decoder))
        case "stop":
            self = .stop
        case "refused":
            self = .refused(try container.decode(ControlError.self, forKey: .error))
        default:
            throw DecodingError.dataCorruptedError(forKey: .type, in: container, debugDescription: "unknown message type '\(type)'")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .register(let name, let pid):
            try container.encode("register", forKey: .type)
            try container.encode(name, forKey: .name)
            try container.encode(pid, forKey: .pid)
        case .heartbeat(let load):
            try container.encode("heartbeat", forKey: .type)
            try container.encodeIfPresent(load, forKey: .load)
        case .request(let id, .spawn(let role)):
            try container.encode("request", forKey: .type)
            try container.encode(id, forKey: .id)
            try container.encode(Spawn(role: role), forKey: .spawn)
        case .ctl(let id, let command):
            try container.encode("ctl", forKey: .type)
            try container.encode(id, forKey: .id)
            try container.encode(command.wireName, forKey: .command)
            try container.encodeIfPresent(command.name, forKey: .name)
        case .reply(let reply):
            try container.encode("reply", forKey: .type)
            try reply.encode(to: encoder)
        case .stop:
            try container.encode("stop", forKey: .type)
        case .refused(let error):
            try container.encode("refused", forKey: .type)
            try container.encode(error, forKey: .error)
        }
    }

    /// The message as one line of the control protocol, newline included.
    public func line() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(self)) + [UInt8(ascii: "\n")]
    }

    /// Parses one line (without its newline).
    public init(line: some Collection<UInt8>) throws {
        self = try JSONDecoder().decode(ControlMessage.self, from: Data(line))
    }
}

/// Splits a byte stream into lines, with a bound on a line's length so a broken or hostile
/// peer cannot make the reader buffer without limit.
public struct ControlLineFramer: Sendable {
    public struct LineTooLong: Error, CustomStringConvertible {
        public let maxLineBytes: Int
        public var description: String { "a control message is longer than \(maxLineBytes) bytes" }
    }

    public let maxLineBytes: Int
    private var pending: [UInt8] = []

    public init(maxLineBytes: Int = 1 << 20) {
        precondition(maxLineBytes > 0)
        self.maxLineBytes = maxLineBytes
    }

    /// The complete lines `bytes` finishes, in order, without their newlines; empty lines are skipped.
    public mutating func append(_ bytes: some Sequence<UInt8>) throws(LineTooLong) -> [[UInt8]] {
        var lines: [[UInt8]] = []
        for byte in bytes {
            if byte == UInt8(ascii: "\n") {
                if !pending.isEmpty { lines.append(pending) }
                pending.removeAll(keepingCapacity: true)
            } else {
                guard pending.count < maxLineBytes else { throw LineTooLong(maxLineBytes: maxLineBytes) }
                pending.append(byte)
            }
        }
        return lines
    }
}
