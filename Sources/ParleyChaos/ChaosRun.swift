import Foundation
import Logging
import ParleyClient
import ParleyCore
import ParleyProtocol

/// What a chaos run does. Every loop in the run is bounded by these numbers: it stops by itself.
public struct ChaosConfiguration: Sendable {
    /// How long clients send ops and faults are injected.
    public var durationSeconds = 60
    public var meetings = 4
    /// Per meeting; they alternate between WebSocket and long-polling.
    public var clientsPerMeeting = 3
    public var opsPerSecondPerClient = 5.0
    /// The mean time between faults; the actual waits are exponential around it.
    public var faultIntervalMs = 3_000
    public var faultKinds: [FaultKind] = FaultKind.allCases
    /// How long a paused process stays stopped before SIGCONT.
    public var pauseMs: ClosedRange<Int> = 200...2_000
    /// At most this many faults; by default three times as many as the mean interval gives.
    public var maxFaults: Int?
    /// Seeds fault timing, kinds, victims and each client's send pacing.
    public var seed: UInt64 = 1
    /// Ops a client may have waiting for an answer; a send that would exceed it is skipped.
    public var maxInFlightPerClient = 64
    /// After the sending stops: how long unanswered ops and lagging clients get before the
    /// clients are closed and whatever is still unanswered counts as unknown.
    public var settleSeconds = 30
    /// For the run's own messages and the clients'.
    public var logger = Logger(label: "parley.chaos")

    public init() {}

    public var faultLimit: Int { maxFaults ?? (3 * durationSeconds * 1_000 / faultIntervalMs + 1) }

    /// Everything wrong with these settings, for one error message.
    public func problems() -> [String] {
        var problems: [String] = []
        if durationSeconds < 1 || durationSeconds > 86_400 { problems.append("the duration must be 1 s to 1 day") }
        if meetings < 1 || meetings > 1_000 { problems.append("meetings must be 1 to 1000") }
        if clientsPerMeeting < 1 || clientsPerMeeting > 100 { problems.append("clients per meeting must be 1 to 100") }
        if !(opsPerSecondPerClient > 0 && opsPerSecondPerClient <= 1_000) { problems.append("the rate must be above 0 and at most 1000 ops/s") }
        if faultIntervalMs < 10 { problems.append("the fault interval must be at least 10 ms") }
        if faultKinds.isEmpty { problems.append("at least one kind of fault is needed") }
        if pauseMs.lowerBound < 1 || pauseMs.upperBound > 60_000 { problems.append("pauses must be 1 ms to 60 s") }
        if let maxFaults, maxFaults < 0 { problems.append("the fault limit cannot be negative") }
        if maxInFlightPerClient < 1 { problems.append("at least one op must be allowed in flight") }
        if settleSeconds < 1 { problems.append("the settle time must be at least 1 s") }
        return problems
    }
}

/// A chaos run: start the target, open meetings with clients on both transports, have every
/// client send numbered ops while faults hit the target's processes, let everything settle,
/// then check every meeting's histories and measure recovery.
public enum ChaosRun {
    public static func run(_ configuration: ChaosConfiguration, against target: any FaultTarget) async throws -> ChaosReport {
        let problems = configuration.problems()
        guard problems.isEmpty else { throw ChaosError.setup(problems.joined(separator: "; ")) }
        do {
            let report = try await drive(configuration, target)
            await target.stop()
            return report
        } catch {
            await target.stop()
            throw error
        }
    }

    private static func drive(_ configuration: ChaosConfiguration, _ target: any FaultTarget) async throws -> ChaosReport {
        let logger = configuration.logger
        let watch = Stopwatch()
        let server = try await target.start()
        logger.info("target up", metadata: ["target": "\(target.name)", "url": "\(server)"])
        let participants = try await openMeetings(configuration, server: server)
        let faults = FaultLog()

        try await withThrowingTaskGroup(of: Void.self) { recorders in
            for participant in participants {
                recorders.addTask {
                    for await event in participant.client.events { await participant.recorder.record(event, atMs: watch.ms()) }
                }
            }
            do {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for participant in participants { group.addTask { try await participant.client.connect() } }
                    try await group.waitForAll()
                }
            } catch {
                await closeAll(participants)
                throw ChaosError.setup("a client could not join its meeting: \(error)")
            }
            for participant in participants { await participant.recorder.joined(as: await participant.client.participantID) }
            logger.info("clients joined", metadata: ["clients": "\(participants.count)"])

            let sendDeadline = ContinuousClock.now + .seconds(configuration.durationSeconds)
            let settleDeadline = sendDeadline + .seconds(configuration.settleSeconds)
            await withTaskGroup(of: Bool.self) { work in
                work.addTask {
                    await injectFaults(configuration, into: target, until: sendDeadline, watch: watch, log: faults)
                    return false
                }
                for (index, participant) in participants.enumerated() {
                    work.addTask {
                        await sendOps(participant, configuration: configuration, index: index, until: sendDeadline, watch: watch)
                        return false
                    }
                }
                // Ops still unanswered when the settle time is over would wait forever for a
                // system that does not recover: closing the clients answers them (unknown).
                work.addTask {
                    do { try await Task.sleep(until: settleDeadline) } catch { return true }
                    logger.warning("settle time over with ops still unanswered; closing the clients")
                    await closeAll(participants)
                    return true
                }
                var running = participants.count + 1
                while let isCloser = await work.next() {
                    if !isCloser { running -= 1 }
                    if running == 0 { work.cancelAll() }
                }
            }
            logger.info("load over; every op answered or given up on")
            await converge(participants, until: max(settleDeadline, ContinuousClock.now + .seconds(5)), logger: logger)
            logger.info("closing the clients")
            await closeAll(participants)
            logger.info("clients closed")
            try await recorders.waitForAll()
        }
        return await report(configuration, target: target, participants: participants, faults: await faults.records,
                            elapsedMs: watch.ms())
    }

    // MARK: - Meetings and clients

    struct Participant: Sendable {
        var meeting: MeetingID
        var clientIndex: Int
        var transport: Transport
        var client: MeetingClient
        var recorder: ClientRecorder
        var label: String { "c\(clientIndex)" }
    }

    private static func openMeetings(_ configuration: ChaosConfiguration, server: URL) async throws -> [Participant] {
        var participants: [Participant] = []
        for meetingIndex in 0..<configuration.meetings {
            let created = try await retrying("create a meeting") {
                try await ParleyHTTP.createMeeting(server: server, title: "chaos \(meetingIndex + 1)")
            }
            for clientIndex in 0..<configuration.clientsPerMeeting {
                let token = clientIndex == 0 ? created.hostToken : try await retrying("issue a token") {
                    try await ParleyHTTP.issueToken(server: server, meeting: created.meeting.id, name: "c\(clientIndex)").token
                }
                // Alternate transports across the whole run, so each meeting mixes them.
                let transport: Transport = (meetingIndex * configuration.clientsPerMeeting + clientIndex) % 2 == 0
                    ? .webSocket : .longPolling
                let policy = ConnectionPolicy(transport: transport == .webSocket ? .webSocket : .longPolling)
                let client = try MeetingClient(server: server, token: token,
                                          options: .init(policy: policy, logger: configuration.logger))
                participants.append(Participant(meeting: created.meeting.id, clientIndex: clientIndex, transport: transport,
                                                client: client, recorder: ClientRecorder(maxInFlight: configuration.maxInFlightPerClient)))
            }
        }
        return participants
    }

    /// Closes every client at once: each may take a moment to end its connections.
    private static func closeAll(_ participants: [Participant]) async {
        await withTaskGroup(of: Void.self) { group in
            for participant in participants { group.addTask { await participant.client.close() } }
        }
    }

    /// Setup calls may meet a zone still placing its first meetings; retry for a few seconds.
    private static func retrying<T: Sendable>(_ what: String, _ body: () async throws -> T) async throws -> T {
        var lastError: (any Error)?
        for _ in 1...20 {
            do { return try await body() } catch {
                lastError = error
                try await Task.sleep(for: .milliseconds(250))
            }
        }
        throw ChaosError.setup("could not \(what) after 20 attempts: \(lastError.map { "\($0)" } ?? "no error")")
    }

    // MARK: - Load

    /// Sends `"c<client>-<n>"` chat ops at the configured rate (with ±50% seeded jitter)
    /// until the deadline, without waiting for answers, then waits for every answer (the
    /// settle-time closer ends the wait if the system never answers).
    private static func sendOps(_ participant: Participant, configuration: ChaosConfiguration, index: Int,
                                until deadline: ContinuousClock.Instant, watch: Stopwatch) async {
        var rng = SplitMix64(seed: configuration.seed &+ 0x5EED_0000 &+ UInt64(index))
        let meanMs = 1_000 / configuration.opsPerSecondPerClient
        await withTaskGroup(of: Void.self) { inFlight in
            var next = ContinuousClock.now
            while true {
                let jitter = 0.5 + Double(rng.next() >> 11) / Double(UInt64(1) << 53)
                next = next + .microseconds(Int64(meanMs * jitter * 1_000))
                guard next < deadline else { break }
                try? await Task.sleep(until: next)
                guard let text = await participant.recorder.begin(label: participant.label, atMs: watch.ms()) else { continue }
                inFlight.addTask {
                    let fate: OpFate
                    do {
                        let ack = try await participant.client.send(.chat(text: text))
                        fate = .acked(opID: ack.id, seq: ack.seq, epoch: ack.epoch)
                    } catch ParleyError.rejected(let rejection) {
                        fate = .rejected(reason: rejection.description)
                    } catch ParleyError.invalidOp(let invalid) {
                        // The server could not read it: dropped, not in the log.
                        fate = .rejected(reason: "invalid: \(invalid)")
                    } catch {
                        fate = .unknown(reason: "\(error)")
                    }
                    await participant.recorder.finish(text, fate, atMs: watch.ms())
                }
            }
        }
    }

    // MARK: - Faults

    private static func injectFaults(_ configuration: ChaosConfiguration, into target: any FaultTarget,
                                     until deadline: ContinuousClock.Instant, watch: Stopwatch, log: FaultLog) async {
        let logger = configuration.logger
        var planner = FaultPlanner(seed: configuration.seed, kinds: configuration.faultKinds,
                                   meanIntervalMs: configuration.faultIntervalMs, pauseMs: configuration.pauseMs)
        var injected = 0
        var next = ContinuousClock.now + .milliseconds(planner.nextDelayMs())
        while injected < configuration.faultLimit, next < deadline {
            try? await Task.sleep(until: next)
            let victims: [Victim]
            do { victims = try await target.victims() } catch {
                logger.warning("cannot list the processes to hurt", metadata: ["error": "\(error)"])
                victims = []
            }
            guard let fault = planner.choose(from: victims) else {
                // Still recovering from the last fault: faults come one at a time.
                next = ContinuousClock.now + .milliseconds(100)
                continue
            }
            injected += 1
            var record = FaultRecord(atMs: watch.ms(), kind: fault.kind, target: fault.victim.name, role: fault.victim.role,
                                     pauseMs: fault.pauseMs)
            do {
                switch fault.kind {
                case .kill:
                    try await target.kill(fault.victim)
                case .restart:
                    try await target.restart(fault.victim)
                case .pause:
                    try await target.pause(fault.victim)
                    // Bounded, and resumed however the run goes.
                    try? await Task.sleep(for: .milliseconds(fault.pauseMs ?? 0))
                    try await target.resume(fault.victim)
                case .machineKill:
                    try await target.killMachine(fault.victim)
                    // The machine reboots after a bounded downtime (the pause bounds).
                    try? await Task.sleep(for: .milliseconds(configuration.pauseMs.upperBound))
                    try await target.restoreMachine(fault.victim)
                case .partition:
                    try await target.isolateMachine(fault.victim)
                    // Cut off for longer than the heartbeat timeout, so its meetings move.
                    try? await Task.sleep(for: .milliseconds(configuration.pauseMs.upperBound))
                    try await target.healMachine(fault.victim)
                }
            } catch {
                record.error = "\(error)"
            }
            logger.notice("fault", metadata: ["kind": "\(fault.kind.rawValue)", "target": "\(fault.victim.name)",
                                              "at_ms": "\(record.atMs)", "error": "\(record.error ?? "none")"])
            await log.append(record)
            next = ContinuousClock.now + .milliseconds(planner.nextDelayMs())
        }
    }

    // MARK: - Settling and the report

    /// Waits until every client has received its meeting's last acknowledged op, or the deadline.
    private static func converge(_ participants: [Participant], until deadline: ContinuousClock.Instant, logger: Logger) async {
        while ContinuousClock.now < deadline {
            var required: [MeetingID: Seq] = [:]
            var reached: [MeetingID: Seq] = [:]
            for participant in participants {
                let recorder = participant.recorder
                required[participant.meeting] = max(required[participant.meeting] ?? 0, await recorder.maxAckedSeq)
                reached[participant.meeting] = min(reached[participant.meeting] ?? .max, await recorder.lastSeq)
            }
            if required.allSatisfy({ meeting, seq in (reached[meeting] ?? 0) >= seq }) { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
        logger.warning("some clients did not receive every acknowledged op before the settle time ended")
    }

    private static func report(_ configuration: ChaosConfiguration, target: any FaultTarget, participants: [Participant],
                               faults: [FaultRecord], elapsedMs: Int64) async -> ChaosReport {
        var views: [MeetingID: [ClientView]] = [:]
        var meetingOrder: [MeetingID] = []
        var timelines: [ClientTimeline] = []
        var timings: [OpTiming] = []
        var ops = ChaosReport.Ops(sent: 0, acked: 0, rejected: 0, unknown: 0)
        var snapshotResumes = 0
        var transports: [String: Int] = [:]
        for participant in participants {
            let recorded = await participant.recorder.snapshot()
            let meeting = participant.meeting
            if views[meeting] == nil { meetingOrder.append(meeting) }
            views[meeting, default: []].append(ClientView(client: participant.label, participant: recorded.participant,
                                                          segments: recorded.segments, sent: recorded.sent))
            timelines.append(ClientTimeline(client: participant.label, meeting: meeting.rawValue, changes: recorded.changes))
            snapshotResumes += max(0, recorded.segments.count - 1)
            transports[participant.transport.rawValue, default: 0] += 1
            for op in recorded.ops {
                ops.sent += 1
                var ackedAtMs: Int64?
                switch op.fate {
                case .acked: ops.acked += 1; ackedAtMs = op.finishedAtMs
                case .rejected: ops.rejected += 1
                case .unknown, nil: ops.unknown += 1
                }
                timings.append(OpTiming(meeting: meeting.rawValue, sentAtMs: op.sentAtMs, ackedAtMs: ackedAtMs))
            }
        }
        let histories = meetingOrder.map { MeetingHistory(meeting: $0.rawValue, clients: views[$0]!) }
        let anomalies = ChaosCheck.check(histories)
        let injected = faults.filter { $0.error == nil }
        let recovery = RecoveryMeasurement.measure(faults: injected, clients: timelines, ops: timings)
        return ChaosReport(
            run: .init(target: target.name, seed: configuration.seed, durationSeconds: configuration.durationSeconds,
                       meetings: configuration.meetings, clientsPerMeeting: configuration.clientsPerMeeting,
                       opsPerSecondPerClient: configuration.opsPerSecondPerClient,
                       faultIntervalMs: configuration.faultIntervalMs, transports: transports, elapsedMs: elapsedMs, data: nil),
            faults: .init(injected: injected.count, failed: faults.count - injected.count,
                          byKind: Dictionary(injected.map { ($0.kind.rawValue, 1) }, uniquingKeysWith: +),
                          byTarget: Dictionary(injected.map { ($0.target, 1) }, uniquingKeysWith: +),
                          list: faults),
            ops: ops,
            anomalies: .init(count: anomalies.count,
                             list: anomalies.map { .init(meeting: $0.meeting, code: $0.code, description: $0.description) }),
            recovery: .init(acceptingOps: LatencySummary(samplesMs: recovery.acceptingOpsMs),
                            allResumed: LatencySummary(samplesMs: recovery.allResumedMs),
                            neverAccepting: recovery.neverAccepting, neverResumed: recovery.neverResumed,
                            snapshotResumes: snapshotResumes, unattributedLosses: recovery.unattributedLosses,
                            byFault: recovery.byFault.mapValues {
                                ChaosReport.ByFault(acceptingOps: LatencySummary(samplesMs: $0.acceptingOpsMs),
                                                    allResumed: LatencySummary(samplesMs: $0.allResumedMs),
                                                    acceptingOpsSamplesMs: $0.acceptingOpsMs,
                                                    allResumedSamplesMs: $0.allResumedMs)
                            }),
            notes: await target.notes())
    }
}

/// Milliseconds since the run started, on a monotonic clock.
struct Stopwatch: Sendable {
    let origin = ContinuousClock.now
    func ms() -> Int64 {
        (ContinuousClock.now - origin).wholeMilliseconds
    }
}

actor FaultLog {
    private(set) var records: [FaultRecord] = []
    func append(_ record: FaultRecord) { records.append(record) }
}

/// Everything one client saw and sent, as it happened.
actor ClientRecorder {
    struct Op: Sendable {
        var text: String
        var sentAtMs: Int64
        var finishedAtMs: Int64?
        var fate: OpFate?
    }

    struct Recorded: Sendable {
        var participant: ParticipantID?
        var segments: [[LogEntry]]
        var changes: [ClientTimeline.Change]
        var ops: [Op]
        var sent: [SentOp]
    }

    private let maxInFlight: Int
    private var participant: ParticipantID?
    private var segments: [[LogEntry]] = []
    private var changes: [ClientTimeline.Change] = []
    private var ops: [Op] = []
    private var index: [String: Int] = [:]
    private var inFlight = 0
    private(set) var lastSeq: Seq = 0
    private(set) var maxAckedSeq: Seq = 0

    init(maxInFlight: Int) { self.maxInFlight = maxInFlight }

    func joined(as participant: ParticipantID?) { self.participant = participant }

    func record(_ event: ClientEvent, atMs: Int64) {
        switch event {
        case .welcome(.snapshot), .dropped:
            // The local copy was replaced, or this reader fell behind: a new segment, which
            // may start past a gap.
            segments.append([])
        case .welcome(.replay):
            if segments.isEmpty { segments.append([]) }
        case .entry(let entry):
            if segments.isEmpty { segments.append([]) }
            segments[segments.count - 1].append(entry)
            lastSeq = entry.seq
        case .connection(.reconnecting):
            changes.append(.init(atMs: atMs, .lost))
        case .connection(.resumed):
            changes.append(.init(atMs: atMs, .resumed))
        case .connection, .signal, .error:
            break
        }
    }

    /// Names the next op, or nil if too many are waiting for answers.
    func begin(label: String, atMs: Int64) -> String? {
        guard inFlight < maxInFlight else { return nil }
        inFlight += 1
        let text = "\(label)-\(ops.count + 1)"
        index[text] = ops.count
        ops.append(Op(text: text, sentAtMs: atMs))
        return text
    }

    func finish(_ text: String, _ fate: OpFate, atMs: Int64) {
        guard let position = index[text] else { return }
        inFlight -= 1
        ops[position].fate = fate
        ops[position].finishedAtMs = atMs
        if case .acked(_, let seq, _) = fate { maxAckedSeq = max(maxAckedSeq, seq) }
    }

    func snapshot() -> Recorded {
        Recorded(participant: participant, segments: segments, changes: changes, ops: ops,
                 sent: ops.map { SentOp(text: $0.text, fate: $0.fate ?? .unknown(reason: "no answer recorded")) })
    }
}
