import HummingbirdBcrypt
import NIOPosix

/// bcrypt, run on NIO's blocking thread pool: a hash takes a few hundred milliseconds at the
/// default cost, which must not stall the tasks serving meetings.
struct Passwords: Sendable {
    let cost: Int
    /// A hash at the same cost, for ``verifyNothing(_:)``.
    private let decoy: String

    init(cost: Int) {
        self.cost = cost
        decoy = Bcrypt.hash("parley-decoy-password", cost: UInt8(cost))
    }

    func hash(_ password: String) async throws -> String {
        let cost = UInt8(cost)
        return try await NIOThreadPool.singleton.runIfActive { Bcrypt.hash(password, cost: cost) }
    }

    func verify(_ password: String, against hash: String) async throws -> Bool {
        try await NIOThreadPool.singleton.runIfActive { Bcrypt.verify(password, hash: hash) }
    }

    /// Spends the time a real check would, so a sign-in with an unknown username takes as
    /// long as one with a wrong password and does not reveal which accounts exist.
    func verifyNothing(_ password: String) async throws {
        _ = try await verify(password, against: decoy)
    }
}
