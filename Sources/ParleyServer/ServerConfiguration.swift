import FoundationEssentials
import ParleyCore
import ParleyProtocol
import ParleyStore
import ParleyTelemetry

/// Everything an operator can set on one server. Every limit is explicit here.
public struct ServerConfiguration: Sendable {
    public var host: String
    /// 0 picks a free port (tests); the bound port is reported when the server is up.
    public var port: Int
    /// TLS on the client port; nil serves plain HTTP.
    public var tls: ServerTLS?
    /// The scheme of this server's client addresses.
    public var scheme: String { tls == nil ? "http" : "https" }
    /// The signing key, documents and (with the default store) the SQLite database live here.
    public var dataDirectory: String
    /// Where meetings are kept: SQLite in the data directory (the default) or PostgreSQL.
    /// Not opened when the server is given an open store (`ParleyServer(…, store:)`).
    public var store: StoreLocation = .sqlite(directory: nil)
    /// The wall clock, in milliseconds since 1970: token lifetimes, sign-in locks, sessions.
    /// Tests pass their own.
    public var clock: @Sendable () -> Millis = ServerConfiguration.wallClock
    /// The machine's wall clock, in milliseconds since 1970: the default ``clock``.
    public static let wallClock: @Sendable () -> Millis = { Millis((Date().timeIntervalSince1970 * 1000).rounded()) }
    public var limits: ConnectionLimits
    /// Ops queued for one meeting before new ones are refused with `server_busy`.
    public var meetingQueueDepth: Int
    /// WebSocket hellos waiting for their token to be checked before new ones are refused
    /// with `server_busy` (a join storm beyond this is turned away, not queued without bound).
    public var pendingHellos: Int
    /// A client WebSocket that has sent nothing for this long gets a WebSocket ping; if it
    /// still sends nothing (not even the pong) for as long again, it is closed as dead.
    public var webSocketPingSeconds: Int
    /// Entries between checkpoints of a meeting.
    public var snapshotEveryEntries: Int
    public var resumeWindow: ResumeWindow
    /// How long a join token stays valid.
    public var tokenLifetimeSeconds: Int
    /// A long-poll session with no receive request for this long is closed.
    public var pollSessionTimeoutMillis: Int64
    /// Upper bound on one long-poll receive's wait.
    public var pollMaxWaitMillis: Int64
    /// Largest HTTP request body accepted by the API and the long-poll endpoints.
    public var maxRequestBytes: Int
    /// If set, `POST /v1/meetings` and token issuing require `Authorization: Bearer <key>`.
    public var apiKey: String?
    /// SQLite `synchronous=FULL` (fsync on every commit) rather than NORMAL. PostgreSQL
    /// always commits durably.
    public var fsyncEveryCommit: Bool
    /// In a zone: asks the license service whether a new participant may join.
    public var admission: (@Sendable (MeetingID, ParticipantID) async -> Admission)?
    /// In a zone: told every committed join and leave, for the log service.
    public var attendance: (@Sendable (Attendance) -> Void)?
    /// In a zone: why the role cannot do its job now (no manager link, say), beyond the
    /// store, which `/ready` always checks. Empty when it can.
    public var readiness: (@Sendable () async -> [String])?
    /// A new connection's first request head must be complete within this many seconds
    /// (slowloris: headers sent a byte at a time hold a connection no longer).
    public var headerTimeoutSeconds = 10
    /// An HTTP connection with no request in progress for this many seconds is closed.
    /// (A WebSocket is not an HTTP connection any more: its pings decide.)
    public var httpIdleTimeoutSeconds = 60
    /// Where this server's figures go (`.off`: nowhere); see docs/operations.md.
    public var metrics = ServerMetrics.off
    /// Spans for each op's path (`parley.op`, `parley.commit`); off by default.
    public var tracing = ProcessTracing.off
    /// `parley serve --single`: the path on the client port that serves the metrics (nil:
    /// none). A zone's processes serve theirs on a listener of their own.
    public var metricsPath: String?
    /// In a zone with edges on: this server serves participants of meetings hosted elsewhere
    /// from copies it keeps, and answers ping and locate for them itself.
    public var servesEdges = false
    /// Poison-op detection, in a zone (nil on a single server): see ``PoisonGuard``.
    public var poison: PoisonGuard?
    /// Fault injection for tests of poison ops: applying a chat message with exactly this
    /// text crashes the process. Set only from a zone's `testFaults`, which a zone refuses
    /// unless started with `--enable-test-faults`.
    public var crashOnChatText: String?
    /// Fault injection for tests of copies voting: a chat with exactly this text is kept in
    /// this server's state (hosted meetings and copies alike) under another text. Set only
    /// from a zone's `testFaults`.
    public var corruptChatText: String?

    public init(
        host: String = "127.0.0.1",
        port: Int = 8080,
        dataDirectory: String = "./data",
        limits: ConnectionLimits = ConnectionLimits(),
        meetingQueueDepth: Int = 10_000,
        pendingHellos: Int = 4_096,
        webSocketPingSeconds: Int = 30,
        snapshotEveryEntries: Int = 1_000,
        resumeWindow: ResumeWindow = ResumeWindow(),
        tokenLifetimeSeconds: Int = 12 * 3600,
        pollSessionTimeoutMillis: Int64 = 30_000,
        pollMaxWaitMillis: Int64 = 30_000,
        maxRequestBytes: Int = 1 << 20,
        apiKey: String? = nil,
        fsyncEveryCommit: Bool = true
    ) {
        self.host = host
        self.port = port
        self.dataDirectory = dataDirectory
        self.limits = limits
        self.meetingQueueDepth = meetingQueueDepth
        self.pendingHellos = pendingHellos
        self.webSocketPingSeconds = webSocketPingSeconds
        self.snapshotEveryEntries = snapshotEveryEntries
        self.resumeWindow = resumeWindow
        self.tokenLifetimeSeconds = tokenLifetimeSeconds
        self.pollSessionTimeoutMillis = pollSessionTimeoutMillis
        self.pollMaxWaitMillis = pollMaxWaitMillis
        self.maxRequestBytes = maxRequestBytes
        self.apiKey = apiKey
        self.fsyncEveryCommit = fsyncEveryCommit
    }
}

/// The license service's answer for one joining participant.
public enum Admission: Sendable {
    case admit
    case refuse(String)
}

/// How a zone keeps an op that crashes its host from trapping the meeting in a crash loop.
///
/// Each host notes, in a small file per meeting under `directory/PROCESS/`, the op it is
/// applying (with its pid) just before applying it, and "idle" right after. The next host
/// of the meeting reads the notes of processes that are gone: a note still naming an op is
/// a crash while applying it, and is counted in the store. An op counted `afterCrashes`
/// times is refused with `poison_op` from then on.
public struct PoisonGuard: Sendable {
    /// DATA/zone/applying: one folder per process.
    public var directory: String
    /// This process's name: its notes go in `directory/process`.
    public var process: String
    public var afterCrashes: Int

    public init(directory: String, process: String, afterCrashes: Int) {
        self.directory = directory
        self.process = process
        self.afterCrashes = afterCrashes
    }
}
