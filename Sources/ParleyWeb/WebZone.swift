import Foundation
import Hummingbird
import Logging
import ParleyServer
import ParleyStore
import ParleyZone

/// The web zone: accounts, the meeting center, the meeting page and documents, added to a
/// front server (`parley serve --single`, or a zone's web process).
public enum WebZone {
    /// The routes to give ``ParleyServer`` as its `frontRoutes`.
    /// `console`: what the operator's zone page (`/admin`) asks of the zone, given the
    /// server's store; nil with `--single`.
    public static func routes(settings: WebSettings,
                              console: (@Sendable (any ZoneStore) -> any ZoneConsole)? = nil) -> FrontRoutes {
        routes(settings: settings, console: console, probe: ConverterIsolation.probe)
    }

    /// - Parameter probe: whether the converter sandbox works here (tests give the answer).
    static func routes(settings: WebSettings, console: (@Sendable (any ZoneStore) -> any ZoneConsole)? = nil,
                       probe: @escaping ConverterIsolation.Probe) -> FrontRoutes {
        { router, front in
            let data = front.configuration.dataDirectory
            let web = WebContext(
                meetings: front.store, accounts: front.store, tokens: front.tokens, passwords: Passwords(cost: settings.passwordCost),
                cookies: try WebCookies(dataDirectory: data, secure: settings.secureCookies, sessionSeconds: settings.sessionSeconds),
                lockout: SignInLockout(maxFailures: settings.maxFailedSignIns, lockMillis: Int64(settings.lockoutSeconds) * 1000),
                settings: settings, clock: front.clock, logger: front.logger, metrics: WebMetrics(metrics: front.configuration.metrics.process),
                limits: AddressLimits(settings: settings))
            AccountRoutes(web: web).add(to: router)
            SessionRoutes(web: web).add(to: router)
            CenterRoutes(web: web).add(to: router)
            MeetingPageRoutes(web: web).add(to: router)
            let admin = AdminRoutes(web: web, console: console?(front.store))
            admin.add(to: router)
            await admin.warnAboutUnclaimedAdmins()
            // A store shared between machines keeps the documents too; on one machine (SQLite)
            // they are files in the data directory.
            let isolation = await ConverterIsolation.startup(settings: settings, dataDirectory: data, logger: front.logger,
                                                             probe: probe)
            DocumentRoutes(dataDirectory: data, meetings: front.store, shared: front.store as? any DocumentRows, tokens: front.tokens,
                           settings: settings, logger: front.logger, isolation: isolation,
                           metrics: WebMetrics(metrics: front.configuration.metrics.process))
                .add(to: router)
            // The page code: plain JavaScript modules and CSS, revalidated by ETag so a new
            // build is picked up at once.
            router.add(middleware: FileMiddleware(
                publicFolder, urlBasePath: "/static",
                cacheControl: .init([(.init(type: .any), [.noCache])]),
                logger: front.logger))
        }
    }

    /// Where the page code is: the bundled copy, or `PARLEY_WEB_PUBLIC` while working on it.
    static var publicFolder: String {
        if let folder = ProcessInfo.processInfo.environment["PARLEY_WEB_PUBLIC"] { return folder }
        return Bundle.module.resourceURL!.appendingPathComponent("Public").path
    }
}
