import FoundationEssentials
import Logging
import ParleyCore
import ParleyServer
import ParleyWeb
import ParleyStore
import ParleyZone
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The web process: the public API and the locator, which asks the manager where each
/// meeting lives. It hosts no meetings.
struct WebService: Service {
    let context: NodeContext
    /// How long a locate waits for the manager (placing a meeting takes a store write).
    static let locateTimeout: Duration = .seconds(5)

    func run() async throws {
        let context = context
        let credentials = try ZoneCredentials.load(paths: context.paths, configuration: context.configuration)
        let slot = Mutex<ZoneAgent?>(nil)
        let hooks = ZoneHooks(
            services: { handle in
                let agent = ZoneAgent(name: context.name, role: .web, address: nil, store: handle.store, credentials: credentials,
                                      heartbeatMs: context.configuration.heartbeat.intervalMs, supervisor: context.link, delegate: Bystander(),
                                      logger: context.logger)
                slot.withLock { $0 = agent }
                context.readyWith(store: handle.store) { slot.withLock { $0 } }
                return [agent, PublicURLFile(context: context, handle: handle)]
            })
        let locate: @Sendable (MeetingID) async -> Location = { meeting in
            // While the managers change over (about a lease period), keep asking rather than
            // send the client into backoff.
            let deadline = ContinuousClock.now + Self.locateTimeout
            var problem = "the zone is starting"
            while ContinuousClock.now < deadline {
                if let agent = slot.withLock({ $0 }) {
                    do {
                        switch try await agent.locate(meeting, timeout: deadline - ContinuousClock.now) {
                        case .at(_, let address): return .at(address.client)
                        case .unavailable(let why): return .unavailable(why)
                        }
                    } catch ZoneCallError.linkClosed(let why) {
                        problem = why
                    } catch {
                        return .unavailable("the zone's manager did not answer (\(error)); retry shortly")
                    }
                }
                try? await Task.sleep(for: .milliseconds(50))
            }
            return .unavailable("no manager is reachable (\(problem)); retry shortly")
        }
        var configuration = try ServerConfiguration(zone: context.configuration, paths: context.paths,
                                                port: context.configuration.publicPort)
        // Its HTTP requests, sign-ins, uploads and conversions.
        configuration.metrics = ServerMetrics(context.metrics)
        // `/ready` on the public port: the store (checked there), and a manager to locate meetings.
        configuration.readiness = {
            await slot.withLock({ $0 })?.isRegistered == true ? [] : ["no manager is known: meetings cannot be located"]
        }
        try await ParleyServer(configuration: configuration, mode: .zoneFront(hooks, locate: locate),
                               frontRoutes: WebZone.routes(settings: context.configuration.web) { [context] store in
                                   SupervisorConsole(paths: context.paths, configuration: context.configuration, store: store,
                                                     logger: context.logger)
                               }, logger: context.logger).run()
    }
}

/// Writes DATA/zone/public-url once the web server listens, so operators, tests and
/// `parley chaos` find it even when the port was chosen by the system.
struct PublicURLFile: Service {
    let context: NodeContext
    let handle: ServerHandle

    func run() async throws {
        let port = try await handle.boundPort()
        let url = "\(context.configuration.clientScheme)://\(context.configuration.host):\(port)"
        let path = context.paths.publicURL
        try Data((url + "\n").utf8).write(to: URL(fileURLWithPath: path + ".tmp"))
        _ = rename(path + ".tmp", path)
        context.logger.notice("the zone's public address is \(url)")
        try? await gracefulShutdown()
    }
}

/// The services process: the log service (joins and leaves into the store) and the
/// license service (the zone's participant limit), whichever of them its entry runs.
/// Both are reached through the manager, which passes messages on by service.
actor ServicesNode: Service, ZoneAgentDelegate {
    private let context: NodeContext
    private var agent: ZoneAgent?
    private var store: (any ZoneStore)?
    private var license: LicenseBook

    init(context: NodeContext) {
        self.context = context
        license = LicenseBook(zoneLimit: context.configuration.license.maxParticipants)
    }

    private var runs: [ZoneService] { context.spec?.runs ?? ZoneService.allCases }

    func run() async throws {
        try await context.configuration.storeLocation().withStore(dataDirectory: context.paths.data, logger: context.logger) { store in
            try await self.run(store: store)
        }
    }

    private func run(store: any ZoneStore) async throws {
        self.store = store
        if runs.contains(.license) {
            // Who is present survives a restart of this process: replay the attendance log.
            let log = try await store.attendance(nil)
            license = LicenseBook(zoneLimit: context.configuration.license.maxParticipants, replaying: log)
            context.logger.info("license service ready", metadata: [
                "present": "\(license.present.count)", "limit": "\(license.zoneLimit)",
            ])
        }
        let credentials = try ZoneCredentials.load(paths: context.paths, configuration: context.configuration)
        let agent = ZoneAgent(name: context.name, role: .services, address: nil, store: store, credentials: credentials,
                              heartbeatMs: context.configuration.heartbeat.intervalMs, supervisor: context.link,
                              delegate: self, logger: context.logger)
        self.agent = agent
        context.readyWith(store: store) { agent }
        try await agent.run()
    }

    nonisolated func holding() async -> [HeldMeeting] { [] }
    nonisolated func load() async -> ServerLoad { ServerLoad() }

    func received(_ message: ZoneMessage) async {
        switch message {
        case .attendance(let record):
            // Counted before the store write: an admission behind this record, handled
            // while the write is awaited, must see the seat it frees.
            if runs.contains(.license) { license.record(record) }
            guard runs.contains(.log) else { break }
            do {
                try await store?.recordAttendance([record])
            } catch {
                context.logger.error("cannot record attendance", metadata: ["record": "\(record)", "error": "\(error)"])
            }
        case .admit(let request, let meeting, let participant) where runs.contains(.license):
            let decision = license.admit(meeting, participant)
            if case .refuse(let why) = decision {
                context.logger.notice("join refused: zone license full", metadata: ["meeting": "\(meeting)", "participant": "\(participant)", "reason": "\(why)"])
            }
            let (ok, reason) = switch decision {
            case .admit: (true, "")
            case .refuse(let why): (false, why)
            }
            await agent?.send(.admitted(request: request, ok: ok, reason: reason))
        default:
            break
        }
    }
}

/// A process that holds no meetings and takes no orders.
struct Bystander: ZoneAgentDelegate {
    func holding() async -> [HeldMeeting] { [] }
    func load() async -> ServerLoad { ServerLoad() }
    func received(_ message: ZoneMessage) async {}
}
