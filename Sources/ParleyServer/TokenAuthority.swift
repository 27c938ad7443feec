import Crypto
import FoundationEssentials
import JWTKit
import ParleyCore
import ParleyProtocol

#if canImport(Glibc)
import Glibc
#endif

/// What a join token says: who may join which meeting, as what, until when.
public struct JoinClaims: JWTPayload, Equatable {
    var sub: SubjectClaim
    var exp: ExpirationClaim
    var mtg: String
    public var name: String
    public var role: Role

    public var participant: ParticipantID { ParticipantID(sub.value) }
    public var meeting: MeetingID { MeetingID(mtg) }

    /// The signature alone: ``TokenAuthority`` checks the expiry against its own clock (the
    /// server's, which tests and simulations set), so that it also gets its own error code.
    public func verify(using algorithm: some JWTAlgorithm) throws {}

    /// Whether the token has expired at `now` (milliseconds since 1970).
    func hasExpired(at now: Millis) -> Bool { exp.value < Self.date(now) }

    static func date(_ millis: Millis) -> Date { Date(timeIntervalSince1970: Double(millis) / 1_000) }
}

/// Where a data directory keeps the join-token key pair: the private key (mode 0600), which
/// only processes that issue tokens read, and its public half, which hosting servers read.
public enum TokenKeys {
    public static func privateKeyPath(dataDirectory: String) -> String { dataDirectory + "/keys/token-signing.ed25519" }
    public static func publicKeyPath(dataDirectory: String) -> String { privateKeyPath(dataDirectory: dataDirectory) + ".pub" }

    /// Loads the signing key, creating the pair on first use; writes the public half if an
    /// older data directory lacks it. Safe when several processes start at once.
    @discardableResult
    public static func ensure(dataDirectory: String) throws -> Curve25519.Signing.PrivateKey {
        let path = privateKeyPath(dataDirectory: dataDirectory)
        let privateKey: Curve25519.Signing.PrivateKey
        if let existing = FileManager.default.contents(atPath: path) {
            privateKey = try Curve25519.Signing.PrivateKey(rawRepresentation: existing)
        } else {
            let fresh = Curve25519.Signing.PrivateKey()
            privateKey = try Curve25519.Signing.PrivateKey(
                rawRepresentation: KeyFile.createOnce(fresh.rawRepresentation, at: path, mode: 0o600))
        }
        let publicPath = publicKeyPath(dataDirectory: dataDirectory)
        if FileManager.default.contents(atPath: publicPath) == nil {
            _ = try KeyFile.createOnce(privateKey.publicKey.rawRepresentation, at: publicPath, mode: 0o644)
        }
        return privateKey
    }

    /// The public half, for servers that verify tokens but must not be able to sign them.
    public static func verifyingKey(dataDirectory: String) throws(TokenKeyError) -> Curve25519.Signing.PublicKey {
        let path = publicKeyPath(dataDirectory: dataDirectory)
        guard let bytes = FileManager.default.contents(atPath: path) else { throw .missing(path: path) }
        do {
            return try Curve25519.Signing.PublicKey(rawRepresentation: bytes)
        } catch {
            throw .unreadable(path: path)
        }
    }

}

/// A key file made once and then shared by every process of a data directory.
public enum KeyFile {
    /// Writes `bytes` to a private temporary file, then hard-links it into place: the link
    /// fails if another process created the file first, and then everyone uses that one.
    /// Returns the file's contents. A crash never leaves half a key.
    public static func createOnce(_ bytes: Data, at path: String, mode: Int) throws -> Data {
        if let existing = FileManager.default.contents(atPath: path) { return existing }
        try FileManager.default.createDirectory(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path, withIntermediateDirectories: true)
        let temporary = path + ".tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: temporary, contents: bytes, attributes: [.posixPermissions: mode])
        else { throw ServerError.cannotWrite(path: temporary) }
        let linked = link(temporary, path) == 0
        unlink(temporary)
        if linked { return bytes }
        guard let winner = FileManager.default.contents(atPath: path) else { throw ServerError.cannotWrite(path: path) }
        return winner
    }
}

public enum TokenKeyError: Error, CustomStringConvertible {
    case missing(path: String)
    case unreadable(path: String)

    public var description: String {
        switch self {
        case .missing(let path): "no token verification key at \(path); 'parley serve' creates it when the zone starts"
        case .unreadable(let path): "the token verification key at \(path) is not a 32-byte Ed25519 public key"
        }
    }
}

/// Signs and verifies join tokens with an Ed25519 key pair (EdDSA JWTs). Servers that only
/// host meetings are built with ``init(verifyingIn:)``: they hold the public key alone, so a
/// compromised hosting server cannot mint tokens.
public actor TokenAuthority {
    private let keys: JWTKeyCollection
    private let lifetimeSeconds: Int
    /// The wall clock, in milliseconds since 1970: expiries are stamped and checked with it.
    private let clock: @Sendable () -> Millis
    public let canIssue: Bool

    /// Issues and verifies; creates the key pair on first start.
    public init(signingIn dataDirectory: String, lifetimeSeconds: Int,
                clock: @escaping @Sendable () -> Millis = ServerConfiguration.wallClock) async throws {
        let privateKey = try TokenKeys.ensure(dataDirectory: dataDirectory)
        keys = JWTKeyCollection()
        await keys.add(eddsa: EdDSA.PrivateKey(backing: privateKey), kid: "parley-1")
        self.lifetimeSeconds = lifetimeSeconds
        self.clock = clock
        canIssue = true
    }

    /// Verifies only, with the public key.
    public init(verifyingIn dataDirectory: String,
                clock: @escaping @Sendable () -> Millis = ServerConfiguration.wallClock) async throws(TokenKeyError) {
        let publicKey = try TokenKeys.verifyingKey(dataDirectory: dataDirectory)
        keys = JWTKeyCollection()
        await keys.add(eddsa: EdDSA.PublicKey(backing: publicKey), kid: "parley-1")
        lifetimeSeconds = 0
        self.clock = clock
        canIssue = false
    }

    public func issue(meeting: MeetingID, participant: ParticipantID, name: String, role: Role) async throws -> String {
        precondition(canIssue, "a verify-only TokenAuthority cannot issue tokens")
        let claims = JoinClaims(
            sub: SubjectClaim(value: participant.rawValue),
            exp: ExpirationClaim(value: JoinClaims.date(clock() + Millis(lifetimeSeconds) * 1_000)),
            mtg: meeting.rawValue, name: name, role: role)
        return try await keys.sign(claims, kid: "parley-1")
    }

    /// A fresh token for the same participant, name, role and meeting as `token`, which must
    /// be genuine and either valid or expired for less than `graceSeconds`: whoever holds a
    /// token may keep it alive, nobody else can mint one for that participant.
    public func renew(_ token: String, graceSeconds: Int) async throws(ProtocolError) -> (String, JoinClaims) {
        precondition(canIssue, "a verify-only TokenAuthority cannot issue tokens")
        let claims = try await genuine(token)
        guard !claims.hasExpired(at: clock() - Millis(graceSeconds) * 1_000) else {
            throw ProtocolError(.tokenExpired, "the join token expired too long ago to be renewed; join again", fatal: true)
        }
        do {
            let fresh = try await issue(meeting: claims.meeting, participant: claims.participant, name: claims.name,
                                        role: claims.role)
            return (fresh, claims)
        } catch {
            throw ProtocolError(.internalError, "the token could not be signed: \(error)", fatal: true)
        }
    }

    /// The token's claims, or `invalid_token` / `token_expired`.
    public func verify(_ token: String) async throws(ProtocolError) -> JoinClaims {
        let claims = try await genuine(token)
        guard !claims.hasExpired(at: clock()) else {
            throw ProtocolError(.tokenExpired, "the join token has expired; ask for a new one", fatal: true)
        }
        return claims
    }

    /// The claims of a token signed with our key, expired or not.
    private func genuine(_ token: String) async throws(ProtocolError) -> JoinClaims {
        do {
            return try await keys.verify(token, as: JoinClaims.self)
        } catch {
            throw ProtocolError(.invalidToken, "the join token is not valid", fatal: true)
        }
    }
}

public enum ServerError: Error, CustomStringConvertible {
    case cannotWrite(path: String)
    case cannotBind(host: String, port: Int, reason: String)

    public var description: String {
        switch self {
        case .cannotWrite(let path): "cannot write \(path); check the data directory's permissions"
        case .cannotBind(let host, let port, let reason): "cannot listen on \(host):\(port): \(reason)"
        }
    }
}
