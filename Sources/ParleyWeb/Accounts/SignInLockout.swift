import ParleyCore

/// The lock-out rule for sign-ins, as a pure state machine: after `maxFailures` failed
/// sign-ins in a row an account is locked for `lockMillis`; while locked, the password is
/// not even checked. A success, or the end of a lock, starts the count again.
public struct SignInLockout: Equatable, Sendable {
    public var maxFailures: Int
    public var lockMillis: Int64

    public init(maxFailures: Int, lockMillis: Int64) {
        self.maxFailures = maxFailures
        self.lockMillis = lockMillis
    }

    /// An account's sign-in state, as stored.
    public struct State: Equatable, Sendable {
        public var failures: Int
        public var lockedUntil: Millis?

        public init(failures: Int = 0, lockedUntil: Millis? = nil) {
            self.failures = failures
            self.lockedUntil = lockedUntil
        }
    }

    /// What to do with a sign-in attempt before looking at its password.
    public enum Admission: Equatable, Sendable {
        /// Check the password. `lockEnded` is when a lock that has now run out ended, to log.
        case checkPassword(State, lockEnded: Millis?)
        /// Refuse without checking the password.
        case locked(until: Millis)
    }

    /// What a checked password changes.
    public enum Outcome: Equatable, Sendable {
        case signedIn(State)
        case failed(State)
        /// This failure locked the account.
        case lockedNow(State, until: Millis)
    }

    public func admit(_ state: State, now: Millis) -> Admission {
        guard let until = state.lockedUntil else { return .checkPassword(state, lockEnded: nil) }
        if now < until { return .locked(until: until) }
        return .checkPassword(State(), lockEnded: until)
    }

    /// The rule for one checked password, as a person signing in one attempt after another
    /// sees it. The stores apply it per attempt in atomic steps (`AccountStore.beginSignIn`,
    /// `signInFailed`, `signInSucceeded`), so that attempts made at once all count;
    /// `StoreRecordsTests.parallelSignInAttempts` checks each store does.
    public func record(passwordMatched: Bool, _ state: State, now: Millis) -> Outcome {
        if passwordMatched { return .signedIn(State()) }
        let failures = state.failures + 1
        guard failures >= maxFailures else { return .failed(State(failures: failures, lockedUntil: nil)) }
        let until = now + lockMillis
        return .lockedNow(State(failures: failures, lockedUntil: until), until: until)
    }
}
