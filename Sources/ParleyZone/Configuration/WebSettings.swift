/// What the web zone allows: accounts, sign-in lock-out, sessions, uploads and the document
/// converter. `parley serve --single` uses these defaults; a zone takes them from its
/// configuration's `web` section, where any key may be left out.
public struct WebSettings: Codable, Equatable, Sendable {
    /// bcrypt cost (work factor 2^cost) for new password hashes; 4...31.
    public var passwordCost: Int = 11
    /// Failed sign-ins in a row that lock an account.
    public var maxFailedSignIns: Int = 5
    /// How long a locked account stays locked.
    public var lockoutSeconds: Int = 900
    /// How long a sign-in lasts without signing in again.
    public var sessionSeconds: Int = 7 * 24 * 3600
    /// Mark cookies `Secure`: set when clients reach the web zone over HTTPS.
    public var secureCookies: Bool = false
    /// Largest document upload, in bytes.
    public var maxUploadBytes: Int = 25 << 20
    /// Most pages a PDF may have.
    public var maxDocumentPages: Int = 200
    /// Wall-clock limit for converting one document, per converter.
    public var converterTimeoutSeconds: Int = 60
    /// Address-space limit of a converter process, in MiB.
    public var converterMemoryMiB: Int = 1_024
    /// Page images are rendered to fit in this many pixels on their longer side.
    public var pageImagePixels: Int = 1_600
    /// Run the converters without the sandbox (bubblewrap) when it cannot run here. Off: the
    /// server then refuses uploads, since a converter is a parser of hostile input.
    public var allowUnsandboxedConversion: Bool = false
    /// Disk a meeting's documents may take, in bytes, as the store holds them (pages, and
    /// on one machine the uploaded PDFs too).
    public var meetingDocumentBytes: Int = 200 << 20
    /// Uploads in progress at once on this web process. Each holds its body in memory (up to
    /// `maxUploadBytes`), so this bounds what uploads take; further ones get `server_busy`.
    public var maxConcurrentUploads: Int = 8
    /// Other web fronts of the same deployment (`https://host:port`, one per zone or
    /// machine): the meeting page times `GET /v1/ping` on each and on its own, asks the
    /// fastest where to connect, and falls back to the next when one does not answer.
    public var otherFronts: [String] = []
    /// The accounts (usernames) that may use the operator's zone page, `/admin`.
    public var admins: [String] = []
    /// Per client address, a minute: sign-in attempts (whatever the account), accounts
    /// registered, meetings created from the meeting center. Beyond, 429 `rate_limited`.
    public var signInsPerAddressPerMinute: Int = 20
    public var registrationsPerAddressPerMinute: Int = 5
    public var meetingsPerAddressPerMinute: Int = 30
    /// Count by the last address of `X-Forwarded-For` (the one the proxy in front of Parley
    /// added) instead of the connection's: set only behind such a proxy, or clients choose
    /// their own address.
    public var trustForwardedFor: Bool = false

    public init() {}

    /// Every problem, worded for the operator; keys are prefixed `web.`.
    public func problems() -> [String] {
        var problems: [String] = []
        if !(4...31).contains(passwordCost) { problems.append("web.passwordCost must be 4...31") }
        let positive: [(String, Int)] = [
            ("maxFailedSignIns", maxFailedSignIns), ("lockoutSeconds", lockoutSeconds), ("sessionSeconds", sessionSeconds),
            ("maxUploadBytes", maxUploadBytes), ("maxDocumentPages", maxDocumentPages),
            ("converterTimeoutSeconds", converterTimeoutSeconds), ("converterMemoryMiB", converterMemoryMiB),
            ("pageImagePixels", pageImagePixels), ("meetingDocumentBytes", meetingDocumentBytes),
        ]
        for (key, value) in positive where value < 1 { problems.append("web.\(key) must be at least 1") }
        if converterMemoryMiB < 64 { problems.append("web.converterMemoryMiB must be at least 64") }
        // Every upload in progress may hold maxUploadBytes in memory.
        for (key, value) in [("signInsPerAddressPerMinute", signInsPerAddressPerMinute),
                             ("registrationsPerAddressPerMinute", registrationsPerAddressPerMinute),
                             ("meetingsPerAddressPerMinute", meetingsPerAddressPerMinute)] where value < 1 {
            problems.append("web.\(key) must be at least 1 (it is \(value))")
        }
        for admin in admins where !(3...32).contains(admin.count)
            || admin.contains(where: { !($0.isASCII && ($0.isLowercase || $0.isNumber || "._-".contains($0))) }) {
            problems.append("web.admins: '\(admin)' is not a username (3 to 32 lower-case letters, digits, '.', '-' and '_')")
        }
        if !(1...256).contains(maxConcurrentUploads) { problems.append("web.maxConcurrentUploads must be 1...256") }
        for front in otherFronts where !(front.hasPrefix("http://") || front.hasPrefix("https://")) || front.hasSuffix("/") {
            problems.append("web.otherFronts: '\(front)' must be an http:// or https:// origin without a trailing slash")
        }
        return problems
    }
}
