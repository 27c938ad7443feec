import ParleyCore
import ParleyStore

/// The lock-out rule for sign-ins, as a pure state machine over an account's stored
/// ``SignInState``: after `maxFailures` failed attempts in a row an account is locked for
/// `lockMillis`; while locked, the password is not even checked. A success, or the end of a
/// lock, starts the count again.
///
/// An attempt is counted when it begins, before its password is checked: the store applies
/// each step in one atomic change (`AccountStore.changeSignInState`), so that attempts made
/// at once all count, and those beyond `maxFailures` are refused unchecked. Guessing in
/// parallel gets no more tries than guessing one after another.
public struct SignInLockout: Equatable, Sendable {
    public var maxFailures: Int
    public var lockMillis: Int64

    public init(maxFailures: Int, lockMillis: Int64) {
        self.maxFailures = maxFailures
        self.lockMillis = lockMillis
    }

    /// What becomes of an attempt as it begins.
    public enum Attempt: Equatable, Sendable {
        /// Check the password: the `attempt`th in a row. `lockEnded` is when a lock that has
        /// run out by now ended, to log.
        case check(attempt: Int, lockEnded: Millis?)
        /// Refuse without checking the password. `lockedNow`: this attempt, one beyond the
        /// limit, set the lock.
        case locked(until: Millis, lockedNow: Bool)
    }

    public func begin(_ state: inout SignInState, now: Millis) -> Attempt {
        if let until = state.lockedUntil, now < until { return .locked(until: until, lockedNow: false) }
        let lockEnded = state.lockedUntil
        state.failures = lockEnded == nil ? state.failures + 1 : 1
        state.lockedUntil = nil
        guard state.failures > maxFailures else { return .check(attempt: state.failures, lockEnded: lockEnded) }
        state.lockedUntil = now + lockMillis
        return .locked(until: now + lockMillis, lockedNow: true)
    }

    /// The attempt's password was wrong (it was counted as it began). Returns when the
    /// account is locked from now on, if this failure locked it.
    public func failed(_ state: inout SignInState, now: Millis) -> Millis? {
        if let until = state.lockedUntil, now < until { return nil }  // locked meanwhile already
        guard state.failures >= maxFailures else { return nil }
        state.lockedUntil = now + lockMillis
        return now + lockMillis
    }

    /// The attempt's password matched: the count starts again, and nil is returned. If
    /// another attempt locked the account meanwhile, the lock stands, and its end is
    /// returned: the sign-in is refused.
    public func succeeded(_ state: inout SignInState, now: Millis) -> Millis? {
        if let until = state.lockedUntil, now < until { return until }
        state = SignInState()
        return nil
    }
}
