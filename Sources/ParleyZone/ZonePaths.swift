/// Where a zone keeps its files under the data directory. Every process of the zone derives
/// the same paths from the same data directory, so none are passed around.
public struct ZonePaths: Sendable, Equatable {
    public let data: String

    public init(data: String) {
        self.data = data.count > 1 && data.hasSuffix("/") ? String(data.dropLast()) : data
    }

    /// Readable only by the zone's user (mode 0700): the control socket and the secrets.
    public var zoneDirectory: String { data + "/zone" }
    /// Where hosts note the op they are applying, one folder per process (poison ops).
    public var applyingDirectory: String { zoneDirectory + "/applying" }
    /// The supervisor's Unix socket: processes' heartbeats and requests, and `parley ctl`.
    public var controlSocket: String { zoneDirectory + "/control.sock" }
    /// The shared secret that authenticates links between processes (mode 0600).
    public var zoneSecret: String { zoneDirectory + "/secret" }
    /// A cluster's TLS credentials for links between machines, made by `parley cluster init`.
    public var tlsDirectory: String { zoneDirectory + "/tls" }
    /// The cluster's CA certificate (PEM): a zone link is accepted only from a peer whose
    /// certificate it signed, and only made to one.
    public var clusterCA: String { tlsDirectory + "/ca.pem" }
    /// This machine's certificate (PEM), signed by the cluster's CA.
    public var machineCertificate: String { tlsDirectory + "/machine.pem" }
    /// This machine's private key (PEM, mode 0600).
    public var machineKey: String { tlsDirectory + "/machine.key" }
    /// The configuration the supervisor resolved and started the zone with.
    public var resolvedConfiguration: String { zoneDirectory + "/zone.json" }
    /// The web process writes the URL clients use (`http://host:port`) here once it listens.
    public var publicURL: String { zoneDirectory + "/public-url" }
    /// Where the supervisor serves its metrics, written once it does (`ctl status` shows it).
    public var supervisorMetricsURL: String { zoneDirectory + "/supervisor-metrics-url" }
    /// One log file per process, appended across restarts.
    public func log(of name: NodeName) -> String { data + "/logs/\(name.rawValue).log" }
    /// The op a collaboration server is applying right now; read after a crash to find poison ops.
    public func applyingMarker(of name: NodeName) -> String { zoneDirectory + "/applying-\(name.rawValue)" }
}
