import Hummingbird
import Logging
import ParleyServer
import ParleyZone

/// Uploads (PDF or image) and page images, for the meeting page. Placeholder: filled in by
/// the documents work.
struct DocumentRoutes: Sendable {
    let dataDirectory: String
    let tokens: TokenAuthority
    let settings: WebSettings
    let logger: Logger

    func add(to router: Router<BasicRequestContext>) {}
}
