import ParleyCore
@testable import ParleyStore
import Testing

/// A `Store` that records every `append` it is given and holds the first one until the test
/// opens the gate, so the test decides exactly what queues up behind it.
final class GatedStore: Store {
    let base: SQLiteStore
    let gate = Gate()
    let appends = Recorder()

    init(_ base: SQLiteStore) { self.base = base }

    func createMeeting(_ record: MeetingRecord) async throws(StoreError) { try await base.createMeeting(record) }
    func meeting(_ id: MeetingID) async throws(StoreError) -> MeetingRecord? { try await base.meeting(id) }
    func meetings() async throws(StoreError) -> [MeetingRecord] { try await base.meetings() }
    func advanceEpoch(_ meeting: MeetingID, to epoch: Epoch) async throws(StoreError) {
        try await base.advanceEpoch(meeting, to: epoch)
    }
    func claimNextEpoch(_ meeting: MeetingID) async throws(StoreError) -> Epoch { try await base.claimNextEpoch(meeting) }
    func recordCrash(_ meeting: MeetingID, participant: ParticipantID, op: OpID, at: Millis) async throws(StoreError) -> Int {
        try await base.recordCrash(meeting, participant: participant, op: op, at: at)
    }
    func crashes(_ meeting: MeetingID) async throws(StoreError) -> [OpCrashes] { try await base.crashes(meeting) }
    func recordAttendance(_ records: [Attendance]) async throws(StoreError) { try await base.recordAttendance(records) }
    func attendance(_ meeting: MeetingID?) async throws(StoreError) -> [Attendance] { try await base.attendance(meeting) }
    func publishProcesses(machine: String, _ processes: [PublishedProcess]) async throws(StoreError) {
        try await base.publishProcesses(machine: machine, processes)
    }
    func publishedProcesses() async throws(StoreError) -> [PublishedProcess] { try await base.publishedProcesses() }
    func lease(_ name: String) async throws(StoreError) -> StoredLease? { try await base.lease(name) }
    func replaceLease(_ name: String, expected: LeaseVersion?, with new: LeaseClaim) async throws(StoreError) -> Bool {
        try await base.replaceLease(name, expected: expected, with: new)
    }
    func append(_ batch: [MeetingID: [LogEntry]]) async throws(StoreError) {
        if await appends.record(batch.mapValues { $0.map(\.seq) }) == 1 { await gate.wait() }
        try await base.append(batch)
    }
    func writeSnapshot(_ meeting: MeetingID, _ snapshot: Snapshot) async throws(StoreError) {
        try await base.writeSnapshot(meeting, snapshot)
    }
    func recover(_ meeting: MeetingID, historyLimit: Int) async throws(StoreError) -> RecoveredMeeting {
        try await base.recover(meeting, historyLimit: historyLimit)
    }
    func recover(_ meeting: MeetingID, after seq: Seq) async throws(StoreError) -> RecoveredMeeting {
        try await base.recover(meeting, after: seq)
    }
    func peek(_ meeting: MeetingID) async throws(StoreError) -> RecoveredMeeting { try await base.peek(meeting) }
}

actor Gate {
    private var isOpen = false
    private var waiters: [CheckedContinuation<Void, Never>] = []
    func wait() async {
        if isOpen { return }
        await withCheckedContinuation { waiters.append($0) }
    }
    func open() {
        isOpen = true
        waiters.forEach { $0.resume() }
        waiters = []
    }
}

actor Recorder {
    private(set) var batches: [[MeetingID: [Seq]]] = []
    /// Returns how many batches were recorded, this one included.
    func record(_ batch: [MeetingID: [Seq]]) -> Int {
        batches.append(batch)
        return batches.count
    }
}

/// Waits (up to 10 s) until `condition` holds.
func eventually(_ condition: () async -> Bool) async throws {
    for _ in 0..<10_000 {
        if await condition() { return }
        try await Task.sleep(for: .milliseconds(1))
    }
    Issue.record("condition never became true")
}

@Suite struct GroupCommitLogTests {
    @Test func concurrentCommitsAcrossMeetingsAllLandInOrderWithFewerBatchesThanCalls() async throws {
        try await withStore { store, _ in
            let group = GroupCommitLog(store: store)
            let meetings = (1...8).map { record(MeetingID("m\($0)")) }
            var lives: [LiveMeeting] = []
            for meeting in meetings {
                try await store.createMeeting(meeting)
                var live = LiveMeeting(meeting)
                live.play(30)
                lives.append(live)
            }
            // One task per meeting, committing its entries one call at a time (a host awaits
            // each commit's durability in order); the meetings run concurrently.
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for live in lives {
                    tasks.addTask {
                        for entry in live.entries { try await group.commit(live.log.meeting.id, [entry]) }
                    }
                }
                try await tasks.waitForAll()
            }
            for live in lives {
                let recovered = try await store.recover(live.log.meeting.id, historyLimit: 0)
                #expect(recovered.entries == live.entries)
            }
            let stats = await group.stats
            #expect(stats.commits == 240)
            #expect(stats.entries == 240)
            #expect(stats.batches < 240)
            #expect(stats.batches >= 30)
        }
    }

    @Test func queuedCommitsForOneMeetingAreMergedInCallOrder() async throws {
        try await withStore { base, _ in
            let store = GatedStore(base)
            let group = GroupCommitLog(store: store)
            try await store.createMeeting(standup)
            var live = LiveMeeting(standup)
            let entries = live.play(7)
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.commit(standup.id, [entries[0]]) }
                try await eventually { await store.appends.batches.count == 1 }
                // Each commit is queued before the next one is made, so call order is known.
                for (index, chunk) in [entries[1..<3], entries[3..<4], entries[4..<7]].enumerated() {
                    tasks.addTask { try await group.commit(standup.id, Array(chunk)) }
                    try await eventually { await group.queuedCount == index + 1 }
                }
                await store.gate.open()
                try await tasks.waitForAll()
            }
            #expect(await store.appends.batches == [[standup.id: [1]], [standup.id: [2, 3, 4, 5, 6, 7]]])
            #expect(try await base.recover(standup.id, historyLimit: 0).entries == entries)
            #expect(await group.stats == GroupCommitLog.Stats(batches: 2, entries: 7, commits: 4))
        }
    }

    @Test func batchesAreBoundedByMaxEntriesButAnOversizedCommitGoesAlone() async throws {
        try await withStore { base, _ in
            let store = GatedStore(base)
            let group = GroupCommitLog(store: store, maxBatchEntries: 4)
            let meetings = (1...6).map { record(MeetingID("m\($0)")) }
            var entries: [MeetingID: [LogEntry]] = [:]
            for meeting in meetings {
                try await store.createMeeting(meeting)
                var live = LiveMeeting(meeting)
                entries[meeting.id] = live.play(6)
            }
            let sizes = [1, 2, 2, 2, 2, 6]
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for (index, (meeting, size)) in zip(meetings, sizes).enumerated() {
                    let chunk = Array(entries[meeting.id]![..<size])
                    tasks.addTask { try await group.commit(meeting.id, chunk) }
                    if index == 0 {
                        try await eventually { await store.appends.batches.count == 1 }
                    } else {
                        try await eventually { await group.queuedCount == index }
                    }
                }
                await store.gate.open()
                try await tasks.waitForAll()
            }
            let batchSizes = await store.appends.batches.map { $0.values.map(\.count).reduce(0, +) }
            #expect(batchSizes == [1, 4, 4, 6])
            #expect(await group.stats == GroupCommitLog.Stats(batches: 4, entries: 15, commits: 6))
        }
    }

    @Test func aFencedMeetingFailsAloneAndTheRestOfItsBatchCommits() async throws {
        try await withStore { base, _ in
            let store = GatedStore(base)
            let group = GroupCommitLog(store: store)
            let first = record("first"), stale = record("stale"), fine = record("fine")
            for meeting in [first, stale, fine] { try await store.createMeeting(meeting) }
            try await store.advanceEpoch(stale.id, to: Epoch(2))
            var firstLive = LiveMeeting(first), staleLive = LiveMeeting(stale), fineLive = LiveMeeting(fine)
            let firstEntries = firstLive.play(1), staleEntries = staleLive.play(2), fineEntries = fineLive.play(3)

            let results = try await withThrowingTaskGroup(of: (MeetingID, StoreError?).self) { tasks in
                func commit(_ id: MeetingID, _ entries: [LogEntry]) {
                    tasks.addTask {
                        do throws(StoreError) {
                            try await group.commit(id, entries)
                            return (id, nil)
                        } catch {
                            return (id, error)
                        }
                    }
                }
                commit(first.id, firstEntries)
                try await eventually { await store.appends.batches.count == 1 }
                commit(stale.id, staleEntries)
                try await eventually { await group.queuedCount == 1 }
                commit(fine.id, fineEntries)
                try await eventually { await group.queuedCount == 2 }
                await store.gate.open()
                var results: [MeetingID: StoreError?] = [:]
                for try await (id, error) in tasks { results[id] = error }
                return results
            }
            #expect(results == [
                first.id: nil,
                stale.id: .fenced(stale.id, epoch: Epoch(1), current: Epoch(2)),
                fine.id: nil,
            ])
            #expect(await store.appends.batches == [
                [first.id: [1]],
                [stale.id: [1, 2], fine.id: [1, 2, 3]],
                [fine.id: [1, 2, 3]],
            ])
            #expect(try await base.recover(fine.id, historyLimit: 0).entries == fineEntries)
            #expect(try await base.recover(stale.id, historyLimit: 0).entries == [])
            #expect(await group.stats == GroupCommitLog.Stats(batches: 2, entries: 4, commits: 2))
        }
    }
}
