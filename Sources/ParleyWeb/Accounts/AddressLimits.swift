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
            return Self.counted(last)
        }
        return Self.counted(context.remoteAddress?.ipAddress ?? "unknown")
    }

    /// What an address is counted as: an IPv4 address as it is (also when written IPv6-mapped,
    /// `::ffff:a.b.c.d`, or with a port); an IPv6 address by its /64, which one client
    /// usually holds whole (else each guess could come from a fresh address).
    static func counted(_ address: String) -> String {
        var text = address.lowercased()
        if text.hasPrefix("[") , let close = text.firstIndex(of: "]") { text = String(text[text.index(after: text.startIndex)..<close]) }
        if text.hasPrefix("::ffff:"), text.contains(".") { text = String(text.dropFirst(7)) }
        if text.contains(".") {
            // IPv4, perhaps with a port a proxy added.
            return String(text.split(separator: ":").first ?? Substring(text))
        }
        guard text.contains(":") else { return text }
        // Expand "::" to find the first four groups.
        let halves = text.components(separatedBy: "::")
        let head = halves[0].split(separator: ":", omittingEmptySubsequences: false).filter { !$0.isEmpty }.map(String.init)
        let tail = halves.count > 1 ? halves[1].split(separator: ":").map(String.init) : []
        let groups = head + Array(repeating: "0", count: max(0, 8 - head.count - tail.count)) + tail
        return groups.prefix(4).map { String(Int($0, radix: 16) ?? 0, radix: 16) }.joined(separator: ":") + "::/64"
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
