import CoreMetrics
import ParleyTelemetry

/// What the web zone records (docs/operations.md, "Metrics"). Converter names come from
/// the fixed list of converters, so they may be labels.
struct WebMetrics: Sendable {
    let metrics: ProcessMetrics

    static let off = WebMetrics(metrics: .off)

    enum SignIn: String {
        case signedIn = "signed_in", wrongPassword = "wrong_password", noAccount = "no_account", locked
    }

    enum Upload: String {
        case stored, refused, failed
    }

    func signIn(_ outcome: SignIn) { metrics.counter(.signIns, [("outcome", outcome.rawValue)]).increment() }
    func lockedOut() { metrics.counter(.lockouts).increment() }
    /// An action refused because its address used its share (`AddressLimits.Action`).
    func rateLimited(_ action: String) { metrics.counter(.rateLimited, [("action", action)]).increment() }
    func upload(_ outcome: Upload) { metrics.counter(.uploads, [("outcome", outcome.rawValue)]).increment() }
    func converted(by converter: String, in duration: Duration) {
        metrics.timer(.conversionDuration, [("converter", converter)]).record(duration: duration)
    }
    /// `converter` failed on a document, and the next one was tried.
    func fellBack(from converter: String) { metrics.counter(.conversionFallbacks, [("failed", converter)]).increment() }
}
