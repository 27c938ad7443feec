import Crypto
import FoundationEssentials
import JWTKit
import ParleyCore
import ParleyProtocol

#if canImport(Glibc)
import Glibc
#endif

/// What a join token says: who may join which meeting, as what, until when.
struct JoinClaims: JWTPayload, Equatable {
    var sub: SubjectClaim
    var exp: ExpirationClaim
    var mtg: String
    var name: String
    var role: Role

    var participant: ParticipantID { ParticipantID(sub.value) }
    var meeting: MeetingID { MeetingID(mtg) }

    struct Expired: Error {}

    func verify(using algorithm: some JWTAlgorithm) throws {
        // Checked here rather than by `verifyNotExpired` so expiry gets its own error code.
        if exp.value < Date() { throw Expired() }
    }
}

/// Signs and verifies join tokens with an Ed25519 key (EdDSA JWTs). The private key is
/// created on first start at `DATA/keys/token-signing.ed25519` (mode 0600); verifying needs
/// only the public half, so later a hosting server can verify without being able to sign.
public actor TokenAuthority {
    private let keys: JWTKeyCollection
    private let lifetimeSeconds: Int

    public init(dataDirectory: String, lifetimeSeconds: Int) async throws {
        let directory = dataDirectory + "/keys"
        let path = directory + "/token-signing.ed25519"
        let privateKey: Curve25519.Signing.PrivateKey
        if let existing = FileManager.default.contents(atPath: path) {
            privateKey = try Curve25519.Signing.PrivateKey(rawRepresentation: existing)
        } else {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let fresh = Curve25519.Signing.PrivateKey()
            // Write a private temporary file, then hard-link it into place: the link fails if
            // another process of the zone created the key first, and then everyone uses
            // that one. A crash never leaves half a key.
            let temporary = path + ".tmp-\(getpid())"
            guard FileManager.default.createFile(atPath: temporary, contents: fresh.rawRepresentation,
                                                 attributes: [.posixPermissions: 0o600])
            else { throw ServerError.cannotWrite(path: temporary) }
            let linked = link(temporary, path) == 0
            unlink(temporary)
            if linked {
                privateKey = fresh
            } else {
                guard let winner = FileManager.default.contents(atPath: path) else { throw ServerError.cannotWrite(path: path) }
                privateKey = try Curve25519.Signing.PrivateKey(rawRepresentation: winner)
            }
        }
        keys = JWTKeyCollection()
        await keys.add(eddsa: EdDSA.PrivateKey(backing: privateKey), kid: "parley-1")
        self.lifetimeSeconds = lifetimeSeconds
    }

    func issue(meeting: MeetingID, participant: ParticipantID, name: String, role: Role) async throws -> String {
        let claims = JoinClaims(
            sub: SubjectClaim(value: participant.rawValue),
            exp: ExpirationClaim(value: Date().addingTimeInterval(TimeInterval(lifetimeSeconds))),
            mtg: meeting.rawValue, name: name, role: role)
        return try await keys.sign(claims, kid: "parley-1")
    }

    func verify(_ token: String) async throws(ProtocolError) -> JoinClaims {
        do {
            return try await keys.verify(token, as: JoinClaims.self)
        } catch is JoinClaims.Expired {
            throw ProtocolError(.tokenExpired, "the join token has expired; ask for a new one", fatal: true)
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
