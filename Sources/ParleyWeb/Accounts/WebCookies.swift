import Crypto
import Foundation
import Hummingbird
import ParleyCore
import ParleyServer

/// The web zone's cookies and the CSRF tokens bound to them.
///
/// - `parley_session`: a sign-in; random, stored only as its SHA-256.
/// - `parley_visitor`: a random id for someone not signed in, so the sign-in and register
///   forms have a CSRF token too.
/// - `parley_guest`: a guest's seat in one meeting (path `/m/ID`), signed, so a reload keeps
///   the same participant.
///
/// Every cookie is HttpOnly and SameSite=Lax (Secure if configured). A form's CSRF token is
/// an HMAC of the session or visitor cookie: a page of another site can neither read it nor
/// compute it, and it changes when the user signs in or out.
struct WebCookies: Sendable {
    static let session = "parley_session"
    static let visitor = "parley_visitor"
    static let guest = "parley_guest"

    private let key: SymmetricKey
    let secure: Bool
    let sessionSeconds: Int

    init(dataDirectory: String, secure: Bool, sessionSeconds: Int) throws {
        let fresh = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }
        key = SymmetricKey(data: try KeyFile.createOnce(fresh, at: dataDirectory + "/keys/web-cookies.key", mode: 0o600))
        self.secure = secure
        self.sessionSeconds = sessionSeconds
    }

    /// A new random cookie value.
    static func randomValue() -> String {
        SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.base64URL
    }

    static func hash(_ value: String) -> String {
        SHA256.hash(data: Data(value.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    func cookie(_ name: String, _ value: String, maxAge: Int?, path: String = "/") -> Cookie {
        Cookie(name: name, value: value, maxAge: maxAge, path: path, secure: secure, httpOnly: true, sameSite: .lax)
    }

    func expired(_ name: String, path: String = "/") -> Cookie {
        Cookie(name: name, value: "", maxAge: 0, path: path, secure: secure, httpOnly: true, sameSite: .lax)
    }

    // MARK: CSRF

    /// The CSRF token for the forms on a page answering `request`, and the visitor cookie to
    /// set when the request had neither a session nor a visitor cookie.
    func csrf(for request: Request) -> (token: String, newVisitor: Cookie?) {
        if let session = request.cookies[Self.session]?.value, !session.isEmpty {
            return (mac("csrf:session:" + session), nil)
        }
        if let visitor = request.cookies[Self.visitor]?.value, !visitor.isEmpty {
            return (mac("csrf:visitor:" + visitor), nil)
        }
        let visitor = Self.randomValue()
        return (mac("csrf:visitor:" + visitor), cookie(Self.visitor, visitor, maxAge: nil))
    }

    /// Whether a submitted form's token belongs to this request's cookies.
    func csrfMatches(_ submitted: String?, request: Request) -> Bool {
        guard let submitted, !submitted.isEmpty else { return false }
        var expected: [String] = []
        if let session = request.cookies[Self.session]?.value, !session.isEmpty { expected.append(mac("csrf:session:" + session)) }
        if let visitor = request.cookies[Self.visitor]?.value, !visitor.isEmpty { expected.append(mac("csrf:visitor:" + visitor)) }
        return expected.contains { constantTimeEqual($0, submitted) }
    }

    // MARK: Guests

    struct GuestSeat: Codable, Equatable {
        var m: String
        var p: String
        var n: String
    }

    func guestCookie(_ seat: GuestSeat) -> Cookie {
        let body = (try? JSONEncoder().encode(seat)).map(\.base64URL) ?? ""
        return cookie(Self.guest, body + "." + mac("guest:" + body), maxAge: sessionSeconds, path: "/m/\(seat.m)")
    }

    /// The guest seat in `meeting` this request's cookie proves, if any.
    func guestSeat(in request: Request, meeting: MeetingID) -> GuestSeat? {
        guard let value = request.cookies[Self.guest]?.value else { return nil }
        let parts = value.split(separator: ".", maxSplits: 1).map(String.init)
        guard parts.count == 2, constantTimeEqual(mac("guest:" + parts[0]), parts[1]),
              let data = Data(base64URL: parts[0]),
              let seat = try? JSONDecoder().decode(GuestSeat.self, from: data), seat.m == meeting.rawValue
        else { return nil }
        return seat
    }

    private func mac(_ text: String) -> String {
        Data(HMAC<SHA256>.authenticationCode(for: Data(text.utf8), using: key)).base64URL
    }

    private func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let (x, y) = (Array(a.utf8), Array(b.utf8))
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

extension Data {
    var base64URL: String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    init?(base64URL: String) {
        var text = base64URL.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while text.count % 4 != 0 { text += "=" }
        self.init(base64Encoded: text)
    }
}
