import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Text made safe to put in HTML, in element content or in a quoted attribute.
struct Escaped: CustomStringConvertible, Sendable {
    let description: String

    init(_ text: String) {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        description = out
    }
}

/// A server-rendered page of the web zone. Every piece of user text reaches `body` through
/// ``Escaped``; the Content-Security-Policy forbids inline scripts, so even a slip could
/// not run one.
struct HTMLPage: Sendable {
    var title: String
    var body: String
    var bodyClass = "plain"
    var head = ""
    var status: HTTPResponse.Status = .ok
    var cookies: [Cookie] = []

    func response() -> Response {
        let html = """
            <!doctype html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(Escaped(title)) · Parley</title>
            <link rel="stylesheet" href="/static/css/parley.css">
            <link rel="icon" href="data:,">
            \(head)
            </head>
            <body class="\(Escaped(bodyClass))">
            \(body)
            </body>
            </html>
            """
        var response = Response(status: status, headers: Self.headers, body: .init(byteBuffer: ByteBuffer(string: html)))
        for cookie in cookies { response.setCookie(cookie) }
        return response
    }

    static let headers: HTTPFields = [
        .contentType: "text/html; charset=utf-8",
        .cacheControl: "no-store",
        HTTPField.Name("Content-Security-Policy")!: """
            default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
            media-src 'self' blob:; connect-src 'self' http: https: ws: wss:; object-src 'none'; \
            base-uri 'none'; form-action 'self'; frame-ancestors 'none'
            """,
        HTTPField.Name("X-Content-Type-Options")!: "nosniff",
        HTTPField.Name("Referrer-Policy")!: "same-origin",
    ]

    /// A page that says what went wrong. People read the message; the stable code is for
    /// scripts and tests, in `data-code`, never in the text.
    static func problem(_ status: HTTPResponse.Status, code: String, message: String, back: String = "/") -> HTMLPage {
        HTMLPage(title: "Problem", body: """
            <main class="narrow">
            <h1>Something went wrong</h1>
            <p class="error" id="problem" role="alert" data-code="\(Escaped(code))">\(Escaped(sentence(message)))</p>
            <p><a href="\(Escaped(back))">Go back</a></p>
            </main>
            """, status: status)
    }

    /// A message written as a phrase ("no account is called zed") as a sentence for people
    /// ("No account is called zed.").
    static func sentence(_ text: String) -> String {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let first = trimmed.first else { return "" }
        let capitalized = first.uppercased() + trimmed.dropFirst()
        return ".!?…".contains(capitalized.last!) ? capitalized : capitalized + "."
    }

    /// JSON for a `<script type="application/json">` block: `<` is escaped so no text inside
    /// can close the element.
    static func scriptJSON(_ value: some Encodable) -> String {
        let data = (try? JSONEncoder().encode(value)) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self).replacingOccurrences(of: "<", with: "\\u003c")
    }
}
