import Foundation
import Hummingbird
import Logging
import ParleyCore
import ParleyServer
import ParleyStore
import ParleyZone

/// What every page of the web zone works with.
struct WebContext: Sendable {
    let meetings: any Store
    let accounts: any AccountStore
    let tokens: TokenAuthority
    let passwords: Passwords
    let cookies: WebCookies
    let lockout: SignInLockout
    let settings: WebSettings
    let clock: @Sendable () -> Millis
    let logger: Logger
    var metrics = WebMetrics.off
    /// What one client address may do in bulk (sign in, register, create meetings).
    let limits: AddressLimits

    /// Form bodies are small; anything bigger is not one of ours.
    static let maxFormBytes = 64 << 10

    func now() -> Millis { clock() }

    /// The signed-in account, if the request carries a live session.
    func signedIn(_ request: Request) async throws -> Account? {
        guard let value = request.cookies[WebCookies.session]?.value, !value.isEmpty else { return nil }
        return try await storeCall { try await accounts.sessionAccount(tokenHash: WebCookies.hash(value), now: now()) }
    }

    /// A url-encoded form, after checking its CSRF token against the request's cookies; a
    /// refusal is answered with a page that says why.
    func form<Form: Decodable & CSRFProtected>(_ request: Request, as _: Form.Type, back: String) async throws -> Form {
        do {
            return try await checkedForm(request, as: Form.self)
        } catch .tooLarge {
            throw PageError(.problem(.contentTooLarge, code: "form_too_large", message: "the form is larger than \(Self.maxFormBytes) bytes", back: back))
        } catch .malformed {
            throw PageError(.problem(.badRequest, code: "malformed_form", message: "the form could not be read", back: back))
        } catch .csrf {
            throw PageError(.problem(.forbidden, code: "csrf_failed",
                                     message: "this form did not come from this browser's Parley page, or it has expired; reload the page and try again",
                                     back: back))
        }
    }

    /// A url-encoded form whose CSRF token matches the request's cookies.
    func checkedForm<Form: Decodable & CSRFProtected>(_ request: Request, as _: Form.Type) async throws(FormRefusal) -> Form {
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: Self.maxFormBytes)
        } catch {
            throw .tooLarge
        }
        let form: Form
        do {
            form = try URLEncodedFormDecoder().decode(Form.self, from: String(buffer: body))
        } catch {
            throw .malformed
        }
        guard cookies.csrfMatches(form._csrf, request: request) else {
            logger.notice("form refused: CSRF token missing or not this browser's", metadata: ["path": "\(request.uri.path)"])
            throw .csrf
        }
        return form
    }

    /// Runs a store call, turning its failure into a page that says so.
    func storeCall<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch {
            logger.error("store failed", metadata: ["error": "\(error)"])
            throw PageError(.problem(.internalServerError, code: "internal_error", message: "the server could not reach its database"))
        }
    }
}

/// Why a form was not taken.
enum FormRefusal: Error {
    case tooLarge, malformed, csrf
}

/// A form that carries a CSRF token.
protocol CSRFProtected {
    var _csrf: String? { get }
}

/// An error answered with an HTML page.
struct PageError: HTTPResponseError {
    let page: HTMLPage
    init(_ page: HTMLPage) { self.page = page }
    var status: HTTPResponse.Status { page.status }
    func response(from request: Request, context: some RequestContext) throws -> Response { page.response() }
}
