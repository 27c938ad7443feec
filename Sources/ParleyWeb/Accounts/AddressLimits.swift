import Foundation
import Hummingbird
import ParleyServer
import ParleyZone
import Synchronization

/// What one client address may do in bulk, a minute: sign in (whatever the account, so that
/// guessing across accounts is slowed too, not only the lock-out of one), register, create
/// meetings (`web.*PerAddressPerMinute`). Beyond, 429 `rate_limited` with `Retry-After`.
final class AddressLimits: Sendable {
    enum Action: String, Sendable, CaseIterable {
        case signIn = "sign_in", register, createMeeting = "create_meeting"

        var refusal: String {
            switch self {
            case .signIn: "too many sign-in attempts from your address"
            case .register: "too many accounts registered from your address"
            case .createMeeting: "too many meetings created from your address"
            }
        }
    }

    private let throttles: Mutex<[Action: AddressThrottle]>
    private let trustForwardedFor: Bool

    init(settings: WebSettings) {
        throttles = Mutex([
            .signIn: AddressThrottle(perMinute: settings.signInsPerAddressPerMinute),
            .register: AddressThrottle(perMinute: settings.registrationsPerAddressPerMinute),
            .createMeeting: AddressThrottle(perMinute: settings.meetingsPerAddressPerMinute),
        ])
        trustForwardedFor = settings.trustForwardedFor
    }

    /// The address a request is counted by: the connection's peer, or behind a trusted proxy
    /// the last address it added to `X-Forwarded-For`.
    func address(of request: Request, context: ParleyRequestContext) -> String {
        if trustForwardedFor, let forwarded = request.headers[.init("X-Forwarded-For")!],
           let last = forwarded.split(separator: ",").last?.trimmingCharacters(in: .whitespaces), !last.isEmpty {
            return last
        }
        return context.remoteAddress?.ipAddress ?? "unknown"
    }

    /// Counts one `action` from the request's address.
    /// - Throws: ``Throttled`` when the address has used its share.
    func take(_ action: Action, _ request: Request, context: ParleyRequestContext, web: WebContext) throws {
        let address = address(of: request, context: context)
        let now = Int64(web.now())
        guard let wait = throttles.withLock({ $0[action]!.take(address, nowMillis: now) }) else { return }
        web.metrics.rateLimited(action.rawValue)
        web.logger.notice("rate limited", metadata: ["action": "\(action.rawValue)", "address": "\(address)", "retry_after_s": "\(wait)"])
        throw Throttled(message: "\(action.refusal); try again in \(wait) seconds", retryAfterSeconds: wait)
    }

    /// A 429 page that says why and for how long.
    struct Throttled: HTTPResponseError {
        let message: String
        let retryAfterSeconds: Int
        var status: HTTPResponse.Status { .tooManyRequests }
        func response(from request: Request, context: some RequestContext) throws -> Response {
            var response = HTMLPage.problem(.tooManyRequests, code: "rate_limited", message: message).response()
            response.headers[.retryAfter] = "\(retryAfterSeconds)"
            return response
        }
    }
}
