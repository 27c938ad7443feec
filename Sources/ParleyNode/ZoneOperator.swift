import Foundation
import Logging
import ParleyStore
import ParleyZone

/// What an operator's command asks of the zone's manager directly: `parley ctl drain`.
/// It finds the manager the way every process does (the lease in the store) and speaks
/// over an authenticated zone link, so it must run as the zone's user (it reads the secret).
public enum ZoneOperator {
    public static let name: NodeName = "ctl"

    /// Moves every meeting off `server` and returns once none is left there.
    /// - Throws: ``ZoneOperatorError`` with what to do about it.
    public static func drain(_ server: NodeName, paths: ZonePaths, timeout: Duration,
                             logger: Logger = Logger(label: "parley.ctl")) async throws -> String {
        let zone: ZoneConfiguration
        do {
            zone = try ZoneConfiguration.resolved(Data(contentsOf: URL(fileURLWithPath: paths.resolvedConfiguration)),
                                                  name: paths.resolvedConfiguration)
        } catch {
            throw ZoneOperatorError("cannot read the zone's configuration \(paths.resolvedConfiguration) (\(error)); is the zone running here?")
        }
        let credentials: ZoneCredentials
        do {
            credentials = try ZoneCredentials.load(paths: paths, configuration: zone)
        } catch {
            throw ZoneOperatorError("cannot read the zone's credentials (\(error)); run this as the zone's user")
        }
        let lease = try await zone.storeLocation().withStore(dataDirectory: paths.data, logger: logger) { store in
            try await store.lease(ZoneAgent.managerLease)
        }
        guard let lease, lease.isLive else {
            throw ZoneOperatorError("no manager leads the zone in \(paths.data) right now; is the zone running?")
        }
        let answer = AnswerBox()
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await ZoneLink.connect(to: lease.address, as: name, peer: NodeName(lease.holder), credentials: credentials,
                                               nowMs: wallClockMs(), logger: logger) { link in
                        try await link.send(.drain(server: server))
                        for try await message in link.messages() {
                            if case .drained(let drained, let ok, let detail) = message, drained == server {
                                answer.set(ok ? .success(detail) : .failure(ZoneOperatorError(detail)))
                                return
                            }
                        }
                    }
                }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    throw ZoneOperatorError("the drain of \(server) did not finish within \(timeout); see the manager's log")
                }
                try await group.next()
                group.cancelAll()
            }
        } catch let error as ZoneOperatorError {
            throw error
        } catch {
            throw ZoneOperatorError("cannot reach the manager \(lease.holder) at \(lease.address): \(error)")
        }
        guard let result = answer.value else {
            throw ZoneOperatorError("the manager closed the link before the drain of \(server) finished (it may have changed); retry")
        }
        return try result.get()
    }
}

public struct ZoneOperatorError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// The one answer the link body produces, read after it returns.
private final class AnswerBox: @unchecked Sendable {
    // Set once by the link body before it returns; read after the group has finished.
    private(set) var value: Result<String, ZoneOperatorError>?
    func set(_ value: Result<String, ZoneOperatorError>) { self.value = value }
}
