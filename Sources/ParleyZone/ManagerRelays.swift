import ParleyCore

/// The manager's relays: the questions it passes on and the answers it owes for them.
///
/// Three kinds of waiter: a locate (relayed to ``Placement``), an admission (relayed to the
/// license service) and an operator's drain (answered when ``Placement`` reports the server
/// drained). Every waiter is answered exactly once or dropped with the link it came in on;
/// none outlives the manager's lead: ``steppedDown(reason:)`` answers them all.
///
/// Pure: the manager's links feed it questions, answers and closed links, and send the
/// messages it returns. Answers go back on the link the question came in on, under the
/// asker's own request id. A link, not a process name, because a process that reconnects
/// numbers its requests from 1 again: an answer meant for its previous link must not
/// resolve a new request that happens to have the same id.
public struct ManagerRelays: Sendable {
    /// One link to the manager, numbered by the manager as it opens (a registered process's
    /// or an operator's, which does not register). Never reused.
    public struct LinkID: Hashable, Comparable, Sendable, CustomStringConvertible {
        public let rawValue: UInt64
        public init(_ rawValue: UInt64) { self.rawValue = rawValue }
        public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
        public var description: String { "link#\(rawValue)" }
    }

    /// What to send, on which link. A link that has closed since has nobody left to tell.
    public enum Action: Equatable, Sendable {
        case send(ZoneMessage, on: LinkID)
        /// Admit the join asked under `request` without the license service's word (it is
        /// away, or the manager stepped down before it answered), and say so in the log:
        /// send `.admitted(request:, ok: true, reason:)` on `link`.
        case admitUnlicensed(request: UInt64, on: LinkID, reason: String)
    }

    /// Who asked, on which link, under which of its own request ids.
    private struct Asker: Equatable, Sendable {
        var link: LinkID
        var request: UInt64
    }

    private struct Admission: Sendable {
        var asker: Asker
        /// The license service's link the question was passed on to.
        var service: LinkID
    }

    /// Locates in flight, by the id Placement answers under.
    private var locates: [LocateRequest: Asker] = [:]
    /// Admissions in flight, by the id sent to the license service.
    private var admissions: [UInt64: Admission] = [:]
    /// Operators' links waiting for each server's drain, in the order they asked.
    private var drains: [NodeName: [LinkID]] = [:]
    /// The ids this manager gives the questions it passes on. They only grow, across terms
    /// too, so a late answer to a question from before a step-down matches nothing.
    private var lastRequest: UInt64 = 0

    public init() {}

    /// How many waiters are outstanding (locates, admissions and drains).
    public var waiting: Int { locates.count + admissions.count + drains.values.reduce(0) { $0 + $1.count } }

    // MARK: Locates

    /// A process asks where a meeting's clients should connect. Returns the id to pass to
    /// ``Placement/locate(_:request:nowMs:)``; its answer comes back through ``located(_:_:)``.
    public mutating func locateAsked(by link: LinkID, request: UInt64) -> LocateRequest {
        lastRequest += 1
        let key = LocateRequest(lastRequest)
        locates[key] = Asker(link: link, request: request)
        return key
    }

    /// Placement answered a locate. Nothing to send if its asker's link has closed since.
    public mutating func located(_ key: LocateRequest, _ answer: Placement.LocateAnswer) -> [Action] {
        guard let asker = locates.removeValue(forKey: key) else { return [] }
        return [.send(.located(request: asker.request, answer: LocateResult(answer)), on: asker.link)]
    }

    // MARK: Admissions

    /// A host asks whether a participant may join. Passed on to the license service at
    /// `licenseService`; with none registered the join is admitted at once, because
    /// meetings must not stop while the license service is away (the caller logs it).
    public mutating func admitAsked(by link: LinkID, request: UInt64, meeting: MeetingID, participant: ParticipantID,
                                    licenseService: LinkID?) -> [Action] {
        guard let licenseService else {
            return [.admitUnlicensed(request: request, on: link, reason: "no license service reachable")]
        }
        lastRequest += 1
        admissions[lastRequest] = Admission(asker: Asker(link: link, request: request), service: licenseService)
        return [.send(.admit(request: lastRequest, meeting: meeting, participant: participant), on: licenseService)]
    }

    /// The license service answered `request` (an id this manager gave).
    public mutating func admitted(_ request: UInt64, ok: Bool, reason: String) -> [Action] {
        guard let admission = admissions.removeValue(forKey: request) else { return [] }
        return [.send(.admitted(request: admission.asker.request, ok: ok, reason: reason), on: admission.asker.link)]
    }

    // MARK: Drains

    /// An operator on `link` waits for `server`'s drain to finish.
    public mutating func drainAsked(_ server: NodeName, by link: LinkID) {
        drains[server, default: []].append(link)
    }

    /// Placement reports nothing left on `server`: every operator waiting for it is told.
    public mutating func drained(_ server: NodeName) -> [Action] {
        (drains.removeValue(forKey: server) ?? []).map {
            .send(.drained(server: server, ok: true, detail: "every meeting moved off \(server)"), on: $0)
        }
    }

    // MARK: Endings

    /// `link` closed. Its own questions are dropped (nobody is left to answer). Admissions
    /// that were passed on to it, as the license service's link, are admitted now rather
    /// than left to the host's timeout: the same policy, sooner (see ``steppedDown(reason:)``).
    public mutating func linkClosed(_ link: LinkID) -> [Action] {
        locates = locates.filter { $0.value.link != link }
        for (server, waiters) in drains {
            let left = waiters.filter { $0 != link }
            drains[server] = left.isEmpty ? nil : left
        }
        var actions: [Action] = []
        for (id, admission) in admissions.sorted(by: { $0.key < $1.key }) {
            if admission.asker.link == link {
                admissions[id] = nil
            } else if admission.service == link {
                admissions[id] = nil
                actions.append(.admitUnlicensed(request: admission.asker.request, on: admission.asker.link,
                                                reason: "the license service's link closed before it answered"))
            }
        }
        return actions
    }

    /// This manager no longer leads: every waiter gets a definite answer now, instead of
    /// waiting out its own deadline for an answer that will never come.
    ///
    /// - A locate is told the meeting is unavailable for now; its asker retries, and finds
    ///   the next leader through the lease.
    /// - An admission is admitted. This follows the policy for a license service that is
    ///   away: a meeting must not stop because a zone service cannot answer, and refusing
    ///   a participant the license would have admitted is worse than admitting one beyond
    ///   the limit for the moment of a failover. The join is still recorded in the
    ///   attendance log, so the license service counts it once it hears of it.
    /// - A drain is reported not finished (`ok: false`): the next leader starts with a
    ///   placement of its own, which knows nothing of the drain, so the operator must ask
    ///   again.
    public mutating func steppedDown(reason: StepDownReason) -> [Action] {
        var actions: [Action] = locates.sorted(by: { $0.key < $1.key }).map { _, asker in
            .send(.located(request: asker.request,
                           answer: LocateResult(.unavailable(.managerSteppedDown(reason)))), on: asker.link)
        }
        actions += admissions.sorted(by: { $0.key < $1.key }).map { _, admission in
            .admitUnlicensed(request: admission.asker.request, on: admission.asker.link,
                             reason: "the manager stepped down (\(reason)) before the license service answered")
        }
        for (server, waiters) in drains.sorted(by: { $0.key < $1.key }) {
            let detail = "the manager stepped down: \(reason); \(server) may still hold meetings: run the drain again once a manager leads"
            actions += waiters.map { .send(.drained(server: server, ok: false, detail: detail), on: $0) }
        }
        locates.removeAll()
        admissions.removeAll()
        drains.removeAll()
        return actions
    }
}
